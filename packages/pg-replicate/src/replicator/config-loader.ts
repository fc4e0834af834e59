/**
 * Loads the replicator's configuration: the YAML file (optional), then `PG_REPLICATE_*`
 * environment variables on top (each may be given as `<NAME>_FILE` to read a secret from a file),
 * then validation against the schema. Every problem is collected — unknown fields (with a
 * suggestion), wrong types, values out of range, unreadable files — and reported together with
 * its path and where the value came from, before anything connects to Postgres.
 */
import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument } from 'yaml';
import {
  type ConnectionInput,
  type ConnectionOptions,
  resolveConnection,
} from '../connection/connection-options.js';
import { isPgReplicateError } from '../errors.js';
import { CONFIG_PATH_ENV, type ConfigField, configFields, ENV_PREFIX, FILE_SUFFIX } from './config-fields.js';
import { ConfigError, type ConfigIssue, closest, describeIssue } from './config-issues.js';
import { type ReplicatorConfig, replicatorConfigSchema } from './config-schema.js';

type Env = Record<string, string | undefined>;
type Raw = Record<string, unknown>;

export interface LoadConfigOptions {
  /** The YAML file; default `PG_REPLICATE_CONFIG`; neither: the environment alone. */
  path?: string | undefined;
  env?: Env;
}

export interface LoadedConfig {
  readonly config: ReplicatorConfig;
  /**
   * Where to connect: the source fields over `DATABASE_URL` and the `PG*` variables (like `psql`).
   * Holds the password: never log it, use `describeConnection`.
   */
  readonly connection: ConnectionOptions;
  /** The file read, if any. */
  readonly file: string | undefined;
  /** Values that must never appear in logs (passwords, the URL and its password). */
  readonly secrets: readonly string[];
  /** Things that work but should be done differently (a password in the file). */
  readonly warnings: readonly string[];
}

/** Reads, merges and validates the configuration; throws {@link ConfigError} listing every problem. */
export function loadConfig(options: LoadConfigOptions = {}): LoadedConfig {
  const env = options.env ?? process.env;
  const file = options.path ?? nonEmpty(env[CONFIG_PATH_ENV]);
  const issues: ConfigIssue[] = [];
  const warnings: string[] = [];
  const raw = file === undefined ? {} : readYaml(file, issues);
  if (raw === null) throw new ConfigError(issues, file);

  const fields = configFields();
  for (const field of fields.filter((f) => f.secret && holdsSecret(getAt(raw, f.path)))) {
    warnings.push(
      `${field.dotted} is written in ${file}: prefer ${field.env} or ${field.env}${FILE_SUFFIX} so the file holds no secret`,
    );
  }
  const origins = overlayEnvironment(raw, env, fields, issues);

  const mode = getAt(raw, ['mode']) ?? 'both';
  if (
    (mode === 'cdc' || mode === 'both') &&
    getAt(raw, ['source', 'slot']) === undefined &&
    isObject(getAt(raw, ['source']))
  ) {
    issues.push({
      path: 'source.slot',
      message: `required when mode is cdc or both (mode is ${String(mode)})`,
    });
  }
  const parsed = replicatorConfigSchema.safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      issues.push(...describeIssue(issue, getAt(raw, issue.path.map(String)), fields, origins));
    }
  }
  if (issues.length > 0 || !parsed.success) throw new ConfigError(issues, file, guessName(raw));

  const data = parsed.data;
  const publications =
    typeof data.source.publication === 'string' ? [data.source.publication] : data.source.publication;
  const name =
    data.name ?? (data.source.slot ?? publications.join('_')).replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 63);
  const config = { ...data, name };
  let connection: ConnectionOptions;
  try {
    connection = resolveConnection(connectionInput(config), env);
  } catch (error) {
    // What only the merge with DATABASE_URL / PG* can tell: a malformed %-escape, a bad PGSSLMODE…
    if (!isPgReplicateError(error, 'INVALID_ARGUMENT')) throw error;
    const hint = error.hint ? ` — ${error.hint}` : '';
    throw new ConfigError([{ path: 'source', message: `${error.message}${hint}` }], file, name);
  }
  return { config, connection, file, secrets: secretsOf(data.source, connection, env), warnings };
}

/** `name`, else the slot, if either is text: what the log line of a rejected config is about. */
function guessName(raw: Raw): string | undefined {
  const guess = getAt(raw, ['name']) ?? getAt(raw, ['source', 'slot']);
  return typeof guess === 'string' ? guess.slice(0, 63) : undefined;
}

/** The connection settings of the config, in the library's terms. */
function connectionInput(config: ReplicatorConfig): ConnectionInput {
  const source = config.source;
  return {
    url: source.url,
    host: source.host,
    port: source.port,
    database: source.database,
    user: source.user,
    password: source.password,
    sslmode: source.sslmode,
    sslrootcert: source.sslrootcert,
    sslcert: source.sslcert,
    sslkey: source.sslkey,
    applicationName: source.applicationName ?? `pg-replicate:${config.name}`.slice(0, 63),
    connectTimeoutMs: source.connectTimeoutMs,
  };
}

function readYaml(file: string, issues: ConfigIssue[]): Raw | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    issues.push({ path: '(file)', message: `cannot read ${file}: ${(error as Error).message}` });
    return null;
  }
  const lines = new LineCounter();
  const document = parseDocument(text, { prettyErrors: false, uniqueKeys: true, lineCounter: lines });
  for (const error of document.errors) {
    const at = lines.linePos(error.pos[0]);
    issues.push({ path: '(file)', message: `${file}:${at.line}:${at.col}: ${error.message.split('\n')[0]}` });
  }
  if (document.errors.length > 0) return null;
  const value: unknown = document.toJS();
  if (value === null || value === undefined) return {};
  if (!isObject(value)) {
    issues.push({
      path: '(file)',
      message: `${file} must be a mapping of fields (key: value), not a ${typeof value}`,
    });
    return null;
  }
  return value;
}

/**
 * Writes every `PG_REPLICATE_*` variable into `raw` at its field's path (empty values count as
 * unset). Returns which variable set which dotted path.
 */
function overlayEnvironment(
  raw: Raw,
  env: Env,
  fields: readonly ConfigField[],
  issues: ConfigIssue[],
): Map<string, string> {
  const byEnv = new Map(fields.map((field) => [field.env, field]));
  const origins = new Map<string, string>();
  const names = Object.keys(env)
    .filter(
      (name) => name.startsWith(ENV_PREFIX) && name !== CONFIG_PATH_ENV && nonEmpty(env[name]) !== undefined,
    )
    .sort();
  // The sink's type first: changing it drops the file's options of the other sink types.
  names.sort(
    (a, b) => Number(b.startsWith(`${ENV_PREFIX}SINK_TYPE`)) - Number(a.startsWith(`${ENV_PREFIX}SINK_TYPE`)),
  );
  for (const name of names) {
    const fromFile = name.endsWith(FILE_SUFFIX) && !byEnv.has(name);
    const base = fromFile ? name.slice(0, -FILE_SUFFIX.length) : name;
    const field = byEnv.get(base);
    if (field === undefined) {
      const guess = closest(base, [...byEnv.keys()]);
      issues.push({
        path: name,
        message: `unknown environment variable${guess === undefined ? '' : ` (did you mean ${guess}?)`}`,
      });
      continue;
    }
    if (fromFile && nonEmpty(env[base]) !== undefined) {
      issues.push({ path: field.dotted, message: `set either ${base} or ${name}, not both`, from: name });
      continue;
    }
    let text = env[name]!;
    if (fromFile) {
      try {
        // Secret files usually end with a newline that is not part of the secret.
        text = readFileSync(text, 'utf8').replace(/\r?\n$/, '');
      } catch (error) {
        issues.push({
          path: field.dotted,
          message: `cannot read ${text}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
          from: name,
        });
        continue;
      }
    }
    if (field.path.at(-1) === 'type' && field.values !== undefined)
      dropOtherVariants(raw, field, text, fields);
    if (!setAt(raw, field.path, fromText(text, field))) {
      issues.push({
        path: field.path.slice(0, -1).join('.'),
        message: 'expected a mapping (key: value) to hold the override',
        from: name,
      });
      continue;
    }
    origins.set(field.dotted, name);
  }
  return origins;
}

/** `sink.type` overridden to another sink: the file's options of the previous one no longer apply. */
function dropOtherVariants(
  raw: Raw,
  typeField: ConfigField,
  type: string,
  fields: readonly ConfigField[],
): void {
  const parent = getAt(raw, typeField.path.slice(0, -1));
  if (!isObject(parent) || parent['type'] === type) return;
  const prefix = typeField.path.slice(0, -1).join('.');
  for (const field of fields) {
    if (
      field.onlyFor !== undefined &&
      field.onlyFor !== `type: ${type}` &&
      field.dotted.startsWith(`${prefix}.`)
    ) {
      delete parent[field.path.at(-1)!];
    }
  }
}

/** The value a text from the environment stands for, given the field's type. */
function fromText(text: string, field: ConfigField): unknown {
  const trimmed = text.trim();
  switch (field.kind) {
    case 'integer':
    case 'number':
      // Left as text when it is not a number, so validation says what was expected and what came.
      return /^[-+]?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(trimmed) ? Number(trimmed) : text;
    case 'boolean':
      return /^(true|1|yes|on)$/i.test(trimmed) ? true : /^(false|0|no|off)$/i.test(trimmed) ? false : text;
    case 'list':
      return splitList(trimmed);
    case 'string-or-list':
      return trimmed.includes(',') ? splitList(trimmed) : trimmed;
    case 'string':
      return field.secret ? text : trimmed;
  }
}

function splitList(text: string): string[] {
  return text
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

/** Passwords and URLs (which may embed one) from the config or the environment, for the log redactor. */
function secretsOf(source: ReplicatorConfig['source'], connection: ConnectionOptions, env: Env): string[] {
  const secrets = new Set<string>();
  if (connection.password) secrets.add(connection.password);
  for (const url of [source.url, env['DATABASE_URL']]) {
    if (!url) continue;
    secrets.add(url);
    try {
      const password = decodeURIComponent(new URL(url).password);
      if (password) secrets.add(password);
    } catch {
      // Not a URL (or a malformed escape): the whole text is masked already.
    }
  }
  return [...secrets];
}

/** A password, or a URL with a password in it. */
function holdsSecret(value: unknown): boolean {
  if (typeof value !== 'string' || value === '') return false;
  try {
    return new URL(value).password !== '';
  } catch {
    return true;
  }
}

function isObject(value: unknown): value is Raw {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function nonEmpty(text: string | undefined): string | undefined {
  return text === undefined || text.trim() === '' ? undefined : text;
}

function getAt(raw: unknown, path: readonly string[]): unknown {
  let node = raw;
  for (const segment of path) {
    if (!isObject(node)) return undefined;
    node = node[segment];
  }
  return node;
}

/** Sets a value, creating missing objects on the way; false when something else is in the way. */
function setAt(raw: Raw, path: readonly string[], value: unknown): boolean {
  let node = raw;
  for (const segment of path.slice(0, -1)) {
    if (node[segment] === undefined || node[segment] === null) node[segment] = {};
    const next = node[segment];
    if (!isObject(next)) return false;
    node = next;
  }
  node[path.at(-1)!] = value;
  return true;
}
