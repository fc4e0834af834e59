/**
 * The types every Postgres (14+) has, with their fixed OIDs: base types, their array types
 * (`_int4`…), and the builtin ranges with their multiranges. Builtin OIDs never change between
 * versions, so change events of tables that use only these types decode without a catalog
 * round trip; everything else is loaded by {@link TypeRegistry.load}.
 * Generated from `pg_type`/`pg_range` of PostgreSQL 17 (pseudo-types and catalog row types left out).
 */
import type { PgType, PgTypeCategory } from './type-registry.js';

/** `[oid, name, array type oid (0: none)]` of the builtin base types. */
const BASE_TYPES: readonly (readonly [number, string, number])[] = [
  [16, 'bool', 1000],
  [17, 'bytea', 1001],
  [18, 'char', 1002],
  [19, 'name', 1003],
  [20, 'int8', 1016],
  [21, 'int2', 1005],
  [22, 'int2vector', 1006],
  [23, 'int4', 1007],
  [24, 'regproc', 1008],
  [25, 'text', 1009],
  [26, 'oid', 1028],
  [27, 'tid', 1010],
  [28, 'xid', 1011],
  [29, 'cid', 1012],
  [30, 'oidvector', 1013],
  [114, 'json', 199],
  [142, 'xml', 143],
  [194, 'pg_node_tree', 0],
  [600, 'point', 1017],
  [601, 'lseg', 1018],
  [602, 'path', 1019],
  [603, 'box', 1020],
  [604, 'polygon', 1027],
  [628, 'line', 629],
  [650, 'cidr', 651],
  [700, 'float4', 1021],
  [701, 'float8', 1022],
  [718, 'circle', 719],
  [774, 'macaddr8', 775],
  [790, 'money', 791],
  [829, 'macaddr', 1040],
  [869, 'inet', 1041],
  [1033, 'aclitem', 1034],
  [1042, 'bpchar', 1014],
  [1043, 'varchar', 1015],
  [1082, 'date', 1182],
  [1083, 'time', 1183],
  [1114, 'timestamp', 1115],
  [1184, 'timestamptz', 1185],
  [1186, 'interval', 1187],
  [1266, 'timetz', 1270],
  [1560, 'bit', 1561],
  [1562, 'varbit', 1563],
  [1700, 'numeric', 1231],
  [1790, 'refcursor', 2201],
  [2202, 'regprocedure', 2207],
  [2203, 'regoper', 2208],
  [2204, 'regoperator', 2209],
  [2205, 'regclass', 2210],
  [2206, 'regtype', 2211],
  [2950, 'uuid', 2951],
  [2970, 'txid_snapshot', 2949],
  [3220, 'pg_lsn', 3221],
  [3361, 'pg_ndistinct', 0],
  [3402, 'pg_dependencies', 0],
  [3614, 'tsvector', 3643],
  [3615, 'tsquery', 3645],
  [3642, 'gtsvector', 3644],
  [3734, 'regconfig', 3735],
  [3769, 'regdictionary', 3770],
  [3802, 'jsonb', 3807],
  [4072, 'jsonpath', 4073],
  [4089, 'regnamespace', 4090],
  [4096, 'regrole', 4097],
  [4191, 'regcollation', 4192],
  [4600, 'pg_brin_bloom_summary', 0],
  [4601, 'pg_brin_minmax_multi_summary', 0],
  [5017, 'pg_mcv_list', 0],
  [5038, 'pg_snapshot', 5039],
  [5069, 'xid8', 271],
];

/** `[oid, name, array oid, subtype oid, multirange oid, multirange name, multirange array oid]`. */
const RANGE_TYPES: readonly (readonly [number, string, number, number, number, string, number])[] = [
  [3904, 'int4range', 3905, 23, 4451, 'int4multirange', 6150],
  [3906, 'numrange', 3907, 1700, 4532, 'nummultirange', 6151],
  [3908, 'tsrange', 3909, 1114, 4533, 'tsmultirange', 6152],
  [3910, 'tstzrange', 3911, 1184, 4534, 'tstzmultirange', 6153],
  [3912, 'daterange', 3913, 1082, 4535, 'datemultirange', 6155],
  [3926, 'int8range', 3927, 20, 4536, 'int8multirange', 6157],
];

/** The only builtin type whose arrays are not comma-separated: a box's text has commas in it. */
const DELIMITERS: Readonly<Record<string, string>> = { box: ';' };

function define(
  types: Map<number, PgType>,
  oid: number,
  name: string,
  category: PgTypeCategory,
  links: Partial<Pick<PgType, 'element' | 'subtype'>> = {},
): PgType {
  const type: PgType = Object.freeze({
    oid,
    schema: 'pg_catalog',
    name,
    category,
    delimiter: DELIMITERS[name] ?? ',',
    ...links,
  });
  types.set(oid, type);
  return type;
}

function defineArray(types: Map<number, PgType>, arrayOid: number, element: PgType): void {
  if (arrayOid !== 0) define(types, arrayOid, `_${element.name}`, 'array', { element });
}

function buildBuiltinTypes(): ReadonlyMap<number, PgType> {
  const types = new Map<number, PgType>();
  for (const [oid, name, arrayOid] of BASE_TYPES)
    defineArray(types, arrayOid, define(types, oid, name, 'base'));
  for (const [oid, name, arrayOid, subtypeOid, multiOid, multiName, multiArrayOid] of RANGE_TYPES) {
    const range = define(types, oid, name, 'range', { subtype: types.get(subtypeOid)! });
    defineArray(types, arrayOid, range);
    defineArray(types, multiArrayOid, define(types, multiOid, multiName, 'multirange', { subtype: range }));
  }
  return types;
}

/** Every builtin type by OID. A multirange's `subtype` is its range type. */
export const BUILTIN_TYPES: ReadonlyMap<number, PgType> = buildBuiltinTypes();
