export {
  type ClusterConnection,
  type ClusterOptions,
  defaultPostgresVersion,
  freePort,
  POSTGRES_VERSIONS,
  type PostgresVersion,
  TestCluster,
} from './cluster.js';
