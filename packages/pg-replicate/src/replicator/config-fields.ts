/**
 * Every leaf field of the configuration, read off the schema (through its JSON Schema form): its
 * path, type, default, description, whether it is a secret, and the environment variable that
 * overrides it. The environment overlay and the generated reference both come from this list, so
 * neither can name a field the schema does not have.
 *
 * Naming scheme: `PG_REPLICATE_` + the path's segments, each camelCase word upper-cased and joined
 * with `_`: `batch.maxRows` → `PG_REPLICATE_BATCH_MAX_ROWS`, `source.password` →
 * `PG_REPLICATE_SOURCE_PASSWORD`. Appending `_FILE` reads the value from that file instead.
 */
import { z } from 'zod';
import { replicatorConfigSchema } from './config-schema.js';
import { ENV_PREFIX } from './env-prefix.js';

export { ENV_PREFIX };
/** Names the config file when `--config` is not given. */
export const CONFIG_PATH_ENV = 'PG_REPLICATE_CONFIG';
/** Suffix that makes any variable read its value from a file (Docker/Kubernetes secrets). */
export const FILE_SUFFIX = '_FILE';

/** How a value written as text (in the environment) is turned into the field's type. */
export type FieldKind = 'string' | 'integer' | 'number' | 'boolean' | 'list' | 'string-or-list';

export interface ConfigField {
  /** Path in the file, e.g. `['batch', 'maxRows']`. */
  readonly path: readonly string[];
  /** `batch.maxRows`. */
  readonly dotted: string;
  /** `PG_REPLICATE_BATCH_MAX_ROWS`. */
  readonly env: string;
  readonly kind: FieldKind;
  readonly description: string;
  readonly required: boolean;
  readonly defaultValue: unknown;
  /** Allowed values, for enums and the sink type. */
  readonly values: readonly string[] | undefined;
  /** Lower and upper bounds of numbers. */
  readonly minimum: number | undefined;
  readonly maximum: number | undefined;
  /** Never logged or echoed. */
  readonly secret: boolean;
  /** For fields of one variant of a union (the sink): the variant, e.g. `type: duckdb`. */
  readonly onlyFor: string | undefined;
}

/** One section (a top-level object) with its description, for the reference. */
export interface ConfigSection {
  readonly key: string;
  readonly description: string;
}

interface JsonSchema {
  type?: string;
  description?: string;
  default?: unknown;
  enum?: unknown[];
  const?: unknown;
  minimum?: number;
  maximum?: number;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  items?: JsonSchema;
  secret?: boolean;
}

let cached: { fields: ConfigField[]; sections: ConfigSection[] } | null = null;

function schemaTree() {
  if (cached === null) {
    const root = z.toJSONSchema(replicatorConfigSchema, {
      io: 'input',
      unrepresentable: 'any',
    }) as JsonSchema;
    const fields: ConfigField[] = [];
    const sections: ConfigSection[] = [];
    walk(root, [], undefined, fields, sections, true);
    cached = { fields, sections };
  }
  return cached;
}

/** Every leaf field, in schema order. */
export function configFields(): readonly ConfigField[] {
  return schemaTree().fields;
}

/** The top-level objects and what they are for. */
export function configSections(): readonly ConfigSection[] {
  return schemaTree().sections;
}

/** `['batch', 'maxRows']` → `PG_REPLICATE_BATCH_MAX_ROWS`. */
export function envName(path: readonly string[]): string {
  return (
    ENV_PREFIX + path.map((segment) => segment.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_')
  );
}

function walk(
  node: JsonSchema,
  path: string[],
  onlyFor: string | undefined,
  fields: ConfigField[],
  sections: ConfigSection[],
  required: boolean,
): void {
  const variants = node.oneOf ?? node.anyOf;
  const objectVariants = variants?.filter((variant) => variant.properties !== undefined) ?? [];
  if (node.properties !== undefined) {
    if (path.length === 1) sections.push({ key: path[0]!, description: node.description ?? '' });
    for (const [key, child] of Object.entries(node.properties)) {
      walk(child, [...path, key], onlyFor, fields, sections, node.required?.includes(key) ?? false);
    }
    return;
  }
  if (variants !== undefined && objectVariants.length === variants.length) {
    // A discriminated union (the sink): its `type`, then each variant's own fields.
    sections.push({ key: path.join('.'), description: node.description ?? '' });
    const types = objectVariants.map((variant) => String(variant.properties!['type']?.const));
    fields.push(leaf(node, [...path, 'type'], 'string', types, undefined, true));
    const seen = new Set(['type']);
    for (const variant of objectVariants) {
      const type = String(variant.properties!['type']?.const);
      for (const [key, child] of Object.entries(variant.properties!)) {
        if (seen.has(key)) continue;
        seen.add(key);
        walk(
          child,
          [...path, key],
          `type: ${type}`,
          fields,
          sections,
          variant.required?.includes(key) ?? false,
        );
      }
    }
    return;
  }
  fields.push(leaf(node, path, kindOf(node), node.enum?.map(String), onlyFor, required));
}

function leaf(
  node: JsonSchema,
  path: string[],
  kind: FieldKind,
  values: string[] | undefined,
  onlyFor: string | undefined,
  required: boolean,
): ConfigField {
  return {
    path,
    dotted: path.join('.'),
    env: envName(path),
    kind,
    description: node.description ?? '',
    required: required && node.default === undefined,
    defaultValue: node.default,
    values,
    minimum: node.minimum,
    maximum: node.maximum !== undefined && node.maximum < Number.MAX_SAFE_INTEGER ? node.maximum : undefined,
    secret: node.secret === true,
    onlyFor,
  };
}

function kindOf(node: JsonSchema): FieldKind {
  const types = (node.anyOf ?? node.oneOf ?? [node]).map((variant) => variant.type);
  if (types.includes('array')) return types.includes('string') ? 'string-or-list' : 'list';
  if (types.includes('integer')) return 'integer';
  if (types.includes('number')) return 'number';
  if (types.includes('boolean')) return 'boolean';
  return 'string';
}
