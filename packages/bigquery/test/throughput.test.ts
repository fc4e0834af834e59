/**
 * Throughput into the fake, printed (run with BQ_THROUGHPUT=1; BQ_THROUGHPUT_ROWS sets the size):
 *
 * - backfill: Postgres COPY → pipeline → sink → Storage Write API client → fake;
 * - streaming: the same rows inserted, then updated, in large transactions, through pgoutput;
 * - sink alone: change batches built in memory handed to the sink, so Postgres and the decoder
 *   are out of the figure (what the encoder, the managed writer and the fake sustain).
 *
 * Bytes are the serialized rows the fake received (protobuf, CDC pseudo-columns included).
 */
import { describe, expect, it } from 'vitest';
import type { ChangeEvent } from '../../pg-replicate/src/events.js';
import type { RowData } from '../../pg-replicate/src/row.js';
import type { TableSchema } from '../../pg-replicate/src/schema.js';
import { TypeRegistry } from '../../pg-replicate/src/types/type-registry.js';
import { BigQuerySink } from '../src/index.js';
import { PROJECT, replicate, setupSuite, sinkOptions } from './harness.js';

const enabled = process.env.BQ_THROUGHPUT !== undefined;
const ROWS = Number(process.env.BQ_THROUGHPUT_ROWS ?? 200_000);
const suite = setupSuite('bq_throughput');

/** Runs `step`, then prints rows/s and bytes/s of what the fake received meanwhile. */
async function measure(what: string, rows: number, step: () => Promise<unknown>): Promise<void> {
  const stats = suite.fake.write.stats;
  const [bytes, busy, started] = [stats.bytes, stats.busyMs, performance.now()];
  await step();
  const ms = performance.now() - started;
  const seconds = ms / 1000;
  const sent = stats.bytes - bytes;
  const rate = Math.round(rows / seconds).toLocaleString('en');
  process.stderr.write(
    `${what.padEnd(34)} ${rows.toLocaleString('en').padStart(9)} rows in ${seconds.toFixed(2).padStart(6)} s: ` +
      `${rate.padStart(8)} rows/s, ${(sent / seconds / 1e6).toFixed(1).padStart(5)} MB/s ` +
      `(${(sent / rows).toFixed(0)} B/row; the fake itself busy ${Math.round((100 * (stats.busyMs - busy)) / ms)}% of it)\n`,
  );
}

describe.skipIf(!enabled)('throughput into the fake', () => {
  it('backfill and streaming, end to end', async () => {
    const { db, fake } = suite;
    await db.sql(`
      CREATE TABLE events (id bigint PRIMARY KEY, account int, kind text, amount numeric(12,2), at timestamptz, payload jsonb);
      INSERT INTO events SELECT g, g % 1000, 'kind-' || (g % 7), g / 100.0, '2024-01-01'::timestamptz + g * interval '1 second',
        jsonb_build_object('n', g, 'tag', md5(g::text)) FROM generate_series(1, ${ROWS}) g;
      CREATE PUBLICATION pub_events FOR TABLE events;`);
    const options = sinkOptions(fake, 'throughput');
    await measure('backfill (end to end)', ROWS, () =>
      replicate(db, { publication: 'pub_events', slot: 'slot_events', sink: options }),
    );
    expect(fake.rows(PROJECT, 'throughput', 'public_events')).toHaveLength(ROWS);

    await db.sql(`
      INSERT INTO events SELECT g, g % 1000, 'new', g / 100.0, now(), '{"n": 1}' FROM generate_series(${ROWS + 1}, ${2 * ROWS}) g;
      UPDATE events SET amount = amount + 1 WHERE id <= ${ROWS};`);
    await measure('streaming (end to end)', 2 * ROWS, () =>
      replicate(db, { publication: 'pub_events', slot: 'slot_events', sink: options }),
    );
    expect(fake.rows(PROJECT, 'throughput', 'public_events')).toHaveLength(2 * ROWS);
  });

  it('the sink alone', async () => {
    const { fake } = suite;
    const table: TableSchema = {
      relationId: 1,
      schema: 'public',
      name: 'mem',
      columns: [
        { name: 'id', typeOid: 20, typeMod: -1, typeName: 'bigint', nullable: false, isKey: true },
        { name: 'account', typeOid: 23, typeMod: -1, typeName: 'integer', nullable: true, isKey: false },
        { name: 'kind', typeOid: 25, typeMod: -1, typeName: 'text', nullable: true, isKey: false },
        {
          name: 'amount',
          typeOid: 1700,
          typeMod: ((12 << 16) | 2) + 4,
          typeName: 'numeric(12,2)',
          nullable: true,
          isKey: false,
        },
        { name: 'at', typeOid: 1184, typeMod: -1, typeName: 'timestamptz', nullable: true, isKey: false },
        { name: 'payload', typeOid: 3802, typeMod: -1, typeName: 'jsonb', nullable: true, isKey: false },
      ],
      primaryKey: ['id'],
      replicaIdentity: 'default',
    };
    const sink = new BigQuerySink(sinkOptions(fake, 'throughput_sink'));
    await sink.open({ types: new TypeRegistry(), pipelineId: 'mem', mode: 'both' });
    await sink.prepare([table]);
    const row = (i: number): RowData => {
      const texts = [
        String(i),
        String(i % 1000),
        `kind-${i % 7}`,
        `${Math.floor(i / 100)}.${String(i % 100).padStart(2, '0')}`,
        '2024-01-01 00:00:00+00',
        `{"n": ${i}, "tag": "${i.toString(16).padStart(32, '0')}"}`,
      ];
      return {
        length: texts.length,
        isNull: () => false,
        isUnchangedToast: () => false,
        text: (index) => texts[index]!,
      };
    };
    const batchRows = 10_000;
    await measure('sink alone (changes, 10k/batch)', ROWS, async () => {
      for (let start = 0; start < ROWS; start += batchRows) {
        const commitLsn = BigInt(start + batchRows);
        const tx = { xid: start, commitLsn, commitTime: 0n };
        const events: ChangeEvent[] = [];
        for (let i = start; i < Math.min(ROWS, start + batchRows); i++)
          events.push({ op: 'insert', table, new: row(i), lsn: commitLsn, tx });
        await sink.writeChanges({ events, commit: { lsn: commitLsn } });
      }
    });
    await sink.close();
    expect(fake.rows(PROJECT, 'throughput_sink', 'public_mem')).toHaveLength(ROWS);
  });
});
