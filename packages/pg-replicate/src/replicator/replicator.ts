/**
 * One pipeline as a long-lived service: logs, health and metrics endpoints, slot monitoring and a
 * supervisor that restarts the pipeline after transient failures. Process-wide concerns (signals,
 * the shutdown deadline, exiting) belong to `run-service.ts`; this class only runs and stops.
 */
import { readFileSync } from 'node:fs';
import { createSink } from '../cli/sinks.js';
import { type ConnectionOptions, describeConnection } from '../connection/connection-options.js';
import { isPgReplicateError } from '../errors.js';
import { formatLsn } from '../lsn.js';
import { Pipeline } from '../pipeline/pipeline.js';
import type { ProgressEvent } from '../pipeline/progress.js';
import { classifyFailure } from '../retry/failure-policy.js';
import type { Sink } from '../sink/sink.js';
import { PostgresSource } from '../source/postgres-source.js';
import type { LoadedConfig } from './config-loader.js';
import type { ReplicatorConfig, SinkConfig } from './config-schema.js';
import { EXIT, type ExitCode } from './exit-codes.js';
import { HttpServer } from './http-server.js';
import { InstrumentedSink } from './instrumented-sink.js';
import { createLogger, type LogOutput, pipelineLogger, redactor, type ServiceLogger } from './logger.js';
import { ReplicatorMetrics } from './metrics.js';
import { ServiceStatus } from './service-status.js';
import { SlotMonitor } from './slot-monitor.js';
import { Supervisor } from './supervisor.js';

/** The package version, for `pg_replicate_info` and the start-up line. */
export const VERSION: string = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

export interface ReplicatorOptions {
  /** Where logs go (default stderr). */
  logOutput?: LogOutput;
}

export class Replicator {
  readonly config: ReplicatorConfig;
  readonly logger: ServiceLogger;
  readonly status: ServiceStatus;
  readonly metrics: ReplicatorMetrics;
  readonly #connection: ConnectionOptions;
  readonly #secrets: readonly string[];
  readonly #warnings: readonly string[];
  readonly #controller = new AbortController();
  #http: HttpServer | null = null;

  constructor(loaded: LoadedConfig, options: ReplicatorOptions = {}) {
    this.config = loaded.config;
    this.#connection = loaded.connection;
    this.#secrets = loaded.secrets;
    this.#warnings = loaded.warnings;
    this.logger = createLogger({
      level: this.config.log.level,
      format: this.config.log.format,
      pipeline: this.config.name,
      secrets: loaded.secrets,
      output: options.logOutput,
    });
    this.metrics = new ReplicatorMetrics({
      pipeline: this.config.name,
      mode: this.config.mode,
      sink: this.config.sink.type,
      version: VERSION,
    });
    this.status = new ServiceStatus(this.config.name, this.config.mode, (state) =>
      this.metrics.setState(state),
    );
  }

  /** Asks the pipeline to stop: committed work is flushed and confirmed, then `run` returns. */
  stop(): void {
    if (this.#controller.signal.aborted) return;
    this.status.setState('stopping');
    this.#controller.abort();
  }

  get stopping(): boolean {
    return this.#controller.signal.aborted;
  }

  /** Runs until stopped, finished (`copy` mode) or failed; returns the exit status. */
  async run(): Promise<ExitCode> {
    const { config, logger } = this;
    for (const warning of this.#warnings) logger.warn(warning);

    const connection = this.#connection;
    let firstSink: Sink | null;
    try {
      firstSink = await buildSink(config.sink);
    } catch (error) {
      // A sink package that is not installed: configuration, found before any connection.
      const message = isPgReplicateError(error) ? error.toOneLine() : String(error);
      logger.fatal(`invalid configuration: ${message}`);
      return EXIT.CONFIG_INVALID;
    }

    const http = new HttpServer({
      status: () => this.status.report(),
      metrics: async () => ({ contentType: this.metrics.contentType, body: await this.metrics.render() }),
      redact: redactor(this.#secrets),
      onError: (error) => logger.warn({ err: error }, 'an HTTP request failed'),
    });
    try {
      const address = await http.listen(config.http.port, config.http.host);
      logger.info(
        `health and metrics on http://${address.address}:${address.port} (/healthz, /readyz, /metrics)`,
      );
    } catch (error) {
      logger.fatal(`cannot listen on ${config.http.host}:${config.http.port}: ${(error as Error).message}`);
      return EXIT.PERMANENT_FAILURE;
    }
    this.#http = http;

    const publications =
      typeof config.source.publication === 'string' ? [config.source.publication] : config.source.publication;
    logger.info(
      {
        version: VERSION,
        mode: config.mode,
        source: describeConnection(connection),
        publications,
        slot: config.source.slot,
        sink: config.sink.type,
      },
      `pg-replicate ${VERSION}: ${config.mode} from ${describeConnection(connection)} (${publications.join(', ')}${config.source.slot ? `, slot ${config.source.slot}` : ''}) into ${config.sink.type}`,
    );

    const monitor =
      config.mode === 'copy' || config.source.slot === undefined
        ? null
        : this.#startMonitor(connection, config.source.slot);
    const supervisor = new Supervisor({
      retry: config.retry,
      signal: this.#controller.signal,
      logger,
      status: this.status,
      metrics: this.metrics,
      attempt: async (signal) => {
        const sink = firstSink ?? (await buildSink(config.sink));
        firstSink = null;
        return this.#attempt(connection, publications, sink, signal);
      },
    });
    try {
      const outcome = await supervisor.run();
      const durable = this.status.durableLsn;
      const position = durable === null ? '' : `; durable up to ${formatLsn(durable)}`;
      if (outcome.kind === 'stopped') logger.info(`stopped${position}; start again to resume`);
      if (outcome.kind === 'finished') logger.info(`finished${position}`);
      return outcome.exitCode;
    } catch (error) {
      const failure = classifyFailure(error);
      logger.fatal({ err: error }, `unexpected error in the supervisor: ${failure.message}`);
      return EXIT.UNEXPECTED;
    } finally {
      await monitor?.stop();
      await this.close();
    }
  }

  /** Closes the HTTP server (also used by tests). */
  async close(): Promise<void> {
    await this.#http?.close();
    this.#http = null;
  }

  async #attempt(
    connection: ConnectionOptions,
    publications: string[],
    sink: Sink,
    signal: AbortSignal,
  ): ReturnType<Pipeline['run']> {
    const { config } = this;
    const source = new PostgresSource({ connection, publication: publications, slot: config.source.slot });
    const pipeline = new Pipeline({
      source,
      sink: new InstrumentedSink(sink, (operation, seconds) =>
        this.metrics.observeSinkWrite(operation, seconds),
      ),
      mode: config.mode,
      batchMaxRows: config.batch.maxRows,
      batchMaxBytes: config.batch.maxBytes,
      batchMaxDelayMs: config.batch.maxDelayMs,
      copyBatchRows: config.batch.copyRows,
      copyWorkers: config.batch.copyWorkers,
      heartbeatIntervalMs: config.heartbeat.intervalMs,
      // The pipeline's own slot check (warnings) keeps its 30 s: the gauges come from our monitor.
      maxRetainedWalBytes: config.monitor.maxRetainedWalMb * 1024 * 1024,
      signal,
      onProgress: (event) => this.#onProgress(event),
      logger: pipelineLogger(this.logger),
    });
    return pipeline.run();
  }

  #onProgress(event: ProgressEvent): void {
    this.status.onProgress(event);
    this.metrics.onProgress(event);
    if (event.type === 'copy-start') this.logger.info(`copying ${event.table}`);
    else if (event.type === 'copy-done') {
      this.logger.info(
        { table: event.table, rows: event.rows, ms: Math.round(event.ms) },
        `copied ${event.table}: ${event.rows} rows in ${(event.ms / 1000).toFixed(1)} s`,
      );
    } else if (event.type === 'changes') {
      this.logger.debug(
        { ...event.counts, transactions: event.transactions, lsn: formatLsn(event.lsn), lagMs: event.lagMs },
        'batch durable',
      );
    }
  }

  #startMonitor(connection: ConnectionOptions, slot: string): SlotMonitor {
    const monitor = new SlotMonitor({
      connection,
      slot,
      intervalMs: this.config.monitor.intervalMs,
      durableLsn: () => this.status.durableLsn,
      onSample: (sample) => this.metrics.setSlot(sample),
      onError: (error, first) => {
        this.metrics.recordMonitorError();
        const message = `slot monitor: ${classifyFailure(error).message}`;
        if (first) this.logger.warn(message);
        else this.logger.debug(message);
      },
      onRecovered: () => this.logger.info('slot monitor: reading the slot again'),
    });
    monitor.start();
    return monitor;
  }
}

/** The sink through the CLI's factory, so the service supports every sink the CLI does. */
export function buildSink(sink: SinkConfig): Promise<Sink> {
  switch (sink.type) {
    case 'stdout':
      return createSink({ sink: 'stdout', stateFile: sink.stateFile });
    case 'null':
      return createSink({ sink: 'null' });
    case 'duckdb':
      return createSink({
        sink: 'duckdb',
        duckdbPath: sink.path,
        duckdbMemoryLimit: sink.memoryLimit,
        duckdbCopyMemoryLimit: sink.copyMemoryLimit,
        duckdbDeleteMemory: sink.deleteMemory,
      });
    case 'bigquery':
      return createSink({
        sink: 'bigquery',
        bqProject: sink.project,
        bqDataset: sink.dataset,
        bqKeyFile: sink.keyFile,
        bqLocation: sink.location,
        bqMaxStaleness: sink.maxStaleness,
        bqMaxBatchBytes: sink.maxBatchBytes,
        bqUnrepresentable: sink.unrepresentable,
      });
  }
}
