/**
 * Knows every type a change event can carry and hands out one text parser per type OID.
 * Builtin types are known up front; user types (enums, domains, composites, their arrays and
 * ranges, extension types) are read from the catalog once, in one recursive query, when a
 * relation using them first shows up. Parsers are built once per OID and cached, because the
 * decoder asks for them on every column of every row.
 */
import { parseArrayText } from './array-text.js';
import { BUILTIN_TYPES } from './builtin-types.js';
import { parseMultirangeText, parseRangeText } from './range-text.js';
import { parseRecordText } from './record-text.js';
import { BUILTIN_TEXT_PARSERS, parseString, type TextParser } from './text-parsers.js';
import { PgUnknown } from './values.js';

export type { TextParser } from './text-parsers.js';

/** What kind of type an OID names (`pg_type.typtype`, with arrays told apart from other base types). */
export type PgTypeCategory =
  | 'base'
  | 'array'
  | 'range'
  | 'multirange'
  | 'composite'
  | 'enum'
  | 'domain'
  | 'unknown';

/** A type as the decoder needs it. Related types are linked, not referenced by OID. */
export interface PgType {
  readonly oid: number;
  readonly schema: string;
  readonly name: string;
  readonly category: PgTypeCategory;
  /** Arrays: the element type. */
  readonly element?: PgType;
  /** Ranges: the subtype; multiranges: their range type. */
  readonly subtype?: PgType;
  /** Domains: the type the domain constrains. */
  readonly baseType?: PgType;
  /** Composites: the live (not dropped) fields in order. */
  readonly fields?: readonly { readonly name: string; readonly type: PgType }[];
  /** Enums: the labels in sort order. */
  readonly enumLabels?: readonly string[];
  /** The separator of this type's elements in array text (`pg_type.typdelim`). */
  readonly delimiter: string;
}

/** Minimal query surface (a pg.Client satisfies it); rows come back as strings (our connections use raw text parsers). */
export interface Queryable {
  query<R extends Record<string, unknown>>(sql: string, values?: unknown[]): Promise<{ rows: R[] }>;
}

/** One row of {@link LOAD_TYPES_SQL}; every column is text so any `pg` type configuration reads it alike. */
interface TypeRow extends Record<string, unknown> {
  oid: string;
  schema: string;
  name: string;
  typtype: string;
  typcategory: string;
  element: string;
  base: string;
  delimiter: string;
  range_subtype: string | null;
  multirange_range: string | null;
  labels: string | null;
  fields: string | null;
}

/**
 * The requested types and, recursively, every type they are built from (array elements, domain
 * bases, range subtypes, a multirange's range, composite fields) in one round trip.
 */
const LOAD_TYPES_SQL = `
WITH RECURSIVE closure(oid) AS (
  SELECT unnest($1::oid[])
  UNION
  SELECT dep.oid
  FROM closure c
  JOIN pg_catalog.pg_type t ON t.oid = c.oid
  CROSS JOIN LATERAL (
    SELECT t.typelem WHERE t.typelem <> 0
    UNION ALL SELECT t.typbasetype WHERE t.typbasetype <> 0
    UNION ALL SELECT r.rngsubtype FROM pg_catalog.pg_range r WHERE r.rngtypid = t.oid
    UNION ALL SELECT r.rngtypid FROM pg_catalog.pg_range r WHERE r.rngmultitypid = t.oid
    UNION ALL SELECT a.atttypid FROM pg_catalog.pg_attribute a
      WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
  ) AS dep(oid)
)
SELECT t.oid::text AS oid, n.nspname::text AS schema, t.typname::text AS name,
  t.typtype::text AS typtype, t.typcategory::text AS typcategory, t.typelem::text AS element,
  t.typbasetype::text AS base, t.typdelim::text AS delimiter,
  (SELECT r.rngsubtype::text FROM pg_catalog.pg_range r WHERE r.rngtypid = t.oid) AS range_subtype,
  (SELECT r.rngtypid::text FROM pg_catalog.pg_range r WHERE r.rngmultitypid = t.oid) AS multirange_range,
  (SELECT json_agg(e.enumlabel ORDER BY e.enumsortorder)::text
     FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid) AS labels,
  (SELECT json_agg(json_build_array(a.attname, a.atttypid) ORDER BY a.attnum)::text
     FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) AS fields
FROM closure c
JOIN pg_catalog.pg_type t ON t.oid = c.oid
JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace`;

const CATEGORIES: Readonly<Record<string, PgTypeCategory>> = {
  b: 'base',
  c: 'composite',
  d: 'domain',
  e: 'enum',
  r: 'range',
  m: 'multirange',
};

/** `PgType` while its links are being filled in. */
type Draft = { -readonly [K in keyof PgType]: PgType[K] };

export interface LoadOptions {
  /** Read types again even if already loaded (after `ALTER TYPE … ADD ATTRIBUTE`, say). */
  reload?: boolean;
}

/**
 * Maps type OIDs to {@link PgType}s and text parsers. One registry per source database: OIDs of
 * user types differ between databases.
 */
export class TypeRegistry {
  readonly #types = new Map<number, PgType>(BUILTIN_TYPES);
  /** Loaded base types whose values are text (`typcategory = 'S'`, e.g. citext). */
  readonly #textLike = new Set<number>();
  readonly #overrides = new Map<number, TextParser>();
  readonly #parsers = new Map<number, TextParser>();

  /** The type with this OID, if builtin or loaded. */
  get(oid: number): PgType | undefined {
    return this.#types.get(oid);
  }

  /** Never throws: unknown OIDs get a parser that returns PgUnknown. Parsers are cached per OID. */
  parser(oid: number): TextParser {
    let parser = this.#parsers.get(oid);
    if (parser === undefined) {
      parser = this.#build(oid);
      this.#parsers.set(oid, parser);
    }
    return parser;
  }

  /**
   * Loads non-builtin types (enums, domains, composites, arrays/ranges of them, extension types)
   * from pg_type/pg_attribute/pg_enum/pg_range, recursively, in one query. OIDs already known
   * are skipped unless `reload`; OIDs the catalog does not have stay unknown. Needs PG 14+
   * (multiranges). Parsers handed out before a load keep their old view: ask again afterwards.
   */
  async load(client: Queryable, oids: Iterable<number>, options: LoadOptions = {}): Promise<void> {
    const wanted = [...new Set(oids)].filter(
      (oid) => !BUILTIN_TYPES.has(oid) && (options.reload || !this.#types.has(oid)),
    );
    if (wanted.length === 0) return;
    const { rows } = await client.query<TypeRow>(LOAD_TYPES_SQL, [wanted]);
    const drafts = new Map<number, Draft>();
    for (const row of rows) {
      const oid = Number(row.oid);
      if (BUILTIN_TYPES.has(oid) || (!options.reload && this.#types.has(oid))) continue;
      drafts.set(oid, this.#draft(row));
    }
    const resolve = (oid: string | null): PgType | undefined =>
      oid === null || oid === '0' ? undefined : (drafts.get(Number(oid)) ?? this.#types.get(Number(oid)));
    for (const row of rows) {
      const draft = drafts.get(Number(row.oid));
      if (draft === undefined) continue;
      if (draft.category === 'array') draft.element = resolve(row.element);
      if (draft.category === 'domain') draft.baseType = resolve(row.base);
      if (draft.category === 'range') draft.subtype = resolve(row.range_subtype);
      if (draft.category === 'multirange') draft.subtype = resolve(row.multirange_range);
      if (draft.category === 'composite') {
        const fields = JSON.parse(row.fields ?? '[]') as [string, number][];
        draft.fields = fields.map(([name, typeOid]) => ({
          name,
          type: resolve(String(typeOid)) ?? unknownType(typeOid),
        }));
      }
    }
    for (const [oid, draft] of drafts) this.#types.set(oid, Object.freeze(draft));
    // Containers built earlier may hold parsers of types that were unknown then.
    this.#parsers.clear();
  }

  /** Registers/overrides a parser (e.g. a user's own for an extension type). */
  register(oid: number, parser: TextParser): void {
    this.#overrides.set(oid, parser);
    this.#parsers.clear();
  }

  #draft(row: TypeRow): Draft {
    const oid = Number(row.oid);
    let category = CATEGORIES[row.typtype] ?? 'unknown';
    // User-made arrays are base types with an element (`_mytype`); fixed-size types such as
    // point also have a typelem, but not the array category.
    if (category === 'base' && row.typcategory === 'A' && row.element !== '0') category = 'array';
    if (category === 'base' && row.typcategory === 'S') this.#textLike.add(oid);
    else this.#textLike.delete(oid);
    const draft: Draft = {
      oid,
      schema: row.schema,
      name: row.name,
      category,
      delimiter: row.delimiter || ',',
    };
    if (category === 'enum') draft.enumLabels = JSON.parse(row.labels ?? '[]') as string[];
    return draft;
  }

  #build(oid: number): TextParser {
    const override = this.#overrides.get(oid);
    if (override !== undefined) return override;
    const type = this.#types.get(oid);
    if (type === undefined) return unknownParser(`oid ${oid}`, oid);
    const typeName = type.name;
    switch (type.category) {
      case 'base':
        if (type.schema === 'pg_catalog' && BUILTIN_TYPES.get(oid) === type)
          return BUILTIN_TEXT_PARSERS[typeName] ?? parseString;
        return this.#textLike.has(oid) ? parseString : unknownParser(typeName, oid);
      case 'enum':
        return parseString;
      case 'domain':
        return type.baseType ? this.parser(type.baseType.oid) : unknownParser(typeName, oid);
      case 'array': {
        if (!type.element) return unknownParser(typeName, oid);
        const parseElement = this.parser(type.element.oid);
        const delimiter = type.element.delimiter;
        return (text) => parseArrayText(text, delimiter, parseElement, typeName);
      }
      case 'range': {
        if (!type.subtype) return unknownParser(typeName, oid);
        const parseBound = this.parser(type.subtype.oid);
        return (text) => parseRangeText(text, parseBound, typeName);
      }
      case 'multirange': {
        const subtype = type.subtype?.subtype;
        if (!subtype) return unknownParser(typeName, oid);
        const parseBound = this.parser(subtype.oid);
        return (text) => parseMultirangeText(text, parseBound, typeName);
      }
      case 'composite': {
        const fields = (type.fields ?? []).map((field) => ({
          name: field.name,
          parse: this.parser(field.type.oid),
        }));
        return (text) => parseRecordText(text, fields, typeName);
      }
      default:
        return unknownParser(typeName, oid);
    }
  }
}

function unknownParser(typeName: string, oid: number): TextParser {
  return (text) => new PgUnknown(typeName, text, oid);
}

/** A placeholder for a field type the catalog query did not return (dropped concurrently). */
function unknownType(oid: number): PgType {
  return { oid, schema: '', name: `oid ${oid}`, category: 'unknown', delimiter: ',' };
}
