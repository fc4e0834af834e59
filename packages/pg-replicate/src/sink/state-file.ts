/**
 * Resumption state in a small JSON file, for sinks that have no transactional store of their own
 * (stdout, message streams). Written atomically (temp file + rename) after the data it describes,
 * so a crash can repeat the tail (at-least-once) but never skip it.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { PgReplicateError } from '../errors.js';
import { formatLsn, type Lsn, parseLsn } from '../lsn.js';
import type { SinkState } from './sink.js';

interface StateFileContent {
  version: 1;
  lastLsn: string | null;
  copiedTables: Record<string, string | null>;
}

export class StateFile {
  readonly path: string;
  #copied = new Map<string, Lsn | null>();
  #lastLsn: Lsn | null = null;

  constructor(path: string) {
    this.path = path;
  }

  load(): SinkState {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return this.state();
      throw new PgReplicateError('SINK_UNAVAILABLE', `cannot read state file ${this.path}`, {
        detail: (error as Error).message,
        cause: error,
      });
    }
    try {
      const content = JSON.parse(text) as StateFileContent;
      this.#lastLsn = content.lastLsn === null ? null : parseLsn(content.lastLsn);
      this.#copied = new Map(
        Object.entries(content.copiedTables).map(([key, lsn]) => [key, lsn === null ? null : parseLsn(lsn)]),
      );
    } catch (error) {
      throw new PgReplicateError('SINK_STATE_INVALID', `state file ${this.path} is corrupt`, {
        detail: (error as Error).message,
        hint: 'restore it, or delete it to start over (tables are then copied again)',
        cause: error,
      });
    }
    return this.state();
  }

  state(): SinkState {
    return { copiedTables: new Map(this.#copied), lastLsn: this.#lastLsn };
  }

  setCopied(key: string, lsn: Lsn | null | undefined): void {
    if (lsn === undefined) this.#copied.delete(key);
    else this.#copied.set(key, lsn);
    this.save();
  }

  setLastLsn(lsn: Lsn): void {
    this.#lastLsn = lsn;
    this.save();
  }

  save(): void {
    const content: StateFileContent = {
      version: 1,
      lastLsn: this.#lastLsn === null ? null : formatLsn(this.#lastLsn),
      copiedTables: Object.fromEntries(
        [...this.#copied].map(([key, lsn]) => [key, lsn === null ? null : formatLsn(lsn)]),
      ),
    };
    mkdirSync(dirname(this.path), { recursive: true });
    const temporary = `${this.path}.tmp`;
    writeFileSync(temporary, `${JSON.stringify(content, null, 2)}\n`);
    renameSync(temporary, this.path);
  }
}
