/**
 * Builds the sink the command line asks for. Built-in sinks live in this package; heavy ones
 * (native DuckDB, cloud SDKs) are separate packages loaded only when chosen, so a user of one sink
 * never installs another's binaries.
 */
import { PgReplicateError } from '../errors.js';
import type { Logger } from '../pipeline/progress.js';
import { NullSink } from '../sink/null-sink.js';
import type { Sink } from '../sink/sink.js';
import { StdoutSink } from '../sink/stdout-sink.js';

export const SINK_NAMES = ['stdout', 'null', 'duckdb', 'bigquery'] as const;
export type SinkName = (typeof SINK_NAMES)[number];

export interface SinkCliOptions {
  sink: SinkName;
  stateFile?: string | undefined;
  duckdbPath?: string | undefined;
  duckdbMemoryLimit?: string | undefined;
  duckdbCopyMemoryLimit?: string | undefined;
  duckdbDeleteMemory?: string | undefined;
  /** bigquery: project and dataset (required), then the optional settings. */
  bqProject?: string | undefined;
  bqDataset?: string | undefined;
  bqKeyFile?: string | undefined;
  bqLocation?: string | undefined;
  bqMaxStaleness?: string | undefined;
  bqMaxBatchBytes?: number | undefined;
  bqUnrepresentable?: 'error' | 'null' | undefined;
  /** Where sinks that report on their own (bigquery) write their warnings. */
  logger?: Logger | undefined;
}

/** A size DuckDB's `memory_limit` takes, such as `128MB` or `1GB` (checked before DuckDB sees it). */
export const DUCKDB_SIZE = /^\d+(\.\d+)?\s*(B|KB|KiB|MB|MiB|GB|GiB|TB|TiB)$/i;

/** The constructor a sink package exports, as far as the CLI relies on it. */
type SinkConstructor = new (options: Record<string, unknown>) => Sink;

export async function createSink(options: SinkCliOptions): Promise<Sink> {
  switch (options.sink) {
    case 'stdout':
      return new StdoutSink({ stateFile: options.stateFile });
    case 'null':
      return new NullSink();
    case 'duckdb': {
      const DuckDbSink = await loadSinkClass('@pg-replicate/duckdb', 'DuckDbSink');
      return new DuckDbSink({
        path: options.duckdbPath ?? 'replica.duckdb',
        memoryLimit: options.duckdbMemoryLimit,
        copyMemoryLimit: options.duckdbCopyMemoryLimit,
        deleteMemory: options.duckdbDeleteMemory,
      });
    }
    case 'bigquery': {
      // The sink checks these (INVALID_ARGUMENT, exit 2) and names the flag that is missing.
      const BigQuerySink = await loadSinkClass('@pg-replicate/bigquery', 'BigQuerySink');
      return new BigQuerySink({
        projectId: options.bqProject,
        datasetId: options.bqDataset,
        keyFilename: options.bqKeyFile,
        location: options.bqLocation,
        maxStaleness: options.bqMaxStaleness,
        maxBatchBytes: options.bqMaxBatchBytes,
        unrepresentable: options.bqUnrepresentable,
        logger: options.logger,
      });
    }
  }
}

async function loadSinkClass(packageName: string, exportName: string): Promise<SinkConstructor> {
  let module: Record<string, unknown>;
  try {
    // A variable specifier keeps the compiler from requiring the optional package at build time.
    const specifier: string = packageName;
    module = (await import(specifier)) as Record<string, unknown>;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND') {
      throw new PgReplicateError('INVALID_ARGUMENT', `the ${packageName} package is not installed`, {
        hint: `install it next to pg-replicate: npm install ${packageName}`,
        cause: error,
      });
    }
    throw error;
  }
  const sinkClass = module[exportName];
  if (typeof sinkClass !== 'function') {
    throw new PgReplicateError('INVALID_ARGUMENT', `${packageName} does not export ${exportName}`, {
      hint: 'install versions of pg-replicate and its sink packages that belong together',
    });
  }
  return sinkClass as SinkConstructor;
}
