export { type ClusterConnection, type ClusterOptions, freePort, TestCluster } from './cluster.js';
