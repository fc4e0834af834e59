/** The benchmark's Postgres: room for the backlog's WAL, no checkpoint or sender timeout mid-run. */
export const SERVER_SETTINGS = {
  shared_buffers: '1GB',
  max_wal_size: '16GB',
  checkpoint_timeout: '1h',
  wal_sender_timeout: '0',
};

/** The benchmark's table: its columns, and the rows `from`–`to` of it as a SELECT (~170 bytes each). */
export const COLUMNS = `id bigint PRIMARY KEY, n int, t text, ts timestamptz, amount numeric(12,2), doc jsonb, flag bool, u uuid`;

export const ROW_EXPR = (from: number, to: number) => `
  SELECT g, g % 1000, 'row number ' || g || ' of the benchmark', '2024-01-01'::timestamptz + g * interval '1.5 second',
         (g % 100000) / 100.0, jsonb_build_object('id', g, 'tags', jsonb_build_array('a', 'b'), 'ok', g % 2 = 0),
         g % 3 = 0, md5(g::text)::uuid
    FROM generate_series(${from}, ${to}) g`;
