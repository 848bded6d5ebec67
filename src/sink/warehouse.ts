/**
 * The warehouse: where the coordinator publishes period numbers and where queries,
 * filings and dead letters are read. One class over the {@link SqlClient} port, with the
 * same SQL for the embedded PGlite and for a PostgreSQL server.
 *
 * Instants cross this boundary as epoch milliseconds. In SQL they become timestamptz
 * through `to_timestamp(ms / 1000)` and come back through `extract(epoch ...) * 1000`, so
 * no driver's Date parsing or session time zone is involved.
 */
import { join } from 'node:path';

import { MAX_EVENT_MS, MIN_EVENT_MS, REJECT_REASONS, type RejectReason } from '../ingest/index.js';
import {
  describePeriod,
  isPeriodType,
  periodKey,
  WEEK_MS,
  type PeriodType,
} from '../periods/index.js';
import {
  InvalidFilingError,
  NotPublishedError,
  StaleFenceError,
  filingTextProblem,
} from './errors.js';
import { applyMigrations } from './migrations.js';
import { PgliteClient, PostgresClient, type SqlClient, type SqlClientKind } from './sql-client.js';
import type {
  CurrentRow,
  DeadLetterSummary,
  DeadLetterWrite,
  FilingRow,
  FilingView,
  PeriodRange,
  PeriodStatus,
  ProvisionalWrite,
  PublishedState,
  VersionRow,
  VersionWrite,
  WriterFence,
} from './types.js';

/** Where the warehouse lives: exactly one of `dataDir` and `postgresUrl`. */
export interface WarehouseOptions {
  /** Embedded mode: the PGlite files live in `${dataDir}/warehouse`. */
  readonly dataDir?: string;
  /** Cluster mode: a PostgreSQL server. */
  readonly postgresUrl?: string;
  /** With `postgresUrl` only: the schema that holds the tables (created when missing). */
  readonly schema?: string;
}

/** What the coordinator writes in one publish. */
export interface PublishBatch {
  readonly versions: readonly VersionWrite[];
  readonly provisional: readonly ProvisionalWrite[];
}

/** Arguments of {@link Warehouse.fileCurrent}. */
export interface FileCurrentArgs {
  readonly periodType: PeriodType;
  readonly periodStartMs: number;
  readonly filedBy: string;
  readonly note?: string;
}

/**
 * Rows per statement. Rows travel as one array parameter per column (unnest), so a
 * 40,000-row publish is 20 statements per table rather than 40,000, while each statement's
 * arrays and trigger transition tables stay small.
 */
const ROWS_PER_STATEMENT = 2000;

const TYPE_ORDER = `array_position(ARRAY['hour', 'day', 'week']::text[], period_type)`;

/** Epoch milliseconds of a timestamptz column, as float8 (a JS number in both adapters). */
function msOf(column: string): string {
  return `(extract(epoch FROM ${column}) * 1000)::float8`;
}

/** A timestamptz from a float8 parameter of epoch milliseconds. */
function tsOf(msExpression: string): string {
  return `to_timestamp(${msExpression} / 1000)`;
}

const RANGE_FILTER = `
  ($1::text IS NULL OR period_type = $1::text)
  AND ($2::float8 IS NULL OR period_start >= ${tsOf('$2::float8')})
  AND ($3::float8 IS NULL OR period_start < ${tsOf('$3::float8')})
`;

/** The filing columns of table alias `f`, named as {@link FilingRecord} expects them. */
const FILING_COLUMNS = `f.filing_id, f.period_type, ${msOf('f.period_start')} AS start_ms,
  f.version, f.distinct_users, f.filed_by, f.note, ${msOf('f.filed_at')} AS filed_at_ms`;

/** The versioned rows of the periods, the filings and the dead letters, in PostgreSQL. */
export class Warehouse {
  private closed = false;

  private constructor(private readonly client: SqlClient) {}

  /** Opens the warehouse described by `options` and brings its schema up to date. */
  static async open(options: WarehouseOptions): Promise<Warehouse> {
    const { dataDir, postgresUrl, schema } = options;
    if (dataDir !== undefined && postgresUrl === undefined) {
      if (schema !== undefined) {
        throw new Error('schema applies to postgresUrl only, not to an embedded dataDir');
      }

      return Warehouse.over(await PgliteClient.open(join(dataDir, 'warehouse')));
    }

    if (postgresUrl !== undefined && dataDir === undefined) {
      return Warehouse.over(await PostgresClient.open({ url: postgresUrl, schema }));
    }

    throw new Error('open the warehouse with exactly one of dataDir and postgresUrl');
  }

  /**
   * Brings the schema behind `client` up to date and returns a warehouse that owns the
   * client: {@link Warehouse.close} closes it.
   */
  static async over(client: SqlClient): Promise<Warehouse> {
    try {
      await applyMigrations(client);
    } catch (error) {
      await client.close();
      throw error;
    }

    return new Warehouse(client);
  }

  /** Which adapter the warehouse runs on. */
  get kind(): SqlClientKind {
    return this.client.kind;
  }

  /**
   * Raises the stored fencing token to `fence.fencingToken`; never lowers it. From the
   * moment this resolves, every write that carries a lower token is refused. Fails with
   * {@link StaleFenceError} when the fence already holds a higher token: this writer
   * could never publish, and should not act as if it could.
   */
  async claimFence(fence: WriterFence): Promise<void> {
    const claimed = await this.client.query<{ fencing_token: string }>(
      `UPDATE writer_fence
       SET fencing_token = $1::bigint, ring_epoch = $2::bigint, claimed_at = now()
       WHERE fencing_token <= $1::bigint
       RETURNING fencing_token`,
      [fence.fencingToken, fence.ringEpoch],
    );
    if (claimed.length > 0) return;

    const [held] = await this.client.query<{ fencing_token: string }>(
      'SELECT fencing_token FROM writer_fence',
    );
    throw new StaleFenceError(fence.fencingToken, Number(held?.fencing_token));
  }

  /**
   * Writes one batch in one transaction: every version into the history, then the
   * current rows. A version replaces a provisional row or a lower version; a provisional
   * write replaces only a provisional row, and never with a lower watermark or count.
   *
   * Writing a version that exists with the same count is a no-op (a retry after a crash);
   * with a different count it fails with 'version conflict' and nothing is written. A
   * `fence` older than the claimed one fails with 'stale fencing token'.
   */
  async publish(batch: PublishBatch, fence: WriterFence): Promise<void> {
    const versions = uniqueVersions(batch.versions);
    const provisional = newestProvisional(batch.provisional);

    await this.client.transaction(async (tx) => {
      await tx.query('SELECT assert_writer_fence($1::bigint)', [fence.fencingToken]);

      for (const chunk of chunks(versions, ROWS_PER_STATEMENT)) {
        await insertVersions(tx, chunk, fence);
      }

      for (const chunk of chunks(latestVersions(versions), ROWS_PER_STATEMENT)) {
        await upsertCurrentVersions(tx, chunk, fence);
      }

      for (const chunk of chunks(provisional, ROWS_PER_STATEMENT)) {
        await upsertProvisional(tx, chunk, fence);
      }
    });
  }

  /**
   * The highest watermark any row was written at (the coordinator's global watermark of
   * that round: every partition had passed it), or undefined before the first row.
   */
  async latestWatermark(): Promise<number | undefined> {
    const [row] = await this.client.query<{ ms: unknown }>(
      `SELECT ${msOf('max(watermark)')} AS ms FROM period_current`,
    );
    const ms = row?.ms;

    return ms === null || ms === undefined ? undefined : toMs(ms);
  }

  /**
   * The latest published version of every period that has one, keyed by
   * {@link periodKey}. Periods with only a provisional number are absent.
   */
  async loadPublished(): Promise<Map<string, PublishedState>> {
    const rows = await this.client.query<PublishedRecord>(
      `SELECT period_type, ${msOf('period_start')} AS start_ms, version, distinct_users
       FROM period_current
       WHERE version >= 1`,
    );

    const published = new Map<string, PublishedState>();
    for (const row of rows) {
      const key = periodKey({ type: toPeriodType(row.period_type), startMs: toMs(row.start_ms) });
      published.set(key, {
        version: toNumber(row.version),
        distinctUsers: toNumber(row.distinct_users),
      });
    }

    return published;
  }

  /**
   * Keeps rejected events in the dead-letter table, one row per (source, line, raw):
   * recording an event twice keeps one row, and another event under a (source, line)
   * already used is kept beside the first.
   */
  async recordRejects(rows: readonly DeadLetterWrite[]): Promise<void> {
    for (const chunk of chunks(rows, ROWS_PER_STATEMENT)) {
      await this.client.query(
        `INSERT INTO dead_letter (source, line, reason, detail, raw)
         SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[])
         ON CONFLICT (source, line, md5(raw)) DO NOTHING`,
        [
          chunk.map((row) => storableText(row.source)),
          chunk.map((row) => row.line),
          chunk.map((row) => row.reason),
          chunk.map((row) => storableText(row.detail)),
          chunk.map((row) => storableText(row.raw)),
        ],
      );
    }
  }

  /** Current rows in `range`, by type (hour, day, week) and then start. */
  async queryCurrent(range: PeriodRange = {}): Promise<CurrentRow[]> {
    const rows = await this.client.query<CurrentRecord>(
      `SELECT period_type, ${msOf('period_start')} AS start_ms, distinct_users, version, status,
         ${msOf('computed_at')} AS computed_at_ms, ${msOf('watermark')} AS watermark_ms
       FROM period_current
       WHERE ${RANGE_FILTER}
       ORDER BY ${TYPE_ORDER}, period_start`,
      rangeParams(range),
    );

    return rows.map((row) => ({
      periodType: toPeriodType(row.period_type),
      periodStartMs: toMs(row.start_ms),
      distinctUsers: toNumber(row.distinct_users),
      version: toNumber(row.version),
      status: toStatus(row.status),
      computedAtMs: toMs(row.computed_at_ms),
      watermarkMs: toMs(row.watermark_ms),
    }));
  }

  /**
   * Every published version in `range`, by type, start and version; with
   * `writtenSinceMs`, those written at or after that instant (and a few written up to a
   * millisecond before it: the instant travels as a float, so callers that need the
   * exact boundary filter the rows again).
   */
  async queryHistory(
    range: PeriodRange = {},
    options: { readonly writtenSinceMs?: number } = {},
  ): Promise<VersionRow[]> {
    const since = options.writtenSinceMs;
    const rows = await this.client.query<VersionRecord>(
      `SELECT period_type, ${msOf('period_start')} AS start_ms, version, distinct_users, status,
         reason, ${msOf('written_at')} AS written_at_ms, ${msOf('watermark')} AS watermark_ms,
         ring_epoch, fencing_token
       FROM period_version
       WHERE ${RANGE_FILTER}
         AND ($4::float8 IS NULL OR written_at >= ${tsOf('$4::float8')})
       ORDER BY ${TYPE_ORDER}, period_start, version`,
      [
        ...rangeParams(range),
        since === undefined || !Number.isFinite(since) ? null : Math.max(since - 1, 0),
      ],
    );

    return rows.map((row) => ({
      periodType: toPeriodType(row.period_type),
      periodStartMs: toMs(row.start_ms),
      version: toNumber(row.version),
      distinctUsers: toNumber(row.distinct_users),
      status: toPublishedStatus(row.status),
      reason: row.reason,
      writtenAtMs: toMs(row.written_at_ms),
      watermarkMs: toMs(row.watermark_ms),
      ringEpoch: toNumber(row.ring_epoch),
      fencingToken: toNumber(row.fencing_token),
    }));
  }

  /**
   * Records that the period's current published version was reported outside. Fails with
   * {@link NotPublishedError} when the period has no published version (absent, or
   * provisional only), and with {@link InvalidFilingError} when `filedBy` or `note` cannot
   * be kept (see filingTextProblem).
   */
  async fileCurrent(args: FileCurrentArgs): Promise<FilingRow> {
    const period = { type: args.periodType, startMs: args.periodStartMs };
    const problem =
      filingTextProblem('filed_by', args.filedBy) ??
      (args.note === undefined ? undefined : filingTextProblem('note', args.note));
    if (problem !== undefined) throw new InvalidFilingError(period, problem);

    const [filed] = await this.client.query<FilingRecord>(
      `INSERT INTO filing AS f (period_type, period_start, version, distinct_users, filed_by,
         note)
       SELECT period_type, period_start, version, distinct_users, $3::text, $4::text
       FROM period_current
       WHERE period_type = $1 AND period_start = ${tsOf('$2::float8')} AND version >= 1
       RETURNING ${FILING_COLUMNS}`,
      [args.periodType, args.periodStartMs, args.filedBy, args.note ?? null],
    );
    if (filed !== undefined) {
      return toFilingRow(filed);
    }

    const [current] = await this.client.query<{ status: string }>(
      `SELECT status FROM period_current
       WHERE period_type = $1 AND period_start = ${tsOf('$2::float8')}`,
      [args.periodType, args.periodStartMs],
    );
    throw new NotPublishedError(
      period,
      current === undefined ? 'it has no number at all' : 'it is still provisional',
    );
  }

  /** Every filing, oldest first, beside its period's current number. */
  async listFilings(): Promise<FilingView[]> {
    const rows = await this.client.query<FilingViewRecord>(
      `SELECT ${FILING_COLUMNS}, c.version AS current_version,
         c.distinct_users AS current_distinct_users, c.status AS current_status
       FROM filing f
       JOIN period_current c ON c.period_type = f.period_type AND c.period_start = f.period_start
       ORDER BY f.filing_id`,
    );

    return rows.map((row) => {
      const filing = toFilingRow(row);
      const currentDistinctUsers = toNumber(row.current_distinct_users);

      return {
        ...filing,
        currentVersion: toNumber(row.current_version),
        currentDistinctUsers,
        currentStatus: toStatus(row.current_status),
        difference: currentDistinctUsers - filing.distinctUsers,
      };
    });
  }

  /** How many dead letters there are per reason, with the first few of each. */
  async rejectSummary(examplesPerReason = 3): Promise<DeadLetterSummary> {
    const countRows = await this.client.query<{ reason: string; total: unknown }>(
      'SELECT reason, count(*) AS total FROM dead_letter GROUP BY reason',
    );
    const exampleRows = await this.client.query<DeadLetterRecord>(
      `SELECT source, line, reason, detail, raw
       FROM (
         SELECT *, row_number() OVER (PARTITION BY reason ORDER BY id) AS rank FROM dead_letter
       ) ranked
       WHERE rank <= $1
       ORDER BY reason, rank`,
      [examplesPerReason],
    );

    const counts: Partial<Record<RejectReason, number>> = {};
    for (const row of countRows) {
      counts[toRejectReason(row.reason)] = toNumber(row.total);
    }

    const examples: Partial<Record<RejectReason, DeadLetterWrite[]>> = {};
    for (const row of exampleRows) {
      const reason = toRejectReason(row.reason);
      const example = { ...row, line: toNumber(row.line), reason };
      (examples[reason] ??= []).push(example);
    }

    return { counts, examples };
  }

  /** Closes the client. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) {
      return;
    }

    this.closed = true;
    await this.client.close();
  }
}

// --- publish steps --------------------------------------------------------------------

/**
 * Inserts history rows, skipping versions that already exist, and fails the transaction
 * if an existing version holds a different count. The final SELECT reads the snapshot
 * from before the INSERT, so it sees exactly the rows that were there already; it probes
 * the primary key once per input row (LATERAL), so that its cost does not grow with the
 * history, whatever plan the table's statistics would suggest for a join.
 */
async function insertVersions(
  tx: SqlClient,
  versions: readonly VersionWrite[],
  fence: WriterFence,
): Promise<void> {
  const conflicts = await tx.query<VersionConflictRecord>(
    `WITH input AS (
       SELECT period_type, ${tsOf('start_ms')} AS period_start, version, distinct_users,
         status, reason, ${tsOf('watermark_ms')} AS watermark
       FROM unnest($1::text[], $2::float8[], $3::int[], $4::bigint[], $5::text[], $6::text[],
         $7::float8[]) AS t(period_type, start_ms, version, distinct_users, status, reason,
         watermark_ms)
     ),
     inserted AS (
       INSERT INTO period_version (period_type, period_start, version, distinct_users, status,
         reason, watermark, ring_epoch, fencing_token)
       SELECT period_type, period_start, version, distinct_users, status, reason, watermark,
         $8::bigint, $9::bigint
       FROM input
       ON CONFLICT (period_type, period_start, version) DO NOTHING
     )
     SELECT i.period_type, ${msOf('i.period_start')} AS start_ms, i.version,
       v.distinct_users AS stored_users, i.distinct_users AS written_users
     FROM input i
     CROSS JOIN LATERAL (
       SELECT distinct_users FROM period_version
       WHERE period_type = i.period_type AND period_start = i.period_start
         AND version = i.version
     ) v
     WHERE v.distinct_users <> i.distinct_users
     LIMIT 5`,
    [
      versions.map((row) => row.periodType),
      versions.map((row) => row.periodStartMs),
      versions.map((row) => row.version),
      versions.map((row) => row.distinctUsers),
      versions.map((row) => row.status),
      versions.map((row) => row.reason),
      versions.map((row) => row.watermarkMs),
      fence.ringEpoch,
      fence.fencingToken,
    ],
  );
  if (conflicts.length === 0) {
    return;
  }

  const described = conflicts.map((row) => {
    const period = { type: toPeriodType(row.period_type), startMs: toMs(row.start_ms) };
    const users = `${toNumber(row.stored_users)} stored, ${toNumber(row.written_users)} written`;

    return `${describePeriod(period)} v${toNumber(row.version)} (${users})`;
  });

  throw new Error(`version conflict: ${described.join('; ')}`);
}

/** Points current rows at the highest version written, unless they are at one already. */
async function upsertCurrentVersions(
  tx: SqlClient,
  versions: readonly VersionWrite[],
  fence: WriterFence,
): Promise<void> {
  await tx.query(
    `INSERT INTO period_current (period_type, period_start, distinct_users, version, status,
       computed_at, watermark, ring_epoch, fencing_token)
     SELECT period_type, ${tsOf('start_ms')}, distinct_users, version, status, now(),
       ${tsOf('watermark_ms')}, $6::bigint, $7::bigint
     FROM unnest($1::text[], $2::float8[], $3::bigint[], $4::int[], $5::text[], $8::float8[])
       AS t(period_type, start_ms, distinct_users, version, status, watermark_ms)
     ON CONFLICT (period_type, period_start) DO UPDATE SET
       distinct_users = EXCLUDED.distinct_users,
       version = EXCLUDED.version,
       status = EXCLUDED.status,
       computed_at = EXCLUDED.computed_at,
       watermark = EXCLUDED.watermark,
       ring_epoch = EXCLUDED.ring_epoch,
       fencing_token = EXCLUDED.fencing_token
     WHERE period_current.version < EXCLUDED.version`,
    [
      versions.map((row) => row.periodType),
      versions.map((row) => row.periodStartMs),
      versions.map((row) => row.distinctUsers),
      versions.map((row) => row.version),
      versions.map((row) => row.status),
      fence.ringEpoch,
      fence.fencingToken,
      versions.map((row) => row.watermarkMs),
    ],
  );
}

/** Refreshes provisional rows; a published version or a newer refresh is left alone. */
async function upsertProvisional(
  tx: SqlClient,
  rows: readonly ProvisionalWrite[],
  fence: WriterFence,
): Promise<void> {
  await tx.query(
    `INSERT INTO period_current (period_type, period_start, distinct_users, version, status,
       computed_at, watermark, ring_epoch, fencing_token)
     SELECT period_type, ${tsOf('start_ms')}, distinct_users, 0, 'provisional', now(),
       ${tsOf('watermark_ms')}, $5::bigint, $6::bigint
     FROM unnest($1::text[], $2::float8[], $3::bigint[], $4::float8[])
       AS t(period_type, start_ms, distinct_users, watermark_ms)
     ON CONFLICT (period_type, period_start) DO UPDATE SET
       distinct_users = EXCLUDED.distinct_users,
       computed_at = EXCLUDED.computed_at,
       watermark = EXCLUDED.watermark,
       ring_epoch = EXCLUDED.ring_epoch,
       fencing_token = EXCLUDED.fencing_token
     WHERE period_current.version = 0
       AND period_current.watermark <= EXCLUDED.watermark
       AND period_current.distinct_users <= EXCLUDED.distinct_users`,
    [
      rows.map((row) => row.periodType),
      rows.map((row) => row.periodStartMs),
      rows.map((row) => row.distinctUsers),
      rows.map((row) => row.watermarkMs),
      fence.ringEpoch,
      fence.fencingToken,
    ],
  );
}

// --- batch shaping --------------------------------------------------------------------

function versionKey(row: VersionWrite): string {
  return `${periodKey({ type: row.periodType, startMs: row.periodStartMs })}:${row.version}`;
}

/**
 * Drops repeats of a version inside one batch; a repeat with a different count is the
 * same invariant violation as a conflict with a stored version.
 */
function uniqueVersions(rows: readonly VersionWrite[]): VersionWrite[] {
  const byKey = new Map<string, VersionWrite>();
  for (const row of rows) {
    const key = versionKey(row);
    const seen = byKey.get(key);
    if (seen === undefined) {
      byKey.set(key, row);
      continue;
    }

    if (seen.distinctUsers !== row.distinctUsers) {
      const period = { type: row.periodType, startMs: row.periodStartMs };
      const users = `${seen.distinctUsers} and ${row.distinctUsers}`;
      throw new Error(
        `version conflict: ${describePeriod(period)} v${row.version} written twice in one batch (${users})`,
      );
    }
  }

  return [...byKey.values()];
}

/** The highest version of each period in the batch. */
function latestVersions(rows: readonly VersionWrite[]): VersionWrite[] {
  const latest = new Map<string, VersionWrite>();
  for (const row of rows) {
    const key = periodKey({ type: row.periodType, startMs: row.periodStartMs });
    const seen = latest.get(key);
    if (seen === undefined || seen.version < row.version) {
      latest.set(key, row);
    }
  }

  return [...latest.values()];
}

/**
 * The newest refresh of each period in the batch: one statement may touch a row only once
 * under ON CONFLICT DO UPDATE.
 */
function newestProvisional(rows: readonly ProvisionalWrite[]): ProvisionalWrite[] {
  const newest = new Map<string, ProvisionalWrite>();
  for (const row of rows) {
    const key = periodKey({ type: row.periodType, startMs: row.periodStartMs });
    const seen = newest.get(key);
    const isNewer =
      seen === undefined ||
      seen.watermarkMs < row.watermarkMs ||
      (seen.watermarkMs === row.watermarkMs && seen.distinctUsers <= row.distinctUsers);
    if (isNewer) {
      newest.set(key, row);
    }
  }

  return [...newest.values()];
}

function* chunks<T>(rows: readonly T[], size: number): Generator<readonly T[]> {
  for (let start = 0; start < rows.length; start += size) {
    yield rows.slice(start, start + size);
  }
}

/**
 * Every period starts at most a week before the earliest event time taken and no later than
 * the latest. Range bounds are held to that span, which leaves the rows they select alone
 * and keeps a client's "no limit" (an int64 extreme) from failing the query: PostgreSQL's
 * timestamps end long before it.
 */
const EARLIEST_PERIOD_START_MS = MIN_EVENT_MS - WEEK_MS;
const AFTER_LAST_PERIOD_START_MS = MAX_EVENT_MS + 1;

function rangeParams(range: PeriodRange): unknown[] {
  return [range.periodType ?? null, periodBound(range.fromMs), periodBound(range.toMs)];
}

function periodBound(ms: number | undefined): number | null {
  if (ms === undefined) return null;

  return Math.min(Math.max(ms, EARLIEST_PERIOD_START_MS), AFTER_LAST_PERIOD_START_MS);
}

/** PostgreSQL text cannot hold NUL; a rejected line can. */
function storableText(text: string): string {
  return text.includes('\u0000') ? text.replaceAll('\u0000', '\uFFFD') : text;
}

// --- rows as the drivers return them ---------------------------------------------------

// Numeric columns arrive as numbers from PGlite and as strings from pg (bigint, count),
// so they are typed `unknown` here and read through toNumber.

interface PublishedRecord {
  readonly period_type: string;
  readonly start_ms: unknown;
  readonly version: unknown;
  readonly distinct_users: unknown;
}

interface CurrentRecord {
  readonly period_type: string;
  readonly start_ms: unknown;
  readonly distinct_users: unknown;
  readonly version: unknown;
  readonly status: string;
  readonly computed_at_ms: unknown;
  readonly watermark_ms: unknown;
}

interface VersionRecord {
  readonly period_type: string;
  readonly start_ms: unknown;
  readonly version: unknown;
  readonly distinct_users: unknown;
  readonly status: string;
  readonly reason: string;
  readonly written_at_ms: unknown;
  readonly watermark_ms: unknown;
  readonly ring_epoch: unknown;
  readonly fencing_token: unknown;
}

interface VersionConflictRecord {
  readonly period_type: string;
  readonly start_ms: unknown;
  readonly version: unknown;
  readonly stored_users: unknown;
  readonly written_users: unknown;
}

interface FilingRecord {
  readonly filing_id: unknown;
  readonly period_type: string;
  readonly start_ms: unknown;
  readonly version: unknown;
  readonly distinct_users: unknown;
  readonly filed_by: string;
  readonly note: string | null;
  readonly filed_at_ms: unknown;
}

interface FilingViewRecord extends FilingRecord {
  readonly current_version: unknown;
  readonly current_distinct_users: unknown;
  readonly current_status: string;
}

interface DeadLetterRecord {
  readonly source: string;
  readonly line: unknown;
  readonly reason: string;
  readonly detail: string;
  readonly raw: string;
}

function toFilingRow(row: FilingRecord): FilingRow {
  return {
    filingId: toNumber(row.filing_id),
    periodType: toPeriodType(row.period_type),
    periodStartMs: toMs(row.start_ms),
    version: toNumber(row.version),
    distinctUsers: toNumber(row.distinct_users),
    filedBy: row.filed_by,
    note: row.note,
    filedAtMs: toMs(row.filed_at_ms),
  };
}

// --- narrowing --------------------------------------------------------------------------

function toNumber(value: unknown): number {
  const number =
    typeof value === 'number'
      ? value
      : typeof value === 'string' || typeof value === 'bigint'
        ? Number(value)
        : Number.NaN;
  if (!Number.isFinite(number)) {
    throw new Error(`expected a number from the warehouse, got ${String(value)}`);
  }

  return number;
}

/** Rounds away the sub-millisecond noise of the float8 epoch conversion. */
function toMs(value: unknown): number {
  return Math.round(toNumber(value));
}

function toPeriodType(value: string): PeriodType {
  if (!isPeriodType(value)) {
    throw new Error(`unknown period type in the warehouse: ${value}`);
  }

  return value;
}

function toStatus(value: string): PeriodStatus {
  if (value !== 'provisional' && value !== 'final' && value !== 'restated') {
    throw new Error(`unknown period status in the warehouse: ${value}`);
  }

  return value;
}

function toPublishedStatus(value: string): 'final' | 'restated' {
  const status = toStatus(value);
  if (status === 'provisional') {
    throw new Error('a provisional row in the version history');
  }

  return status;
}

function toRejectReason(value: string): RejectReason {
  const reason = REJECT_REASONS.find((known) => known === value);
  if (reason === undefined) {
    throw new Error(`unknown reject reason in the warehouse: ${value}`);
  }

  return reason;
}
