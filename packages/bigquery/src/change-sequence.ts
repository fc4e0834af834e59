/**
 * `_CHANGE_SEQUENCE_NUMBER` values: BigQuery keeps, per primary key, the change with the largest
 * one, comparing up to four `/`-separated hexadecimal sections (16 digits at most) as unsigned
 * numbers, section by section. We write two sections, the transaction's commit LSN then the
 * change's position in its transaction, so a later change always compares greater and a replayed
 * change compares equal (BigQuery then keeps one of two identical rows).
 */
import type { Lsn } from 'pg-replicate';

/** The sequence number of the change at `position` (1-based) of the transaction committed at `commitLsn`. */
export function encodeChangeSequence(commitLsn: Lsn, position: number): string {
  return `${hex16(commitLsn)}/${position.toString(16).toUpperCase()}`;
}

function hex16(value: bigint): string {
  return value.toString(16).toUpperCase().padStart(16, '0');
}
