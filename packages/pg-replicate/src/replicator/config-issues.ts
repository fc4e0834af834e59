/**
 * Problems with the configuration, as an operator should read them: each with the field's dotted
 * path, what was expected and what came (never the value of a secret), where it came from (an
 * environment variable), and a suggestion when a name looks like a typo of a known one.
 */
import type { z } from 'zod';
import type { ConfigField } from './config-fields.js';

/** One thing wrong with the configuration. */
export interface ConfigIssue {
  /** Dotted path of the field (`batch.maxRows`), or `(file)` / an environment variable's name. */
  readonly path: string;
  readonly message: string;
  /** Where the value came from, when not the file: the environment variable. */
  readonly from?: string | undefined;
}

/** The configuration cannot be used; {@link ConfigError.issues} lists every reason. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly issues: readonly ConfigIssue[];
  /** The pipeline's name as far as it can be told (`name`, else the slot), for the log line. */
  readonly pipeline: string | undefined;

  constructor(issues: readonly ConfigIssue[], file: string | undefined, pipeline?: string) {
    const count = issues.length === 1 ? '1 problem' : `${issues.length} problems`;
    super(`invalid configuration${file === undefined ? '' : ` in ${file}`} (${count})`);
    this.issues = issues;
    this.pipeline = pipeline;
  }

  /** The message, then one line per issue. */
  describe(): string {
    return [this.message, ...this.issues.map((issue) => `  - ${formatIssue(issue)}`)].join('\n');
  }
}

/** `path: message (from VARIABLE)`. */
export function formatIssue(issue: ConfigIssue): string {
  return `${issue.path}: ${issue.message}${issue.from === undefined ? '' : ` (from ${issue.from})`}`;
}

/** One zod issue as the operator should read it (unrecognized keys: one issue per key). */
export function describeIssue(
  issue: z.core.$ZodIssue,
  value: unknown,
  fields: readonly ConfigField[],
  origins: ReadonlyMap<string, string>,
): ConfigIssue[] {
  const path = issue.path.map(String);
  const dotted = path.join('.');
  const field = fields.find((f) => f.dotted === dotted);
  const got = field?.secret || value === undefined ? '' : `, got ${show(value)}`;
  const from = origins.get(dotted);
  const one = (message: string): ConfigIssue[] => [{ path: dotted || '(top level)', message, from }];
  switch (issue.code) {
    case 'unrecognized_keys':
      return issue.keys.map((key) => {
        const known = [
          ...new Set(fields.filter((f) => startsWith(f.path, path)).map((f) => f.path[path.length]!)),
        ];
        const guess = closest(key, known);
        return {
          path: [...path, key].join('.'),
          message: `unknown field${guess === undefined ? '' : ` (did you mean "${guess}"?)`}; expected one of ${known.join(', ')}`,
        };
      });
    case 'invalid_type':
      if (value === undefined) return one('required');
      return one(`expected ${expectedName(issue.expected)}${got}`);
    case 'too_small':
      if (issue.origin === 'string' || issue.origin === 'array') return one('must not be empty');
      return one(`expected a value ${issue.inclusive ? '≥' : '>'} ${String(issue.minimum)}${got}`);
    case 'too_big':
      return one(`expected a value ${issue.inclusive ? '≤' : '<'} ${String(issue.maximum)}${got}`);
    case 'invalid_value':
      return one(`expected one of ${issue.values.map(String).join(', ')}${got}`);
    case 'invalid_union': {
      const options = (issue as { options?: unknown[] }).options;
      if (options !== undefined) {
        return one(
          value === undefined
            ? `required: one of ${options.join(', ')}`
            : `expected one of ${options.join(', ')}${got}`,
        );
      }
      const expected = [
        ...new Set(
          issue.errors.flat().map((e) => (e.code === 'invalid_type' ? expectedName(e.expected) : e.message)),
        ),
      ];
      return one(`expected ${expected.join(' or ')}${got}`);
    }
    case 'invalid_format':
      return one(`${issue.message}${got}`);
    default:
      return one(issue.message);
  }
}

function expectedName(expected: string): string {
  const names: Record<string, string> = {
    int: 'a whole number',
    number: 'a number',
    string: 'text',
    boolean: 'true or false',
    object: 'a mapping (key: value)',
    array: 'a list',
  };
  return names[expected] ?? expected;
}

function show(value: unknown): string {
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object' && value !== null) return 'a mapping';
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}…` : text;
}

/** The candidate nearest to `word` (ignoring case and `_`), if near enough to be a typo. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  const norm = (text: string) => text.toLowerCase().replace(/_/g, '');
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of candidates) {
    const distance = editDistance(norm(word), norm(candidate));
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return bestDistance <= Math.max(1, Math.floor(word.length / 4)) ? best : undefined;
}

/** Optimal string alignment distance: insertions, deletions, substitutions and transpositions. */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}

function startsWith(path: readonly string[], prefix: readonly string[]): boolean {
  return path.length > prefix.length && prefix.every((segment, i) => path[i] === segment);
}
