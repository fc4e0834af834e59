/**
 * Writes one JSON object per line for every copied row and every change (the format is documented
 * in the README and is a contract: field names and value encodings do not change lightly).
 *
 *   {"op":"insert","schema":"public","table":"t","new":{…},"old":null,"lsn":"0/16B3748",
 *    "xid":735,"commit_lsn":"0/16B37A0","commit_time":"2024-05-01T10:00:00.123456Z"}
 *
 * Delivery is at-least-once: a line is "durable" once the stream accepted it. With `stateFile`
 * the resumption state survives restarts; without it every run starts fresh.
 */
import type { Writable } from 'node:stream';
import type { CopiedRows } from '../copy-batch.js';
import { PgReplicateError } from '../errors.js';
import type { ChangeEvent } from '../events.js';
import { formatLsn, type Lsn } from '../lsn.js';
import type { RowData } from '../row.js';
import { type TableSchema, tableKey } from '../schema.js';
import { formatJsonValue } from '../types/json-format.js';
import type { TextParser, TypeRegistry } from '../types/type-registry.js';
import { PgTimestamp } from '../types/values.js';
import type { ChangeBatch, Sink, SinkContext, SinkState } from './sink.js';
import { StateFile } from './state-file.js';

export interface StdoutSinkOptions {
  /** Where lines go (default `process.stdout`). */
  output?: Writable;
  /** JSON file that keeps the resumption state between runs. */
  stateFile?: string;
}

/** Per-table JSON encoders, built once per schema. */
interface RowEncoder {
  readonly prefix: string;
  readonly names: readonly string[];
  /** `"name":` for each column. */
  readonly keys: readonly string[];
  readonly parsers: readonly TextParser[];
}

export class StdoutSink implements Sink {
  readonly name = 'stdout';
  readonly transactional = false;
  readonly #output: Writable;
  readonly #state: StateFile | null;
  #types: TypeRegistry | null = null;
  #copyLsn = 'null';
  readonly #encoders = new WeakMap<TableSchema, RowEncoder>();
  readonly #copied = new Map<string, Lsn | null>();
  #lastLsn: Lsn | null = null;

  constructor(options: StdoutSinkOptions = {}) {
    this.#output = options.output ?? process.stdout;
    this.#state = options.stateFile === undefined ? null : new StateFile(options.stateFile);
  }

  async open(context: SinkContext): Promise<SinkState> {
    this.#types = context.types;
    if (this.#state !== null) return this.#state.load();
    return { copiedTables: new Map(this.#copied), lastLsn: this.#lastLsn };
  }

  async prepare(): Promise<void> {}

  async beginCopy(table: TableSchema, snapshotLsn: Lsn | null): Promise<void> {
    this.#copyLsn = snapshotLsn === null ? 'null' : `"${formatLsn(snapshotLsn)}"`;
    this.#copied.delete(tableKey(table));
    this.#state?.setCopied(tableKey(table), undefined);
  }

  async writeRows(table: TableSchema, rows: CopiedRows): Promise<void> {
    const encoder = this.#encoder(table);
    let out = '';
    for (const row of rows) {
      out += `{"op":"copy",${encoder.prefix},"new":${this.#encodeRow(encoder, row).json},"lsn":${this.#copyLsn}}\n`;
    }
    await this.#write(out);
  }

  async endCopy(table: TableSchema, snapshotLsn: Lsn | null): Promise<void> {
    this.#copied.set(tableKey(table), snapshotLsn);
    this.#state?.setCopied(tableKey(table), snapshotLsn);
  }

  async writeChanges(batch: ChangeBatch): Promise<void> {
    let out = '';
    for (const event of batch.events) out += this.#line(event);
    if (out !== '') await this.#write(out);
    if (batch.commit) {
      this.#lastLsn = batch.commit.lsn;
      this.#state?.setLastLsn(batch.commit.lsn);
    }
  }

  async close(): Promise<void> {}

  #line(event: ChangeEvent): string {
    if (event.op === 'schema') return '';
    const tx = `"lsn":"${formatLsn(event.lsn)}","xid":${event.tx.xid},"commit_lsn":"${formatLsn(event.tx.commitLsn)}","commit_time":"${new PgTimestamp(event.tx.commitTime, true).toISOString()}"`;
    if (event.op === 'truncate') {
      return event.tables
        .map((table) => `{"op":"truncate",${this.#encoder(table).prefix},"new":null,"old":null,${tx}}\n`)
        .join('');
    }
    const encoder = this.#encoder(event.table);
    const old =
      event.op === 'insert' || event.old === undefined ? 'null' : this.#encodeRow(encoder, event.old).json;
    if (event.op === 'delete') return `{"op":"delete",${encoder.prefix},"new":null,"old":${old},${tx}}\n`;
    const encoded = this.#encodeRow(encoder, event.new);
    const unchanged =
      encoded.unchanged.length > 0 ? `,"unchanged_toast":${JSON.stringify(encoded.unchanged)}` : '';
    return `{"op":"${event.op}",${encoder.prefix},"new":${encoded.json},"old":${old},${tx}${unchanged}}\n`;
  }

  #encoder(table: TableSchema): RowEncoder {
    let encoder = this.#encoders.get(table);
    if (encoder === undefined) {
      const types = this.#types!;
      encoder = {
        prefix: `"schema":${JSON.stringify(table.schema)},"table":${JSON.stringify(table.name)}`,
        names: table.columns.map((column) => column.name),
        keys: table.columns.map((column) => `${JSON.stringify(column.name)}:`),
        parsers: table.columns.map((column) => types.parser(column.typeOid)),
      };
      this.#encoders.set(table, encoder);
    }
    return encoder;
  }

  /** The row as a JSON object; unchanged TOAST columns are left out and listed. */
  #encodeRow(encoder: RowEncoder, row: RowData): { json: string; unchanged: string[] } {
    let json = '{';
    const unchanged: string[] = [];
    for (let i = 0; i < row.length; i++) {
      if (row.isUnchangedToast(i)) {
        unchanged.push(encoder.names[i]!);
        continue;
      }
      const text = row.text(i);
      const value = text === null ? 'null' : formatJsonValue(encoder.parsers[i]!(text));
      json += `${json.length > 1 ? ',' : ''}${encoder.keys[i]}${value}`;
    }
    return { json: `${json}}`, unchanged };
  }

  #write(text: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#output.write(text, (error) => {
        if (error) {
          reject(
            new PgReplicateError('SINK_UNAVAILABLE', `cannot write to stdout: ${error.message}`, {
              hint: 'the reading side of the pipe went away',
              cause: error,
            }),
          );
        } else resolve();
      });
    });
  }
}
