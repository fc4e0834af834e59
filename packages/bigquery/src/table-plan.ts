/**
 * Everything the sink derives from one Postgres table schema, once: the BigQuery columns (names,
 * types, modes), the primary key BigQuery's CDC needs, the clustering, and the protobuf descriptor
 * rows are appended with — the table's columns plus the CDC pseudo-columns `_CHANGE_TYPE` and
 * `_CHANGE_SEQUENCE_NUMBER`, which are part of the writer schema but never of the table.
 */
import type { protos } from '@google-cloud/bigquery-storage';
import { PgReplicateError, type TableSchema, type TypeRegistry, tableKey } from 'pg-replicate';
import { columnNames, viewName } from './naming.js';
import { type BigQueryType, mapColumn, type ProtoKind, type TypeMapping } from './type-mapping.js';

type DescriptorProto = protos.google.protobuf.IDescriptorProto;

/** One column of a planned table. */
export interface ColumnPlan {
  /** The Postgres column name. */
  readonly pgName: string;
  /** The BigQuery column name (see `columnNames`). */
  readonly name: string;
  /** Position in the Postgres row (and in `RowData`). */
  readonly index: number;
  readonly mapping: TypeMapping;
  /** Field number in the row message (index + 1). */
  readonly field: number;
  /** Part of the primary key: REQUIRED in BigQuery. */
  readonly key: boolean;
}

/** A REST `TableFieldSchema`, as tables are created with. */
export interface FieldSchema {
  name: string;
  type: BigQueryType;
  mode: 'REQUIRED' | 'NULLABLE' | 'REPEATED';
}

export interface TablePlan {
  readonly table: TableSchema;
  /** `tableKey` of the Postgres table. */
  readonly key: string;
  /** The view users query. */
  readonly view: string;
  readonly columns: readonly ColumnPlan[];
  /** Primary key columns, in key order. */
  readonly keyColumns: readonly ColumnPlan[];
  /** Columns whose values Postgres may leave out as unchanged TOAST. */
  readonly toastable: readonly ColumnPlan[];
  readonly fields: readonly FieldSchema[];
  /** At most four key columns BigQuery can cluster on. */
  readonly clustering: readonly string[];
  readonly descriptor: DescriptorProto;
  readonly changeTypeField: number;
  readonly sequenceField: number;
}

/** BigQuery's limit on primary key columns for CDC. */
const MAX_KEY_COLUMNS = 16;
const MAX_CLUSTERING = 4;
const CLUSTERABLE = new Set<BigQueryType>([
  'BOOL',
  'INT64',
  'NUMERIC',
  'BIGNUMERIC',
  'STRING',
  'DATE',
  'DATETIME',
  'TIMESTAMP',
]);

// google.protobuf.FieldDescriptorProto enums.
const PROTO_TYPE: Readonly<Record<ProtoKind, number>> = {
  double: 1,
  int64: 3,
  int32: 5,
  bool: 8,
  string: 9,
  bytes: 12,
};
const LABEL_OPTIONAL = 1;
const LABEL_REQUIRED = 2;
const LABEL_REPEATED = 3;

/**
 * The columns BigQuery's primary key is declared on: the columns Postgres identifies old rows by
 * (a delete carries only those), so the replica identity index under REPLICA IDENTITY USING INDEX,
 * else the primary key (under FULL too: the whole old row then holds it). None: not replicable.
 */
function bigQueryKey(table: TableSchema): readonly string[] {
  if (table.replicaIdentity === 'index')
    return table.columns.filter((column) => column.isKey).map((c) => c.name);
  if (table.replicaIdentity === 'nothing') return [];
  return table.primaryKey.length > 0 ? table.primaryKey : [];
}

/** Plans `table`; throws SCHEMA_UNSUPPORTED when BigQuery CDC cannot mirror it. */
export function planTable(table: TableSchema, types: TypeRegistry): TablePlan {
  const key = tableKey(table);
  const keyNames = bigQueryKey(table);
  if (keyNames.length === 0) {
    throw new PgReplicateError('SCHEMA_UNSUPPORTED', `${key} has no primary key, which BigQuery CDC needs`, {
      hint: `add a primary key (or REPLICA IDENTITY USING INDEX on a unique index of NOT NULL columns), or leave ${key} out of the publication`,
    });
  }
  if (keyNames.length > MAX_KEY_COLUMNS) {
    throw new PgReplicateError(
      'SCHEMA_UNSUPPORTED',
      `${key} has a ${keyNames.length}-column key; BigQuery CDC allows ${MAX_KEY_COLUMNS}`,
      { hint: 'replicate it through a narrower unique key (REPLICA IDENTITY USING INDEX)' },
    );
  }
  const names = columnNames(table.columns.map((column) => column.name));
  const keySet = new Set(keyNames);
  const columns = table.columns.map(
    (column, index): ColumnPlan => ({
      pgName: column.name,
      name: names[index]!,
      index,
      mapping: mapColumn(column, types),
      field: index + 1,
      key: keySet.has(column.name),
    }),
  );
  const byName = new Map(columns.map((column) => [column.pgName, column]));
  const keyColumns = keyNames.map((name) => byName.get(name)!);
  for (const column of keyColumns) {
    if (column.mapping.repeated || column.mapping.bqType === 'JSON') {
      throw new PgReplicateError(
        'SCHEMA_UNSUPPORTED',
        `${key}: key column ${column.pgName} maps to ${column.mapping.repeated ? 'an array' : 'JSON'}, which cannot be a BigQuery primary key`,
        { hint: 'replicate the table through another unique key (REPLICA IDENTITY USING INDEX)' },
      );
    }
  }
  const fields = columns.map(
    (column): FieldSchema => ({
      name: column.name,
      type: column.mapping.bqType,
      mode: column.mapping.repeated ? 'REPEATED' : column.key ? 'REQUIRED' : 'NULLABLE',
    }),
  );
  const changeTypeField = columns.length + 1;
  const sequenceField = columns.length + 2;
  return {
    table,
    key,
    view: viewName(table),
    columns,
    keyColumns,
    toastable: columns.filter((column) => !column.mapping.fixedLength),
    fields,
    clustering: keyColumns
      .filter((column) => CLUSTERABLE.has(column.mapping.bqType))
      .slice(0, MAX_CLUSTERING)
      .map((column) => column.name),
    descriptor: {
      name: 'PgReplicateRow',
      field: [
        ...columns.map((column) => ({
          name: column.name,
          number: column.field,
          type: PROTO_TYPE[column.mapping.proto],
          label: column.mapping.repeated ? LABEL_REPEATED : column.key ? LABEL_REQUIRED : LABEL_OPTIONAL,
        })),
        { name: '_CHANGE_TYPE', number: changeTypeField, type: PROTO_TYPE.string, label: LABEL_OPTIONAL },
        {
          name: '_CHANGE_SEQUENCE_NUMBER',
          number: sequenceField,
          type: PROTO_TYPE.string,
          label: LABEL_OPTIONAL,
        },
      ],
    },
    changeTypeField,
    sequenceField,
  };
}
