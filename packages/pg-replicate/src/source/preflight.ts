/**
 * Checks, before any work, everything about the server that would otherwise fail later (or worse,
 * silently): server version, wal_level, privileges, the publication and its tables, replica
 * identities, and the replication slot. Each failure is one {@link PgReplicateError} that says what
 * is wrong and the exact statement that fixes it.
 */
import type pg from 'pg';
import { quoteIdent, quoteLiteral, WAL_SENDERS_HINT } from '../connection/connect.js';
import { PgReplicateError } from '../errors.js';
import { tableKey } from '../schema.js';
import {
  allPublicationNames,
  inactiveSlotNames,
  type PublishedTable,
  publications,
  publishedTables,
  replicationSlot,
  type ServerInfo,
  type SlotInfo,
  serverInfo,
} from './catalog.js';

/** Oldest server we support (pgoutput protocol 2, streaming, messages, binary). */
export const MIN_SERVER_VERSION = 140000;

/** `copy`: backfill only; `cdc`: stream from a slot; `both`: backfill consistently, then stream. */
export type ReplicationMode = 'copy' | 'cdc' | 'both';

/** What to check: the mode decides which checks apply (copy needs no slot nor logical WAL). */
export interface PreflightOptions {
  mode: ReplicationMode;
  publications: readonly string[];
  /** Required for `cdc` and `both`. */
  slot?: string | undefined;
  /**
   * Fail when a table's updates/deletes cannot be applied because rows have no identity (no
   * primary key and REPLICA IDENTITY DEFAULT, or NOTHING). Default true.
   */
  requireReplicaIdentity?: boolean;
}

/** What the checks found, kept so that the pipeline does not ask the catalog again. */
export interface PreflightResult {
  server: ServerInfo;
  tables: PublishedTable[];
  /** The slot as it exists now, or null when it will be created. */
  slot: SlotInfo | null;
}

/**
 * Runs every check for `mode`, cheapest first, and returns what it learnt. Throws the first
 * failure as a {@link PgReplicateError} whose message says what is wrong and whose hint is the fix.
 */
export async function preflight(client: pg.Client, options: PreflightOptions): Promise<PreflightResult> {
  const server = await serverInfo(client);
  const streaming = options.mode !== 'copy';

  checkServer(server, options.mode);

  const found = await publications(client, options.publications);
  const missing = options.publications.filter((name) => !found.some((p) => p.name === name));
  if (missing.length > 0) {
    const existing = await allPublicationNames(client);
    throw new PgReplicateError(
      'PUBLICATION_NOT_FOUND',
      `publication ${missing.map((m) => `"${m}"`).join(', ')} does not exist in database "${server.database}"`,
      {
        detail:
          existing.length > 0 ? `existing publications: ${existing.join(', ')}` : 'there are no publications',
        hint: `create it with CREATE PUBLICATION ${quoteIdent(missing[0]!)} FOR TABLE <tables>; (or FOR ALL TABLES)`,
      },
    );
  }

  const tables = await publishedTables(client, options.publications, server.versionNum);
  if (tables.length === 0) {
    throw new PgReplicateError(
      'PUBLICATION_EMPTY',
      `publication ${options.publications.map((name) => `"${name}"`).join(', ')} has no tables`,
      {
        hint: found.every((p) => p.allTables)
          ? 'it is FOR ALL TABLES and the database has no tables yet: create them first'
          : `add tables with ALTER PUBLICATION ${quoteIdent(options.publications[0]!)} ADD TABLE <table>;`,
      },
    );
  }

  const unreadable = tables.filter((table) => !table.selectable);
  if (unreadable.length > 0 && options.mode !== 'cdc') {
    const names = unreadable.map(tableKey).join(', ');
    throw new PgReplicateError(
      'MISSING_SELECT_PRIVILEGE',
      `role "${server.currentUser}" cannot read ${names}`,
      {
        hint: `run GRANT SELECT ON ${names} TO ${quoteIdent(server.currentUser)};`,
      },
    );
  }

  if (streaming && options.requireReplicaIdentity !== false) {
    const changesRows = found.some((p) => p.publishesUpdate || p.publishesDelete);
    const unidentified = tables.filter((table) => !hasRowIdentity(table));
    if (changesRows && unidentified.length > 0) {
      const first = unidentified[0]!;
      const table = tableKey(first);
      const others = unidentified.slice(1).map(tableKey);
      throw new PgReplicateError(
        'NO_REPLICA_IDENTITY',
        `table ${table} ${IDENTITY_PROBLEM[first.replicaIdentity]}, so its updates and deletes cannot be applied`,
        {
          detail: others.length > 0 ? `the same holds for ${others.join(', ')}` : undefined,
          hint:
            first.replicaIdentity === 'nothing' && first.primaryKey.length > 0
              ? `run ALTER TABLE ${table} REPLICA IDENTITY DEFAULT; (it has a primary key)`
              : `add a primary key (ALTER TABLE ${table} ADD PRIMARY KEY (…);) or run ALTER TABLE ${table} REPLICA IDENTITY FULL;`,
        },
      );
    }
  }

  let slot: SlotInfo | null = null;
  if (streaming) {
    if (options.slot === undefined) {
      throw new PgReplicateError('INVALID_ARGUMENT', `mode ${options.mode} needs a replication slot name`, {
        hint: `name one: pg-replicate ${options.mode} <publication> <slot>`,
      });
    }
    slot = await replicationSlot(client, options.slot, server.versionNum);
    await checkSlot(client, slot, options.slot, server);
    if (server.activeWalSenders >= server.maxWalSenders) {
      throw new PgReplicateError(
        'WAL_SENDERS_EXHAUSTED',
        `every WAL sender is in use (max_wal_senders = ${server.maxWalSenders})`,
        { hint: WAL_SENDERS_HINT },
      );
    }
  }
  return { server, tables, slot };
}

/**
 * The checks that need nothing but {@link ServerInfo}: the server version, and for streaming
 * modes `wal_level` and the REPLICATION attribute.
 */
export function checkServer(server: ServerInfo, mode: ReplicationMode): void {
  const streaming = mode !== 'copy';
  if (server.versionNum < MIN_SERVER_VERSION) {
    throw new PgReplicateError(
      'UNSUPPORTED_SERVER_VERSION',
      `Postgres ${formatVersion(server.versionNum)} is not supported`,
      { hint: 'upgrade the server to Postgres 14 or newer (pg-replicate is tested on 14–18)' },
    );
  }
  if (streaming && server.walLevel !== 'logical') {
    throw new PgReplicateError('WAL_LEVEL_NOT_LOGICAL', `wal_level is "${server.walLevel}", not "logical"`, {
      hint: "run ALTER SYSTEM SET wal_level = 'logical'; then restart Postgres",
    });
  }
  if (streaming && !server.canReplicate) {
    throw new PgReplicateError(
      'MISSING_REPLICATION_PRIVILEGE',
      `role "${server.currentUser}" lacks the REPLICATION attribute`,
      {
        hint: `run ALTER ROLE ${quoteIdent(server.currentUser)} WITH REPLICATION; as a superuser (on Amazon RDS: GRANT rds_replication TO ${quoteIdent(server.currentUser)};)`,
      },
    );
  }
}

async function checkSlot(
  client: pg.Client,
  slot: SlotInfo | null,
  name: string,
  server: ServerInfo,
): Promise<void> {
  if (slot === null) {
    if (server.usedReplicationSlots >= server.maxReplicationSlots) {
      const idle = await inactiveSlotNames(client);
      throw new PgReplicateError(
        'SLOTS_EXHAUSTED',
        `cannot create slot "${name}": all ${server.maxReplicationSlots} replication slots (max_replication_slots) are in use`,
        {
          detail: idle.length > 0 ? `inactive slots: ${idle.join(', ')}` : 'every slot is active',
          hint: `drop a slot nothing uses (SELECT pg_drop_replication_slot(${quoteLiteral(idle[0] ?? 'name')});) or raise max_replication_slots (needs a restart)`,
        },
      );
    }
    return;
  }
  if (slot.slotType !== 'logical' || slot.plugin !== 'pgoutput') {
    throw new PgReplicateError(
      'SLOT_WRONG_PLUGIN',
      slot.slotType === 'logical'
        ? `slot "${name}" exists but uses plugin ${slot.plugin}, not pgoutput`
        : `slot "${name}" exists but is a ${slot.slotType} slot, not a logical pgoutput slot`,
      {
        hint: `use another slot name, or drop it with SELECT pg_drop_replication_slot(${quoteLiteral(name)}); if nothing uses it`,
      },
    );
  }
  if (slot.database !== server.database) {
    throw new PgReplicateError(
      'SLOT_WRONG_DATABASE',
      `slot "${name}" belongs to database "${slot.database}", not "${server.database}"`,
      {
        hint: `connect to database "${slot.database}" (--db-name ${slot.database}), or use another slot name`,
      },
    );
  }
  if (slot.walStatus === 'lost' || slot.invalidationReason !== null) {
    const reason = slot.invalidationReason ?? 'wal_removed';
    throw new PgReplicateError(
      'SLOT_INVALIDATED',
      `slot "${name}" was invalidated and can no longer stream`,
      {
        detail: `${reason}: ${INVALIDATION_CAUSE[reason] ?? 'see pg_replication_slots.invalidation_reason'}`,
        hint: `drop it with SELECT pg_drop_replication_slot(${quoteLiteral(name)}); then run "both" to copy the tables again`,
      },
    );
  }
  if (slot.active) {
    throw new PgReplicateError(
      'SLOT_IN_USE',
      `slot "${name}" is in use by another process${slot.activePid ? ` (PID ${slot.activePid})` : ''}`,
      {
        hint: `stop the other consumer, or if it is stuck: SELECT pg_terminate_backend(${slot.activePid ?? 'active_pid'});`,
      },
    );
  }
}

/** What each `pg_replication_slots.invalidation_reason` (PG 17+) means, and what prevents it. */
const INVALIDATION_CAUSE: Partial<Record<string, string>> = {
  wal_removed:
    'it fell more than max_slot_wal_keep_size behind and the WAL it needed was removed; raise that setting if the consumer can be down that long',
  rows_removed: 'rows it needed were vacuumed away (on a standby: turn on hot_standby_feedback)',
  wal_level_insufficient: 'wal_level was lowered below logical',
  idle_timeout: 'it was idle longer than idle_replication_slot_timeout',
};

/** Why a table's rows cannot be identified, by its replica identity setting. */
const IDENTITY_PROBLEM: Record<PublishedTable['replicaIdentity'], string> = {
  default: 'has no primary key (and REPLICA IDENTITY DEFAULT)',
  nothing: 'has REPLICA IDENTITY NOTHING',
  index: 'has REPLICA IDENTITY USING INDEX, but that index was dropped',
  full: 'has REPLICA IDENTITY FULL',
};

/**
 * Whether pgoutput sends a key with the table's updates and deletes. Without one Postgres refuses
 * those statements on the source once the table is published, and they could not be applied here.
 */
function hasRowIdentity(table: PublishedTable): boolean {
  switch (table.replicaIdentity) {
    case 'full':
      return true;
    case 'default':
      return table.primaryKey.length > 0;
    case 'index':
      // The identity index may have been dropped since: then nothing identifies the rows.
      return table.columns.some((column) => column.isKey);
    case 'nothing':
      return false;
  }
}

/** `server_version_num` as people write it: 170002 → 17.2, 90624 → 9.6.24. */
export function formatVersion(versionNum: number): string {
  const major = Math.floor(versionNum / 10000);
  if (versionNum >= 100000) return `${major}.${versionNum % 10000}`;
  return `${major}.${Math.floor(versionNum / 100) % 100}.${versionNum % 100}`;
}
