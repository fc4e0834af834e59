/** The retry schedule shared by the CLI and the replicator's supervisor. */

/** Exponential backoff: `initialDelayMs`, times `multiplier` per retry, at most `maxDelayMs`. */
export interface BackoffPolicy {
  readonly initialDelayMs: number;
  readonly multiplier: number;
  readonly maxDelayMs: number;
}

/**
 * The wait before retry number `attempt` (1 for the first retry): exponential, capped, with "equal
 * jitter" — between half and all of the exponential value, so restarts of many replicators after
 * one database restart spread out instead of arriving together.
 */
export function backoffDelay(
  attempt: number,
  policy: BackoffPolicy,
  random: () => number = Math.random,
): number {
  const exponential = policy.initialDelayMs * policy.multiplier ** Math.max(0, attempt - 1);
  const capped = Math.min(policy.maxDelayMs, exponential);
  return Math.round(capped / 2 + random() * (capped / 2));
}
