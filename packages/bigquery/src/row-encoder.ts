/**
 * Turns rows into the protobuf messages appended to a table's default stream: the column values
 * (through the type mapping), then `_CHANGE_TYPE` and `_CHANGE_SEQUENCE_NUMBER`. Converting and
 * writing are split: values are converted first (so unchanged TOAST columns can be filled in from
 * elsewhere, and the converted values kept for later merges), then written field by field.
 */
import { PgReplicateError, type RowData } from 'pg-replicate';
import { type ProtoWriter, WireType } from './proto-writer.js';
import type { ColumnPlan, TablePlan } from './table-plan.js';
import { type ProtoScalar, type ProtoValue, UnrepresentableValueError } from './type-mapping.js';

/** Marks a column Postgres did not send (unchanged TOAST): its value must come from elsewhere. */
export const UNCHANGED: unique symbol = Symbol('unchanged TOAST');
/** A converted row: one value per column, in column order. */
export type RowValues = (ProtoValue | typeof UNCHANGED)[];

export type ChangeType = 'UPSERT' | 'DELETE';

/** What to do with a value the column's BigQuery type cannot hold. */
export type UnrepresentablePolicy = 'error' | 'null';

/** Converts rows of one table; reports each column's first lossy value once (policy `null`). */
export class RowConverter {
  readonly #plan: TablePlan;
  readonly #policy: UnrepresentablePolicy;
  readonly #warn: (message: string) => void;
  readonly #warned = new Set<number>();

  constructor(plan: TablePlan, policy: UnrepresentablePolicy, warn: (message: string) => void) {
    this.#plan = plan;
    this.#policy = policy;
    this.#warn = warn;
  }

  get plan(): TablePlan {
    return this.#plan;
  }

  /** Every column of `row` converted; unchanged TOAST columns are {@link UNCHANGED}. */
  values(row: RowData): RowValues {
    const columns = this.#plan.columns;
    const values: RowValues = new Array(columns.length);
    for (let i = 0; i < columns.length; i++) values[i] = this.#value(row, columns[i]!);
    return values;
  }

  /** The key columns of `row` (a whole row or the identity key pgoutput sends); others null. */
  keyValues(row: RowData): RowValues {
    const values: RowValues = new Array(this.#plan.columns.length).fill(null);
    for (const column of this.#plan.keyColumns) values[column.index] = this.#value(row, column);
    return values;
  }

  #value(row: RowData, column: ColumnPlan): ProtoValue | typeof UNCHANGED {
    const i = column.index;
    if (i >= row.length) return null;
    if (row.isUnchangedToast(i)) return UNCHANGED;
    const text = row.text(i);
    if (text === null) return null;
    try {
      return column.mapping.fromText(text);
    } catch (error) {
      if (!(error instanceof UnrepresentableValueError) || this.#policy === 'error' || column.key) {
        throw conversionError(this.#plan, column, row, error);
      }
      if (!this.#warned.has(i)) {
        this.#warned.add(i);
        this.#warn(
          `${this.#plan.key}.${column.pgName}: ${error.message}; written as NULL (row ${describeKey(this.#plan, row)}). Further such values of this column are not reported.`,
        );
      }
      return null;
    }
  }
}

/** Writes one row message; `values` must hold no {@link UNCHANGED} any more. */
export function writeRow(
  writer: ProtoWriter,
  plan: TablePlan,
  values: RowValues,
  changeType: ChangeType,
  sequence: string,
): void {
  const columns = plan.columns;
  for (let i = 0; i < columns.length; i++) {
    const value = values[i];
    if (value === null || value === undefined) continue;
    if (value === UNCHANGED)
      throw new Error(`unresolved unchanged TOAST value in ${plan.key}.${columns[i]!.pgName}`);
    const column = columns[i]!;
    if (column.mapping.repeated) {
      for (const item of value as readonly ProtoScalar[]) writeScalar(writer, column, item);
    } else {
      writeScalar(writer, column, value as ProtoScalar);
    }
  }
  writer.tag(plan.changeTypeField, WireType.LengthDelimited);
  writer.string(changeType);
  writer.tag(plan.sequenceField, WireType.LengthDelimited);
  writer.string(sequence);
}

function writeScalar(writer: ProtoWriter, column: ColumnPlan, value: ProtoScalar): void {
  switch (column.mapping.proto) {
    case 'int64':
    case 'int32':
      writer.tag(column.field, WireType.Varint);
      writer.int64(value as number | bigint);
      return;
    case 'bool':
      writer.tag(column.field, WireType.Varint);
      writer.bool(value as boolean);
      return;
    case 'double':
      writer.tag(column.field, WireType.Fixed64);
      writer.double(value as number);
      return;
    case 'string':
      writer.tag(column.field, WireType.LengthDelimited);
      writer.string(value as string);
      return;
    case 'bytes':
      writer.tag(column.field, WireType.LengthDelimited);
      writer.bytes(value as Buffer);
      return;
  }
}

/** `(id=42, region='eu')`: the row's key as Postgres printed it, for messages. */
export function describeKey(plan: TablePlan, row: RowData): string {
  const parts = plan.keyColumns.map((column) => {
    const text = column.index < row.length ? row.text(column.index) : null;
    return `${column.pgName}=${text === null ? 'NULL' : shorten(text)}`;
  });
  return `(${parts.join(', ')})`;
}

function shorten(text: string): string {
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function conversionError(
  plan: TablePlan,
  column: ColumnPlan,
  row: RowData,
  error: unknown,
): PgReplicateError {
  const message = error instanceof Error ? error.message : String(error);
  const unrepresentable = error instanceof UnrepresentableValueError;
  return new PgReplicateError(
    'SINK_ERROR',
    `${plan.key}.${column.pgName} of row ${describeKey(plan, row)}: ${message}`,
    {
      hint: unrepresentable
        ? column.key
          ? 'a key value must be exact: change the column type in Postgres or replicate through another key'
          : 'set the BigQuery sink option unrepresentable: "null" to write such values as NULL, or change the column type in Postgres'
        : 'please report this value with the column type',
      cause: error,
    },
  );
}
