/**
 * Test harness for the replicator service: runs `pg-replicate run` from the built bin as a child
 * process (data on stdout appended to a file, JSON logs on stderr), scrapes its endpoints, and
 * replays the stdout sink's JSON lines into tables keyed by `id` to compare with Postgres.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';

const BIN = fileURLToPath(new URL('../bin/pg-replicate.js', import.meta.url));

export interface LogLine {
  level: string;
  msg: string;
  pipeline?: string;
  [key: string]: unknown;
}

export interface Service {
  readonly child: ChildProcess;
  readonly port: number;
  /** Everything written to stderr so far. */
  stderr(): string;
  /** stderr parsed as JSON lines. */
  logs(): LogLine[];
  /** Resolves with the exit code (or the signal's name). */
  readonly exited: Promise<number | string>;
  get(path: string): Promise<{ status: number; body: string }>;
  /** `/metrics` parsed: `name{labels}` (without the pipeline label) → value. */
  metrics(): Promise<Map<string, number>>;
  /** Sends `signal` and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `pg-replicate-${prefix}-`));
}

/** Writes `config` as YAML into `dir` and returns its path. */
export function writeConfig(dir: string, config: object, name = 'replicator.yaml'): string {
  const path = join(dir, name);
  writeFileSync(path, stringify(config));
  return path;
}

/** Starts `pg-replicate run` with these arguments; stdout is appended to `stdoutFile`. */
export function startService(options: {
  args: string[];
  env?: Record<string, string>;
  port: number;
  stdoutFile: string;
}): Service {
  const out = openSync(options.stdoutFile, 'a');
  const child = spawn(process.execPath, [BIN, 'run', ...options.args], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...options.env },
    stdio: ['ignore', out, 'pipe'],
  });
  closeSync(out);
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<number | string>((resolve) => {
    child.on('exit', (code, signal) => resolve(code ?? signal ?? -1));
  });
  const base = `http://127.0.0.1:${options.port}`;
  const get = async (path: string) => {
    const response = await fetch(base + path);
    return { status: response.status, body: await response.text() };
  };
  return {
    child,
    port: options.port,
    stderr: () => stderr,
    logs: () =>
      stderr
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as LogLine),
    exited,
    get,
    metrics: async () => parseMetrics((await get('/metrics')).body),
    async stop(signal = 'SIGTERM') {
      child.kill(signal);
      return exited;
    },
  };
}

/** Prometheus text → `name{labels}` → value, dropping the `pipeline` label every series has. */
export function parseMetrics(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) continue;
    const labels = (match[2] ?? '')
      .split(/,(?=\w+=")/)
      .filter((label) => label !== '' && !label.startsWith('pipeline='))
      .join(',');
    values.set(labels === '' ? match[1]! : `${match[1]}{${labels}}`, Number(match[3]));
  }
  return values;
}

/** Polls until `check` returns a truthy value. */
type Falsy = null | undefined | false | 0 | '';

export async function until<T>(
  check: () => Promise<T | Falsy> | T | Falsy,
  what: string,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

interface Line {
  op: string;
  table: string;
  new: Record<string, unknown> | null;
  old: Record<string, unknown> | null;
}

/**
 * Replays the stdout sink's lines (copies, inserts, updates, deletes, truncates) into one map per
 * table, keyed by `id`. Replaying the same tail twice (at-least-once) gives the same result.
 */
export function materialize(file: string): Map<string, Map<string, Record<string, unknown>>> {
  const tables = new Map<string, Map<string, Record<string, unknown>>>();
  const table = (name: string) => {
    const rows = tables.get(name) ?? new Map<string, Record<string, unknown>>();
    tables.set(name, rows);
    return rows;
  };
  for (const text of readFileSync(file, 'utf8').split('\n')) {
    if (text === '') continue;
    const line = JSON.parse(text) as Line;
    const rows = table(line.table);
    if (line.op === 'truncate') rows.clear();
    else if (line.op === 'delete') rows.delete(String(line.old!['id']));
    else {
      if (line.op === 'update' && line.old !== null) rows.delete(String(line.old['id']));
      rows.set(String(line.new!['id']), line.new!);
    }
  }
  return tables;
}
