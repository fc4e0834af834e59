/**
 * Catalog queries: the server's settings, the tables a publication publishes (with the columns,
 * key and row filter Postgres will actually send), and replication slots. Every query runs on an
 * ordinary connection whose result columns arrive as raw text (see `connection/connect.ts`).
 */
import type pg from 'pg';
import { type Lsn, parseLsn } from '../lsn.js';
import type { ReplicaIdentity } from '../pgoutput/messages.js';
import type { ColumnSchema, TableSchema } from '../schema.js';

type Row = Record<string, string | null>;

async function rows(client: pg.Client, sql: string, values?: unknown[]): Promise<Row[]> {
  return (await client.query<Row>(sql, values)).rows;
}

/** What preflight needs to know about the server and the connected role. */
export interface ServerInfo {
  /** `server_version_num`, e.g. 170002. */
  versionNum: number;
  walLevel: string;
  maxReplicationSlots: number;
  maxWalSenders: number;
  usedReplicationSlots: number;
  activeWalSenders: number;
  currentUser: string;
  isSuperuser: boolean;
  /** Superuser, the REPLICATION attribute, or (Amazon RDS) membership in `rds_replication`. */
  canReplicate: boolean;
  database: string;
}

/** Settings, capacities and the current role; safe to run on any server version (even unsupported). */
export async function serverInfo(client: pg.Client): Promise<ServerInfo> {
  const [version] = await rows(client, `SELECT current_setting('server_version_num') AS version`);
  // pg_stat_activity.backend_type exists from PG 10: older servers must still reach the version check.
  const senders =
    Number(version!['version']) >= 100000
      ? `(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender')`
      : '0';
  const [row] = await rows(
    client,
    `SELECT current_setting('server_version_num') AS version,
            current_setting('wal_level') AS wal_level,
            current_setting('max_replication_slots') AS max_slots,
            current_setting('max_wal_senders') AS max_senders,
            (SELECT count(*) FROM pg_replication_slots) AS used_slots,
            ${senders} AS senders,
            current_user AS "user", r.rolsuper AS superuser, r.rolreplication AS replication,
            -- Amazon RDS grants logical replication through membership, not the attribute.
            CASE WHEN EXISTS (SELECT FROM pg_roles WHERE rolname = 'rds_replication')
                 THEN pg_has_role('rds_replication', 'MEMBER') ELSE false END AS rds_replication,
            current_database() AS database
       FROM pg_roles r WHERE r.rolname = current_user`,
  );
  const r = row!;
  return {
    versionNum: Number(r['version']),
    walLevel: String(r['wal_level']),
    maxReplicationSlots: Number(r['max_slots']),
    maxWalSenders: Number(r['max_senders']),
    usedReplicationSlots: Number(r['used_slots']),
    activeWalSenders: Number(r['senders']),
    currentUser: String(r['user']),
    isSuperuser: r['superuser'] === 't',
    canReplicate: r['superuser'] === 't' || r['replication'] === 't' || r['rds_replication'] === 't',
    database: String(r['database']),
  };
}

/** A row of `pg_publication`: what it publishes. */
export interface PublicationInfo {
  name: string;
  allTables: boolean;
  publishesInsert: boolean;
  publishesUpdate: boolean;
  publishesDelete: boolean;
  publishesTruncate: boolean;
}

/** The publications among `names` that exist in the connected database. */
export async function publications(client: pg.Client, names: readonly string[]): Promise<PublicationInfo[]> {
  const found = await rows(
    client,
    `SELECT pubname, puballtables, pubinsert, pubupdate, pubdelete, pubtruncate
       FROM pg_publication WHERE pubname = ANY($1::text[])`,
    [names],
  );
  return found.map((r) => ({
    name: String(r['pubname']),
    allTables: r['puballtables'] === 't',
    publishesInsert: r['pubinsert'] === 't',
    publishesUpdate: r['pubupdate'] === 't',
    publishesDelete: r['pubdelete'] === 't',
    publishesTruncate: r['pubtruncate'] === 't',
  }));
}

/** Every publication in the connected database, by name (to suggest one that exists). */
export async function allPublicationNames(client: pg.Client): Promise<string[]> {
  return (await rows(client, 'SELECT pubname FROM pg_publication ORDER BY 1')).map((r) =>
    String(r['pubname']),
  );
}

export interface PublishedTable extends TableSchema {
  /** Whether the current user may SELECT it (needed to copy it). */
  readonly selectable: boolean;
  /** `pg_class.relkind`: `r` table, `p` partitioned table. */
  readonly kind: string;
}

/**
 * The tables the publications publish, each with exactly the columns pgoutput sends (column
 * lists and generated columns respected), its primary key, replica identity and row filter.
 */
export async function publishedTables(
  client: pg.Client,
  names: readonly string[],
  serverVersion: number,
): Promise<PublishedTable[]> {
  const hasColumnLists = serverVersion >= 150000;
  const tables = await rows(
    client,
    `SELECT c.oid AS relid, n.nspname AS schema, c.relname AS name, c.relreplident AS identity,
            c.relkind AS kind, c.reltuples::int8 AS reltuples,
            has_table_privilege(c.oid, 'SELECT') AS selectable,
            ${hasColumnLists ? `json_agg(pt.attnames)::text AS attnames, json_agg(pt.rowfilter)::text AS rowfilters` : 'NULL AS attnames, NULL AS rowfilters'}
       FROM pg_publication_tables pt
       JOIN pg_namespace n ON n.nspname = pt.schemaname
       JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
      WHERE pt.pubname = ANY($1::text[])
      GROUP BY 1, 2, 3, 4, 5, 6, 7
      ORDER BY 2, 3`,
    [names],
  );
  if (tables.length === 0) return [];
  const relids = tables.map((t) => String(t['relid']));
  const columns = await rows(
    client,
    `SELECT a.attrelid AS relid, a.attname AS name, a.atttypid AS type_oid, a.atttypmod AS typmod,
            format_type(a.atttypid, a.atttypmod) AS type_name, a.attnotnull AS not_null,
            a.attgenerated <> '' AS generated
       FROM pg_attribute a
      WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attrelid, a.attnum`,
    [relids],
  );
  const indexes = await rows(
    client,
    `SELECT i.indrelid AS relid, i.indisprimary AS is_primary, i.indisreplident AS is_identity,
            (SELECT json_agg(a.attname ORDER BY k.ord)
               FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum)::text AS columns
       FROM pg_index i
      WHERE i.indrelid = ANY($1::oid[]) AND (i.indisprimary OR i.indisreplident)`,
    [relids],
  );
  return tables.map((t) => {
    const relid = String(t['relid']);
    const identity = IDENTITY[String(t['identity'])] ?? 'default';
    const published = publishedColumnNames(t['attnames']);
    const primary = indexColumns(indexes, relid, 'is_primary');
    const identityIndex = indexColumns(indexes, relid, 'is_identity');
    const keyColumns = new Set(
      identity === 'full' ? [] : identity === 'index' ? identityIndex : identity === 'default' ? primary : [],
    );
    const tableColumns: ColumnSchema[] = columns
      .filter((c) => String(c['relid']) === relid)
      // Before PG 18 pgoutput never sends generated columns; from 18 the publication's column set says.
      .filter((c) => !(serverVersion < 180000 && c['generated'] === 't'))
      .filter((c) => published === null || published.has(String(c['name'])))
      .map((c) => ({
        name: String(c['name']),
        typeOid: Number(c['type_oid']),
        typeMod: Number(c['typmod']),
        typeName: String(c['type_name']),
        nullable: c['not_null'] !== 't',
        isKey: identity === 'full' || keyColumns.has(String(c['name'])),
      }));
    return {
      relationId: Number(relid),
      schema: String(t['schema']),
      name: String(t['name']),
      columns: tableColumns,
      primaryKey: primary,
      replicaIdentity: identity,
      rowFilter: combinedRowFilter(t['rowfilters']),
      estimatedRows: Number(t['reltuples']),
      selectable: t['selectable'] === 't',
      kind: String(t['kind']),
    };
  });
}

const IDENTITY: Record<string, ReplicaIdentity> = { d: 'default', n: 'nothing', f: 'full', i: 'index' };

function indexColumns(indexes: Row[], relid: string, flag: 'is_primary' | 'is_identity'): string[] {
  const index = indexes.find((i) => String(i['relid']) === relid && i[flag] === 't');
  return index?.['columns'] ? (JSON.parse(index['columns']) as string[]) : [];
}

/** Column names published by any of the publications (union), or null for "all columns". */
function publishedColumnNames(json: string | null | undefined): Set<string> | null {
  if (json === null || json === undefined) return null;
  const lists = JSON.parse(json) as (string[] | null)[];
  if (lists.some((list) => list === null)) return null;
  return new Set(lists.flat() as string[]);
}

/** A row is published if any publication's filter accepts it; no filter on any means all rows. */
function combinedRowFilter(json: string | null | undefined): string | undefined {
  if (json === null || json === undefined) return undefined;
  const filters = JSON.parse(json) as (string | null)[];
  if (filters.some((filter) => filter === null)) return undefined;
  return filters.map((filter) => `(${filter})`).join(' OR ');
}

/** A row of `pg_replication_slots`, typed. */
export interface SlotInfo {
  name: string;
  plugin: string | null;
  slotType: string;
  database: string | null;
  active: boolean;
  activePid: number | null;
  confirmedFlushLsn: Lsn | null;
  restartLsn: Lsn | null;
  /** reserved | extended | unreserved | lost (PG 13+). */
  walStatus: string | null;
  /** Why the slot was invalidated (PG 17+), e.g. `wal_removed`. */
  invalidationReason: string | null;
  temporary: boolean;
  /** Bytes of WAL the slot holds back (current WAL position − restart_lsn). */
  retainedWalBytes: number | null;
}

/** The slot called `name`, or null when there is none (on any database: slot names are global). */
export async function replicationSlot(
  client: pg.Client,
  name: string,
  serverVersion: number,
): Promise<SlotInfo | null> {
  const reason = serverVersion >= 170000 ? 'invalidation_reason' : 'NULL';
  const [row] = await rows(
    client,
    `SELECT slot_name, plugin, slot_type, database, active, active_pid, confirmed_flush_lsn, restart_lsn,
            wal_status, ${reason} AS invalidation_reason, temporary,
            pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8 AS retained
       FROM pg_replication_slots WHERE slot_name = $1`,
    [name],
  );
  if (row === undefined) return null;
  const lsn = (text: string | null | undefined) => (text ? parseLsn(text) : null);
  return {
    name: String(row['slot_name']),
    plugin: row['plugin'] ?? null,
    slotType: String(row['slot_type']),
    database: row['database'] ?? null,
    active: row['active'] === 't',
    activePid: row['active_pid'] ? Number(row['active_pid']) : null,
    confirmedFlushLsn: lsn(row['confirmed_flush_lsn']),
    restartLsn: lsn(row['restart_lsn']),
    walStatus: row['wal_status'] ?? null,
    invalidationReason: row['invalidation_reason'] ?? null,
    temporary: row['temporary'] === 't',
    retainedWalBytes: row['retained'] ? Number(row['retained']) : null,
  };
}

/** Slots no process streams from right now (candidates to drop when slots run out). */
export async function inactiveSlotNames(client: pg.Client): Promise<string[]> {
  const found = await rows(client, 'SELECT slot_name FROM pg_replication_slots WHERE NOT active ORDER BY 1');
  return found.map((r) => String(r['slot_name']));
}

/** The server's current WAL write position. */
export async function currentWalLsn(client: pg.Client): Promise<Lsn> {
  const [row] = await rows(client, 'SELECT pg_current_wal_lsn() AS lsn');
  return parseLsn(String(row!['lsn']));
}
