/**
 * Generates `docs/config-reference.md` from the schema (`pg-replicate run --print-config-reference`).
 * A test compares the committed file with this output, so the reference cannot drift from the code.
 */
import {
  CONFIG_PATH_ENV,
  type ConfigField,
  configFields,
  configSections,
  FILE_SUFFIX,
} from './config-fields.js';
import { EXIT } from './exit-codes.js';

const EXIT_MEANINGS: Record<keyof typeof EXIT, string> = {
  OK: 'stopped by SIGTERM/SIGINT after flushing and confirming; or `copy` mode finished',
  UNEXPECTED: 'an unexpected error (a bug): please report it with the log',
  USAGE: 'bad command line (unknown flag)',
  CONFIG_INVALID: 'invalid configuration: every problem is listed; nothing connected to Postgres',
  PERMANENT_FAILURE:
    'a failure retrying cannot fix (invalidated slot, bad credentials, schema the sink cannot hold, …): the log says what to do',
  RETRIES_EXHAUSTED: 'transient failures went on for `retry.maxAttempts` attempts in a row',
  SHUTDOWN_TIMEOUT: 'a stop did not finish within `shutdown.timeoutMs`',
  INTERRUPTED: 'a second SIGTERM/SIGINT: stopped at once, without waiting for the flush',
};

/** The whole reference, as Markdown. */
export function configReference(): string {
  const fields = configFields();
  const lines = [
    '# Replicator configuration reference',
    '',
    '<!-- Generated from packages/pg-replicate/src/replicator/config-schema.ts by',
    '     `pg-replicate run --print-config-reference > docs/config-reference.md`. Do not edit. -->',
    '',
    'The replicator (`pg-replicate run`) reads a YAML file — `--config <file>`, else the file named by',
    `\`${CONFIG_PATH_ENV}\`, else none — and then the environment. **Every field can be set by its`,
    'environment variable, which wins over the file.** Appending `' +
      FILE_SUFFIX +
      '` to any variable name reads the',
    'value from that file instead (a trailing newline is dropped): the way Docker and Kubernetes',
    'secrets are mounted. Empty variables count as unset. Unknown `PG_REPLICATE_*` variables and',
    'unknown fields in the file are errors, reported with a suggestion.',
    '',
    'Naming: `PG_REPLICATE_` followed by the field path, each camelCase word upper-cased and joined',
    'with `_`: `batch.maxRows` → `PG_REPLICATE_BATCH_MAX_ROWS`. Lists (`source.publication`) are',
    'comma-separated in the environment.',
    '',
    'Connection fields left unset fall back, like `psql`, to `DATABASE_URL`, then `PGHOST`, `PGPORT`,',
    '`PGDATABASE`, `PGUSER`, `PGPASSWORD`, `PGSSLMODE`, `PGSSLROOTCERT`, then libpq defaults.',
    'Fields marked *secret* are never logged; prefer their environment variable or its `_FILE` form',
    'to writing them in the file (the replicator warns when the file holds one).',
    '',
    'Check a configuration without connecting anywhere: `pg-replicate run --config <file> --check`.',
    '',
  ];
  for (const section of [{ key: '', description: 'Top level.' }, ...configSections()]) {
    const inSection = fields.filter((field) =>
      section.key === '' ? field.path.length === 1 : field.dotted.startsWith(`${section.key}.`),
    );
    if (inSection.length === 0) continue;
    lines.push(section.key === '' ? '## Top level' : `## \`${section.key}\``, '');
    if (section.key !== '' && section.description !== '') lines.push(section.description, '');
    lines.push('| field | type | default | environment variable | description |', '|---|---|---|---|---|');
    for (const field of inSection) lines.push(row(field));
    lines.push('');
  }
  lines.push('## Exit status', '', '| exit | meaning |', '|---|---|');
  for (const [name, code] of Object.entries(EXIT)) {
    lines.push(`| ${code} | ${EXIT_MEANINGS[name as keyof typeof EXIT]} |`);
  }
  lines.push('');
  return lines.join('\n');
}

function row(field: ConfigField): string {
  const notes: string[] = [];
  if (field.onlyFor !== undefined) notes.push(`*only with ${field.onlyFor}*`);
  if (field.secret) notes.push('*secret*');
  const description = [field.description.replace(/\|/g, '\\|'), ...notes]
    .filter((part) => part !== '')
    .join(' ');
  const defaultText = field.required
    ? '**required**'
    : field.defaultValue === undefined
      ? '—'
      : `\`${String(field.defaultValue)}\``;
  return `| \`${field.dotted}\` | ${typeText(field)} | ${defaultText} | \`${field.env}\` | ${description} |`;
}

function typeText(field: ConfigField): string {
  if (field.values !== undefined) return field.values.map((value) => `\`${value}\``).join(', ');
  const range =
    field.minimum !== undefined && field.maximum !== undefined
      ? ` ${field.minimum}–${field.maximum}`
      : field.minimum !== undefined
        ? ` ≥ ${field.minimum}`
        : '';
  switch (field.kind) {
    case 'integer':
      return `integer${range}`;
    case 'number':
      return `number${range}`;
    case 'string-or-list':
      return 'string or list';
    default:
      return field.kind;
  }
}
