/**
 * The pure parts, without a database: array text splitting, COPY escaping, the change collapser
 * and the type mapping.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { describe, expect, it } from 'vitest';
import type { RowChangeEvent, RowData, TableSchema, TransactionInfo } from '../../pg-replicate/src/index.js';
import { unescapeCopyText } from '../../pg-replicate/src/row.js';
import { TypeRegistry } from '../../pg-replicate/src/types/type-registry.js';
import { chunkRanges, updateBytes, versionBytes } from '../src/apply-ahead.js';
import { splitArrayText } from '../src/array-text.js';
import { ChangeCollapser, type KeyedEntry } from '../src/change-collapser.js';
import { rowGroupSizeFor, smallerSize } from '../src/duckdb-database.js';
import { escapeCopyText, StageFile } from '../src/stage-file.js';
import { rowIdentity } from '../src/table-plan.js';
import { mapColumn, UnrepresentableValueError } from '../src/type-mapping.js';

/** A row of text values; `undefined` marks an unchanged TOAST value. */
class Row implements RowData {
  constructor(readonly values: (string | null | undefined)[]) {}
  get length(): number {
    return this.values.length;
  }
  isNull(i: number): boolean {
    return this.values[i] === null;
  }
  isUnchangedToast(i: number): boolean {
    return this.values[i] === undefined;
  }
  text(i: number): string | null {
    return this.values[i] ?? null;
  }
}

const tx: TransactionInfo = { xid: 1, commitLsn: 100n, commitTime: 0n };

function table(identity: TableSchema['replicaIdentity'], primaryKey: string[]): TableSchema {
  const column = (name: string, isKey: boolean) => ({
    name,
    typeOid: 25,
    typeMod: -1,
    typeName: 'text',
    nullable: true,
    isKey,
  });
  return {
    relationId: 1,
    schema: 'public',
    name: 't',
    columns: [column('id', primaryKey.includes('id')), column('v', false), column('big', false)],
    primaryKey,
    replicaIdentity: identity,
  };
}

const keyed = table('default', ['id']);
const insert = (values: (string | null)[]): RowChangeEvent => ({
  op: 'insert',
  table: keyed,
  new: new Row(values),
  lsn: 1n,
  tx,
});
const update = (values: (string | null | undefined)[], oldKey?: string): RowChangeEvent => ({
  op: 'update',
  table: keyed,
  new: new Row(values),
  old: oldKey === undefined ? undefined : new Row([oldKey, null, null]),
  oldIsKey: oldKey !== undefined,
  lsn: 1n,
  tx,
});
const remove = (key: string): RowChangeEvent => ({
  op: 'delete',
  table: keyed,
  old: new Row([key, null, null]),
  oldIsKey: true,
  lsn: 1n,
  tx,
});

function collapse(events: RowChangeEvent[]): Map<string, KeyedEntry> {
  const collapser = new ChangeCollapser(rowIdentity(keyed));
  for (const event of events) collapser.add(event);
  return new Map([...collapser.keyedEntries].map((entry) => [entry.key.join(','), entry]));
}

const rowOf = (entry: KeyedEntry | undefined) =>
  entry?.row ? Array.from({ length: entry.row.length }, (_, i) => entry.row!.text(i)) : null;

describe('splitArrayText', () => {
  it('splits what array_out prints', () => {
    expect(splitArrayText('{1,2,NULL}').elements).toEqual(['1', '2', null]);
    expect(splitArrayText('{"a,b","c\\"d","NULL","",x}').elements).toEqual(['a,b', 'c"d', 'NULL', '', 'x']);
    expect(splitArrayText('{"\\\\"}').elements).toEqual(['\\']);
    expect(splitArrayText('{}').elements).toEqual([]);
    expect(splitArrayText('{{1,2},{3,4}}').elements).toEqual([
      ['1', '2'],
      ['3', '4'],
    ]);
    expect(splitArrayText('{(1,2);(3,4)}', ';').elements).toEqual(['(1,2)', '(3,4)']);
    expect(splitArrayText('[0:1]={a,b}')).toEqual({ elements: ['a', 'b'], lowerBounds: [0] });
    expect(() => splitArrayText('{1,2')).toThrow(/malformed/);
  });
});

describe('StageFile', () => {
  it('writes fields from bytes exactly as from text', () => {
    const dir = mkdtempSync(join(tmpdir(), 'stage-file-'));
    try {
      const stage = new StageFile(join(dir, 'stage.tsv'));
      stage.reset();
      const values = ['plain', 'tab\there', 'back\\slash', 'ü€😀', '', '\r\n'];
      for (const value of values) stage.bytesField(Buffer.from(value));
      stage.field(null);
      stage.endRow();
      // The same values from within one larger buffer.
      const joined = Buffer.from(`<${values.join('|')}>`);
      let at = 1;
      for (const value of values) {
        const end = at + Buffer.byteLength(value);
        stage.bytesField(joined, at, end);
        at = end + 1;
      }
      stage.field(null);
      stage.endRow();
      stage.flush();
      const line = `${[...values.map(escapeCopyText), '\\N'].join('\t')}\n`;
      expect(readFileSync(join(dir, 'stage.tsv'), 'utf8')).toBe(line + line);
      stage.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it('holds only the last batch, shorter or longer than the one before (the file is overwritten in place)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'stage-file-'));
    const path = join(dir, 'stage.tsv');
    try {
      const stage = new StageFile(path);
      const batch = (rows: number, text: string) => {
        stage.reset();
        for (let i = 0; i < rows; i++) {
          stage.plainField(`${i}`);
          stage.field(text);
          stage.endRow();
        }
        stage.flush();
        return readFileSync(path, 'utf8');
      };
      expect(batch(3, 'long value')).toBe('0\tlong value\n1\tlong value\n2\tlong value\n');
      expect(batch(1, 'x')).toBe('0\tx\n');
      // Larger than the 1 MiB write buffer, then small again.
      const big = 'y'.repeat(1000);
      expect(batch(2000, big).length).toBe(2000 * (big.length + 2) + 6890); // 6890 digits of 0…1999
      expect(batch(2, 'z')).toBe('0\tz\n1\tz\n');
      // Written on after a flush (its buffer went with it): the batch goes on, nothing is lost.
      stage.reset();
      stage.plainField('a');
      stage.endRow();
      stage.flush();
      stage.plainField('b');
      stage.endRow();
      stage.flush();
      expect(readFileSync(path, 'utf8')).toBe('a\nb\n');
      // Between copies the file's space goes back (a copy's loads are 64 MB).
      batch(2000, big);
      stage.discard();
      expect(statSync(path).size).toBe(0);
      expect(batch(1, 'x')).toBe('0\tx\n');
      stage.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('escapeCopyText', () => {
  it('escapes as COPY TO does, and the core reads it back', () => {
    for (const text of ['plain', 'tab\there', 'a\nb\r\nc', '\\N', 'back\\slash\\n', '\b\f\v', 'ü€😀', '']) {
      const escaped = Buffer.from(escapeCopyText(text));
      expect(escaped.includes(0x09) || escaped.includes(0x0a) || escaped.includes(0x0d)).toBe(false);
      expect(unescapeCopyText(escaped, 0, escaped.length)).toBe(text);
    }
  });
});

describe('ChangeCollapser', () => {
  it('keeps the last state of each key, deleting first only what may already exist', () => {
    const entries = collapse([
      insert(['1', 'a', 'x']),
      update(['1', 'b', 'x']),
      insert(['2', 'a', 'x']),
      remove('2'),
      remove('3'),
      insert(['3', 'again', 'x']),
      update(['4', 'c', 'y']),
    ]);
    expect(entries.get('1')).toMatchObject({ deleteExisting: false });
    expect(rowOf(entries.get('1'))).toEqual(['1', 'b', 'x']);
    expect(entries.get('2')).toMatchObject({ deleteExisting: false, row: null }); // never reaches DuckDB
    expect(entries.get('3')).toMatchObject({ deleteExisting: true });
    expect(rowOf(entries.get('3'))).toEqual(['3', 'again', 'x']);
    expect(entries.get('4')).toMatchObject({ deleteExisting: true, unchanged: null });
  });

  it('lists the inserts of a run that holds nothing else, and enters them by key at the first other change', () => {
    const collapser = new ChangeCollapser(rowIdentity(keyed));
    const entries = () => new Map([...collapser.keyedEntries].map((entry) => [entry.key.join(','), entry]));
    collapser.add(insert(['1', 'a', 'x']));
    collapser.add(insert(['2', 'b', 'x']));
    expect(collapser.inserts.map((row) => row.text(1))).toEqual(['a', 'b']);
    expect(entries().size).toBe(0);
    collapser.add(remove('1'));
    collapser.add(insert(['3', 'c', 'x']));
    expect(collapser.inserts).toEqual([]);
    expect(entries().get('1')).toMatchObject({ deleteExisting: false, row: null });
    expect(rowOf(entries().get('2'))).toEqual(['2', 'b', 'x']);
    expect(entries().get('3')).toMatchObject({ deleteExisting: false });
    expect(collapser.size).toBe(4);
    // Replayed over a resumed copy, an insert's key may exist: never just listed.
    const replayed = new ChangeCollapser(rowIdentity(keyed));
    replayed.add(insert(['1', 'a', 'x']), true);
    expect(replayed.inserts).toEqual([]);
    expect([...replayed.keyedEntries]).toMatchObject([{ deleteExisting: true }]);
  });

  it('resolves unchanged TOAST values from the run, or names the row in DuckDB that has them', () => {
    const entries = collapse([
      insert(['1', 'a', 'big1']),
      update(['1', 'b', undefined]), // from the insert above
      update(['5', 'c', undefined], '4'), // key 4 → 5: from DuckDB's row 4
      update(['6', 'd', undefined], '5'), // and on to 6: still from row 4
    ]);
    expect(rowOf(entries.get('1'))).toEqual(['1', 'b', 'big1']);
    expect(entries.get('1')?.unchanged).toBeNull();
    expect(entries.get('4')).toMatchObject({ deleteExisting: true, row: null });
    expect(entries.get('5')).toMatchObject({ row: null });
    const six = entries.get('6')!;
    expect(Array.from(six.unchanged!)).toEqual([0, 0, 1]);
    expect(six.origin).toEqual(['4']);
    expect(rowOf(six)).toEqual(['6', 'd', null]);
  });

  it("marks the keys whose first change read DuckDB's row (what may never go ahead of it)", () => {
    const entries = collapse([
      update(['1', 'a', undefined]), // in place: reads row 1
      remove('1'),
      update(['2', 'b', 'y']), // every value: row 2 is replaced unread
      update(['2', 'c', undefined]),
      update(['4', 'd', undefined], '3'), // 3 → 4: reads row 3
      update(['5', 'e', undefined], '4'), // 4 → 5: 4 was the run's own
      remove('6'),
      insert(['6', 'f', 'z']),
      update(['6', 'g', undefined]),
    ]);
    const reads = Object.fromEntries([...entries].map(([key, entry]) => [key, entry.readsExisting]));
    expect(reads).toEqual({ '1': true, '2': false, '3': true, '4': false, '5': false, '6': false });
    expect(entries.get('1')).toMatchObject({ deleteExisting: true, row: null });
  });

  it('counts whole rows under REPLICA IDENTITY FULL without a key', () => {
    const full = table('full', []);
    const collapser = new ChangeCollapser(rowIdentity(full));
    const row = (values: string[]) => new Row(values);
    collapser.add({ op: 'insert', table: full, new: row(['1', 'a', 'x']), lsn: 1n, tx });
    collapser.add({ op: 'insert', table: full, new: row(['1', 'a', 'x']), lsn: 1n, tx });
    collapser.add({ op: 'delete', table: full, old: row(['1', 'a', 'x']), oldIsKey: false, lsn: 1n, tx });
    collapser.add({
      op: 'update',
      table: full,
      new: new Row(['2', 'b', undefined]),
      old: row(['2', 'a', 'y']),
      oldIsKey: false,
      lsn: 1n,
      tx,
    });
    expect([...collapser.rowCounts].map(({ row, count }) => [row.join('|'), count])).toEqual([
      ['1|a|x', 1],
      ['2|a|y', -1],
      ['2|b|y', 1],
    ]);
  });
});

describe('type mapping', () => {
  const types = new TypeRegistry();
  const map = (typeOid: number, typeMod = -1) =>
    mapColumn({ name: 'c', typeOid, typeMod, typeName: '', nullable: true, isKey: false }, types);
  const numeric = (precision: number, scale: number) => ((precision << 16) | (scale & 0x7ff)) + 4;

  it('keeps numeric exact: DECIMAL when it fits, text otherwise', () => {
    expect(map(1700, numeric(12, 2)).duckType).toBe('DECIMAL(12,2)');
    expect(map(1700, numeric(38, 38)).duckType).toBe('DECIMAL(38,38)');
    expect(map(1700, numeric(39, 2)).duckType).toBe('VARCHAR');
    expect(map(1700, numeric(5, -2)).duckType).toBe('VARCHAR');
    expect(map(1700).duckType).toBe('VARCHAR');
  });

  it('maps arrays to lists of their element type, refusing what a LIST cannot hold', () => {
    const ints = map(1007);
    expect(ints.duckType).toBe('INTEGER[]');
    expect(ints.prepare!('{1,NULL,3}')).toBe('["1",null,"3"]');
    expect(() => ints.prepare!('{{1,2},{3,4}}')).toThrow(UnrepresentableValueError);
    expect(() => ints.prepare!('[0:1]={1,2}')).toThrow(/lower bounds/);
    const intervals = map(1187);
    expect(intervals.duckType).toBe('INTERVAL[]');
    expect(intervals.prepare!('{"1 day",NULL}')).toBe('["0 1 0",null]');
  });

  it('reads BC timestamps as their instant, whatever their UTC offset', async () => {
    const instance = await DuckDBInstance.create(':memory:');
    const connection = await instance.connect();
    try {
      await connection.run(`SET TimeZone = 'UTC'`);
      const read = async (typeOid: number, text: string) => {
        const sql = `SELECT CAST(${map(typeOid).fromText('v')} AS VARCHAR) AS t FROM (SELECT '${text}' AS v)`;
        return (await connection.runAndReadAll(sql)).getRowObjectsJS()[0]?.['t'];
      };
      // Postgres sends +00 (the session is UTC); other offsets are read as written.
      expect(await read(1184, '4713-11-24 00:00:00+00 BC')).toBe('4713-11-24 (BC) 00:00:00+00');
      expect(await read(1184, '0044-03-15 10:00:00.123456+05:30 BC')).toBe(
        '0044-03-15 (BC) 04:30:00.123456+00',
      );
      expect(await read(1184, '0044-03-15 01:00:00-03:00:07 BC')).toBe('0044-03-15 (BC) 04:00:07+00');
      expect(await read(1184, '0001-01-01 00:00:00+14 BC')).toBe('0002-12-31 (BC) 10:00:00+00');
      // 1 BC and 5 BC are leap years (AD 1 and 5 are not).
      expect(await read(1184, '0005-02-29 23:30:00-01 BC')).toBe('0005-03-01 (BC) 00:30:00+00');
      expect(await read(1184, '2024-02-29 23:59:59.999+00')).toBe('2024-02-29 23:59:59.999+00');
      expect(await read(1114, '0001-02-29 23:59:59.999999 BC')).toBe('0001-02-29 (BC) 23:59:59.999999');
      expect(await read(1114, '4713-01-01 00:00:00 BC')).toBe('4713-01-01 (BC) 00:00:00');
    } finally {
      connection.closeSync();
      instance.closeSync();
    }
  });

  it('stages intervals as months, days and microseconds', () => {
    const interval = map(1186);
    expect(interval.prepare!('1 year 2 mons -3 days +04:05:06.000007')).toBe('14 -3 14706000007');
    expect(() => interval.prepare!('infinity')).toThrow(/infinity/);
  });
});

describe('rowGroupSizeFor', () => {
  it('halves 65,536 rows while a group would hold more than 12 MiB, down to one vector', () => {
    expect(rowGroupSizeFor(170)).toBe(65_536);
    expect(rowGroupSizeFor(192)).toBe(65_536);
    expect(rowGroupSizeFor(193)).toBe(32_768);
    expect(rowGroupSizeFor(768)).toBe(16_384);
    expect(rowGroupSizeFor(769)).toBe(8192);
    expect(rowGroupSizeFor(2070)).toBe(4096);
    expect(rowGroupSizeFor(5000)).toBe(2048);
    expect(rowGroupSizeFor(1e6)).toBe(2048);
  });
});

describe('smallerSize', () => {
  it('compares DuckDB sizes across units, keeping the first when either is not a plain size', () => {
    expect(smallerSize('64MB', '256MB')).toBe('64MB');
    expect(smallerSize('64MB', '32MB')).toBe('32MB');
    expect(smallerSize('64MB', '1GB')).toBe('64MB');
    expect(smallerSize('64MB', '61MiB')).toBe('61MiB'); // 63.96 MB
    expect(smallerSize('64MB', '62 MiB')).toBe('64MB'); // 65.01 MB
    expect(smallerSize('64MB', '0.05GB')).toBe('0.05GB');
    expect(smallerSize('64MB', '80%')).toBe('64MB');
    expect(smallerSize('64MB', '1000000')).toBe('1000000'); // bytes
  });
});

describe('chunks applied ahead', () => {
  it('holds 256 KiB of version data per 16 vectors of a row group', () => {
    expect(versionBytes(2048)).toBe(256 * 1024);
    expect(versionBytes(32_768)).toBe(256 * 1024);
    expect(versionBytes(65_536)).toBe(512 * 1024);
    expect(versionBytes(122_880)).toBe(1024 * 1024);
  });

  it('holds undo data per vector and column an in-place update touches', () => {
    expect(updateBytes(1, 7)).toBe(7 * 128 * 1024);
    expect(updateBytes(2048, 2)).toBe(2 * 128 * 1024);
    expect(updateBytes(65_536, 1)).toBe(32 * 128 * 1024);
  });

  it('cuts a table into ranges of whole row groups within the budget, the last one open-ended', () => {
    const mib = 1024 * 1024;
    // 10M rows in groups of 65,536 (512 KiB each): 64 groups per 32 MiB.
    expect(chunkRanges(10_000_000, 65_536, versionBytes(65_536), 32 * mib)).toEqual([
      [0, 4_194_304],
      [4_194_304, 8_388_608],
      [8_388_608, null],
    ]);
    // A table that fits the budget whole needs no chunks.
    expect(chunkRanges(4_194_304, 65_536, versionBytes(65_536), 32 * mib)).toBeNull();
    expect(chunkRanges(0, 65_536, versionBytes(65_536), 32 * mib)).toBeNull();
    // A row group larger than the budget is a range of its own.
    expect(chunkRanges(300_000, 122_880, versionBytes(122_880), 512 * 1024)).toEqual([
      [0, 122_880],
      [122_880, 245_760],
      [245_760, null],
    ]);
    // Deletes and updates of 7 columns in groups of 2,048 rows: 1,152 KiB per group, 28 per 32 MiB.
    expect(chunkRanges(100_000, 2048, versionBytes(2048) + updateBytes(2048, 7), 32 * mib)).toEqual([
      [0, 57_344],
      [57_344, null],
    ]);
  });
});
