#!/usr/bin/env node
// Thin launcher: the CLI is compiled to dist/ by `npm run build` (run by `prepare` on install).
import { setFlagsFromString } from 'node:v8';

/** Whether the V8 flag `name` was given to node by hand (either spelling): then it wins. */
const givenByHand = (name) =>
  process.execArgv.some((flag) => flag.replace(/_/g, '-').startsWith(`--${name}`));

// V8 lets its old generation grow to up to 4× what survived the last full collection before it
// collects again. Decoded changes live for a batch — long enough to be promoted — and then die, so
// most of that growth is garbage. Capping it at 2×: CDC of 1M rows into DuckDB peaked at 257–277 MB
// instead of 316–322 MB, in 9.19 s instead of 9.05 s (medians of 4, interleaved; 25% saved ~10 MB
// more but cost 5%). It only steers when V8 collects.
if (!givenByHand('heap-growing-percent')) setFlagsFromString('--heap-growing-percent=100');

// V8's young generation grows from 2 × 1 MB to 2 × 16 MB semi-spaces while much of what it holds
// survives a scavenge — and decoded changes and copied rows do, for a batch. Kept at its first
// size: CDC of 1M rows into null peaked at 83–86 MB instead of 114–117, copies into null at 73–84
// instead of 84–113 MB and into DuckDB at 200–214 instead of 217–258 MB, as fast or faster (same
// runs of `npm run bench`); a 7M-change stream of huge transactions into null at 93 instead of
// 124–137 MB. `--max-semi-space-size` would say so directly, but V8 reads it only as it starts;
// the growth factor is read each time the young generation would grow.
if (!givenByHand('semi-space-growth-factor') && !givenByHand('max-semi-space-size')) {
  setFlagsFromString('--semi-space-growth-factor=1');
}

// `pg`, as it loads, asks whether it runs in Cloudflare Workers: by `navigator.userAgent` where
// there is a `navigator` (Node ≥ 21 has one, `Node.js/<major>`), else by building a `Response`,
// which on Node 20 loads undici — ~45 ms of the ~70 ms `pg` took to load, for every command.
// Node 20 gets the `navigator` Node 21 has, before anything is loaded. Only in the CLI's own
// process: the library leaves the globals of a program that imports it alone.
if (globalThis.navigator === undefined) {
  const userAgent = `Node.js/${process.versions.node.split('.')[0]}`;
  Object.defineProperty(globalThis, 'navigator', { value: { userAgent }, configurable: true });
}

const { main } = await import('../dist/cli/main.js');
await main();
