/**
 * Why some deletes run ahead of their transaction, in chunks of row groups.
 *
 * A `DELETE` makes DuckDB 1.5 hold version data for every row group it touches — a 256 KiB block
 * per 16 vectors of 2,048 rows — until a checkpoint, and no checkpoint can run while the
 * transaction is open (upstream duckdb/duckdb#19392). 11,000 scattered deletes over 30M rows touch
 * all 458 row groups: ~190 MB held by one transaction, more than the sink's memory limit leaves. So
 * the rows a transaction's changes delete or replace go first, in `rowid` ranges of a few row
 * groups, each committed and checkpointed (which releases its version data): in DuckDB alone that
 * delete over 30M rows peaked at 178 MB instead of 339 in 8 chunks, in 2.2× the time.
 *
 * The file is then between two transactions for a moment, but nothing is lost: the position it
 * records still comes before the transaction, so after a crash Postgres sends it again, and every
 * row deleted ahead is one that transaction deletes or replaces by key (see
 * `ChangeApplier.deleteAhead` for which tables qualify).
 */
/** DuckDB's block of version data: 16 vectors of 2,048 rows. */
const VERSION_BLOCK_BYTES = 256 * 1024;
const ROWS_PER_VERSION_BLOCK = 16 * 2048;

/** At most what deletes in a row group of `rows` rows make DuckDB hold until a checkpoint. */
export function versionBytes(rows: number): number {
  return Math.ceil(rows / ROWS_PER_VERSION_BLOCK) * VERSION_BLOCK_BYTES;
}

/**
 * `rowid` ranges `[from, to)` of whole row groups of `groupRows` rows, each holding at most `budget`
 * bytes of version data (one group when a group holds more); the last is open-ended (`to` null),
 * so rows added since `rows` was counted are covered too. Null when the whole table fits the
 * budget: an ordinary delete holds no more than that.
 */
export function chunkRanges(
  rows: number,
  groupRows: number,
  budget: number,
): Array<[number, number | null]> | null {
  const perGroup = versionBytes(groupRows);
  if (Math.ceil(rows / groupRows) * perGroup <= budget) return null;
  const span = Math.max(1, Math.floor(budget / perGroup)) * groupRows;
  const ranges: Array<[number, number | null]> = [];
  for (let from = 0; from < rows; from += span) ranges.push([from, from + span < rows ? from + span : null]);
  return ranges;
}
