/**
 * Prefix of every environment variable the replicator reads (a module of its own: the CLI's help
 * needs it without loading the configuration schema).
 */
export const ENV_PREFIX = 'PG_REPLICATE_';
