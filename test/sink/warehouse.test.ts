/**
 * The warehouse against both backends: embedded PGlite in a temp directory and a real
 * PostgreSQL server (when SPEEDLAYER_TEST_POSTGRES_URL is set). Scenarios:
 *
 * - migrations apply once, however often (and, on the server, however concurrently) it opens
 * - v1 final then v2 restated: current shows v2, history keeps both unchanged
 * - provisional rows never overwrite a published version; a later final replaces them
 * - republishing a version is a no-op; a different count is a 'version conflict'
 * - filings keep their number through a restatement; listFilings shows the difference
 * - the database itself refuses UPDATE, DELETE and TRUNCATE of filings and history
 * - the database itself refuses a stale fencing token
 * - dead letters are idempotent by (source, line) and summarized per reason
 * - a 40,000-row publish
 * - reopening keeps the data; range queries filter and sort
 */
import { randomBytes } from 'node:crypto';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DAY_MS, HOUR_MS, WEEK_MS, weekStart } from '../../src/periods/index.js';
import {
  PgliteClient,
  PostgresClient,
  StaleFenceError,
  Warehouse,
  type DeadLetterWrite,
  type SqlClient,
  type SqlClientKind,
  type VersionRow,
  type VersionWrite,
  type WarehouseOptions,
  type WriterFence,
} from '../../src/sink/index.js';
import { MAX_BATCH_ID_BYTES, MAX_SOURCE_BYTES } from '../../src/transport/ingest-batch.js';
import { postgresTestUrl } from '../support/postgres.js';

/** Where one test's warehouse lives, and how to reach it with raw SQL. */
interface Backend {
  readonly kind: SqlClientKind;
  setUp(): Promise<void>;
  tearDown(): Promise<void>;
  /** A migrated warehouse with no rows in it. */
  place(): Promise<WarehouseOptions>;
  /** A place the warehouse has never been opened in. */
  emptyPlace(): Promise<WarehouseOptions>;
  /** A plain SQL client on `options`; for PGlite, only while no warehouse has it open. */
  rawClient(options: WarehouseOptions): Promise<SqlClient>;
}

/**
 * PGlite: one migrated template directory per file (initdb takes seconds), copied for each
 * test so that every test starts from its own empty warehouse.
 */
function pgliteBackend(): Backend {
  let root = '';
  let places = 0;

  return {
    kind: 'pglite',
    async setUp() {
      root = await mkdtemp(join(tmpdir(), 'speedlayer-warehouse-'));
      const template = await Warehouse.open({ dataDir: join(root, 'template') });
      await template.close();
    },
    async tearDown() {
      await rm(root, { recursive: true, force: true });
    },
    async place() {
      const dataDir = join(root, `place-${++places}`);
      await cp(join(root, 'template'), dataDir, { recursive: true });

      return { dataDir };
    },
    async emptyPlace() {
      return { dataDir: join(root, `place-${++places}`) };
    },
    rawClient(options) {
      return PgliteClient.open(join(options.dataDir ?? '', 'warehouse'));
    },
  };
}

/** PostgreSQL: a fresh random schema per test, all dropped after the file. */
function postgresBackend(url: string): Backend {
  const prefix = `speedlayer_test_${randomBytes(4).toString('hex')}`;
  let places = 0;

  const emptyPlace = (): Promise<WarehouseOptions> =>
    Promise.resolve({ postgresUrl: url, schema: `${prefix}_${++places}` });

  return {
    kind: 'postgres',
    async setUp() {},
    async tearDown() {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        for (let place = 1; place <= places; place++) {
          await client.query(`DROP SCHEMA IF EXISTS ${prefix}_${place} CASCADE`);
        }
      } finally {
        await client.end();
      }
    },
    place: emptyPlace,
    emptyPlace,
    rawClient(options) {
      return PostgresClient.open({ url, schema: options.schema });
    },
  };
}

const postgresUrl = postgresTestUrl();
const backends: Backend[] = [pgliteBackend()];
if (postgresUrl !== undefined) {
  backends.push(postgresBackend(postgresUrl));
}

const DAY = Date.UTC(2026, 2, 24);
const FENCE: WriterFence = { ringEpoch: 1, fencingToken: 1 };

function version(overrides: Partial<VersionWrite> = {}): VersionWrite {
  return {
    periodType: 'day',
    periodStartMs: DAY,
    version: 1,
    distinctUsers: 100,
    status: 'final',
    reason: 'closed',
    watermarkMs: DAY + DAY_MS + HOUR_MS,
    ...overrides,
  };
}

function reject(line: number, overrides: Partial<DeadLetterWrite> = {}): DeadLetterWrite {
  return {
    source: 'events.ndjson',
    line,
    reason: 'invalid_user_id',
    detail: 'user id is empty',
    raw: `{"user_id":"","line":${line}}`,
    ...overrides,
  };
}

describe.each(backends)('Warehouse on $kind', (backend) => {
  beforeAll(() => backend.setUp());
  afterAll(() => backend.tearDown());

  async function openFresh(): Promise<Warehouse> {
    return Warehouse.open(await backend.place());
  }

  it('applies each migration once, however often it is opened', async () => {
    const place = await backend.emptyPlace();

    if (backend.kind === 'postgres') {
      const racing = await Promise.all([Warehouse.open(place), Warehouse.open(place)]);
      await Promise.all(racing.map((warehouse) => warehouse.close()));
    } else {
      await (await Warehouse.open(place)).close();
    }

    const again = await Warehouse.open(place);
    await again.publish({ versions: [version()], provisional: [] }, FENCE);
    await again.close();

    const client = await backend.rawClient(place);
    try {
      const rows = await client.query<{ id: string }>('SELECT id FROM schema_migrations');
      expect(rows.map((row) => row.id).sort()).toEqual([
        '0001_periods',
        '0002_filings',
        '0003_dead_letters',
        '0004_writer_fence',
        '0005_pin_function_schema',
        '0006_versions_by_written_at',
        '0007_dead_letter_by_content',
      ]);
      expect(await client.query('SHOW TimeZone')).toEqual([{ TimeZone: 'UTC' }]);
    } finally {
      await client.close();
    }
  });

  it('shows a restated v2 as current and keeps v1 and v2 in the history unchanged', async () => {
    const warehouse = await openFresh();
    const fence = { ringEpoch: 3, fencingToken: 7 };

    await warehouse.publish({ versions: [version()], provisional: [] }, fence);
    const [firstHistory] = await warehouse.queryHistory();
    const restated = version({
      version: 2,
      distinctUsers: 104,
      status: 'restated',
      reason: 'late events',
      watermarkMs: DAY + 2 * DAY_MS,
    });
    await warehouse.publish({ versions: [restated], provisional: [] }, fence);

    const current = await warehouse.queryCurrent();
    expect(current).toEqual([
      {
        periodType: 'day',
        periodStartMs: DAY,
        distinctUsers: 104,
        version: 2,
        status: 'restated',
        computedAtMs: expect.any(Number),
        watermarkMs: DAY + 2 * DAY_MS,
      },
    ]);

    const history = await warehouse.queryHistory();
    expect(history.map(({ writtenAtMs: _, ...row }) => row)).toEqual([
      {
        periodType: 'day',
        periodStartMs: DAY,
        version: 1,
        distinctUsers: 100,
        status: 'final',
        reason: 'closed',
        watermarkMs: DAY + DAY_MS + HOUR_MS,
        ringEpoch: 3,
        fencingToken: 7,
      },
      {
        periodType: 'day',
        periodStartMs: DAY,
        version: 2,
        distinctUsers: 104,
        status: 'restated',
        reason: 'late events',
        watermarkMs: DAY + 2 * DAY_MS,
        ringEpoch: 3,
        fencingToken: 7,
      },
    ]);
    expect(history[0]).toEqual(firstHistory);
    expect(Math.abs((firstHistory?.writtenAtMs ?? 0) - Date.now())).toBeLessThan(60_000);

    const published = await warehouse.loadPublished();
    expect([...published]).toEqual([[`day:${DAY}`, { version: 2, distinctUsers: 104 }]]);
    await warehouse.close();
  });

  it('reads the versions written since an instant, its exact boundary included', async () => {
    const warehouse = await openFresh();
    await warehouse.publish({ versions: [version()], provisional: [] }, FENCE);
    await sleep(20);
    await warehouse.publish(
      {
        versions: [version({ version: 2, distinctUsers: 103, status: 'restated' })],
        provisional: [],
      },
      FENCE,
    );
    await sleep(20);
    await warehouse.publish(
      {
        versions: [version({ version: 3, distinctUsers: 105, status: 'restated' })],
        provisional: [],
      },
      FENCE,
    );

    const all = await warehouse.queryHistory();
    expect(all.map((row) => row.version)).toEqual([1, 2, 3]);
    const [v1, v2, v3] = all as [VersionRow, VersionRow, VersionRow];
    expect(v1.writtenAtMs).toBeLessThan(v2.writtenAtMs);
    expect(v2.writtenAtMs).toBeLessThan(v3.writtenAtMs);

    const since = async (ms: number): Promise<number[]> =>
      (await warehouse.queryHistory({}, { writtenSinceMs: ms }))
        .filter((row) => row.writtenAtMs >= ms)
        .map((row) => row.version);
    expect(await since(v2.writtenAtMs)).toEqual([2, 3]);
    expect(await since(v3.writtenAtMs)).toEqual([3]);
    expect(await since(v3.writtenAtMs + 1)).toEqual([]);
    expect(await since(Number.NEGATIVE_INFINITY)).toEqual([1, 2, 3]);
    // The range filter still applies.
    expect(
      await warehouse.queryHistory({ periodType: 'hour' }, { writtenSinceMs: v1.writtenAtMs }),
    ).toEqual([]);
    // Without the exact filter, nothing older than a millisecond before the instant.
    const loose = await warehouse.queryHistory({}, { writtenSinceMs: v3.writtenAtMs });
    expect(loose.map((row) => row.version)).toEqual([3]);
    await warehouse.close();
  });

  it('never lets a provisional write replace a published version', async () => {
    const warehouse = await openFresh();
    const hour = DAY + 5 * HOUR_MS;
    const provisional = (distinctUsers: number, watermarkMs: number) => ({
      periodType: 'hour' as const,
      periodStartMs: hour,
      distinctUsers,
      watermarkMs,
    });
    const currentHour = async () => (await warehouse.queryCurrent({ periodType: 'hour' }))[0];

    await warehouse.publish({ versions: [], provisional: [provisional(10, hour + 60_000)] }, FENCE);
    expect(await currentHour()).toMatchObject({
      distinctUsers: 10,
      version: 0,
      status: 'provisional',
    });
    expect(await warehouse.loadPublished()).toEqual(new Map());

    const refresh = (distinctUsers: number, watermarkMs: number) => {
      const batch = { versions: [], provisional: [provisional(distinctUsers, watermarkMs)] };

      return warehouse.publish(batch, FENCE);
    };
    await refresh(12, hour + 120_000);
    await refresh(11, hour + 90_000);
    await refresh(13, hour + 60_000);
    expect(await currentHour()).toMatchObject({ distinctUsers: 12, watermarkMs: hour + 120_000 });

    const final = version({ periodType: 'hour', periodStartMs: hour, distinctUsers: 15 });
    await warehouse.publish({ versions: [final], provisional: [] }, FENCE);
    expect(await currentHour()).toMatchObject({ distinctUsers: 15, version: 1, status: 'final' });

    const late = provisional(30, hour + 10 * HOUR_MS);
    await warehouse.publish({ versions: [], provisional: [late] }, FENCE);
    expect(await currentHour()).toMatchObject({ distinctUsers: 15, version: 1, status: 'final' });

    // In one batch the version wins whatever the order of the two lists.
    const next = hour + HOUR_MS;
    await warehouse.publish(
      {
        versions: [version({ periodType: 'hour', periodStartMs: next, distinctUsers: 8 })],
        provisional: [{ ...late, periodStartMs: next, distinctUsers: 9 }],
      },
      FENCE,
    );
    expect(await warehouse.queryCurrent({ periodType: 'hour', fromMs: next })).toMatchObject([
      { periodStartMs: next, distinctUsers: 8, version: 1, status: 'final' },
    ]);
    await warehouse.close();
  });

  it('treats a republished version as a no-op and a different count as a conflict', async () => {
    const warehouse = await openFresh();
    await warehouse.publish({ versions: [version()], provisional: [] }, FENCE);

    await warehouse.publish({ versions: [version(), version()], provisional: [] }, FENCE);
    expect(await warehouse.queryHistory()).toHaveLength(1);

    const otherDay = version({ periodStartMs: DAY + DAY_MS, distinctUsers: 7 });
    const conflicting = version({ distinctUsers: 101 });
    await expect(
      warehouse.publish({ versions: [otherDay, conflicting], provisional: [] }, FENCE),
    ).rejects.toThrow(/version conflict: day 2026-03-24T00:00:00Z v1 \(100 stored, 101 written\)/);
    const twice = [otherDay, { ...otherDay, distinctUsers: 8 }];
    await expect(warehouse.publish({ versions: twice, provisional: [] }, FENCE)).rejects.toThrow(
      /version conflict: day 2026-03-25T00:00:00Z v1 written twice in one batch \(7 and 8\)/,
    );

    const history = await warehouse.queryHistory();
    expect(history.map((row) => [row.periodStartMs, row.version, row.distinctUsers])).toEqual([
      [DAY, 1, 100],
    ]);
    expect(await warehouse.queryCurrent()).toMatchObject([{ distinctUsers: 100, version: 1 }]);
    await warehouse.close();
  });

  it('keeps a filing through a restatement and shows the difference', async () => {
    const warehouse = await openFresh();
    await warehouse.publish({ versions: [version()], provisional: [] }, FENCE);

    const filing = await warehouse.fileCurrent({
      periodType: 'day',
      periodStartMs: DAY,
      filedBy: 'finance@example.com',
      note: 'Q1 investor letter',
    });
    expect(filing).toEqual({
      filingId: expect.any(Number),
      periodType: 'day',
      periodStartMs: DAY,
      version: 1,
      distinctUsers: 100,
      filedBy: 'finance@example.com',
      note: 'Q1 investor letter',
      filedAtMs: expect.any(Number),
    });

    const restated = version({ version: 2, distinctUsers: 97, status: 'restated', reason: 'x' });
    await warehouse.publish({ versions: [restated], provisional: [] }, FENCE);

    expect(await warehouse.listFilings()).toEqual([
      {
        ...filing,
        currentVersion: 2,
        currentDistinctUsers: 97,
        currentStatus: 'restated',
        difference: -3,
      },
    ]);

    const second = await warehouse.fileCurrent({
      periodType: 'day',
      periodStartMs: DAY,
      filedBy: 'audit',
    });
    expect(second).toMatchObject({ version: 2, distinctUsers: 97, note: null });
    expect((await warehouse.listFilings()).map((view) => view.difference)).toEqual([-3, 0]);
    await warehouse.close();
  });

  it('refuses to file a period that has no published version', async () => {
    const warehouse = await openFresh();
    const provisional = { periodType: 'day' as const, periodStartMs: DAY, distinctUsers: 5 };
    const batch = { versions: [], provisional: [{ ...provisional, watermarkMs: DAY }] };
    await warehouse.publish(batch, FENCE);

    await expect(
      warehouse.fileCurrent({ periodType: 'day', periodStartMs: DAY, filedBy: 'finance' }),
    ).rejects.toThrow(
      '[SL-QUERY-002] cannot file day 2026-03-24T00:00:00Z: no published version (it is still provisional)',
    );
    await expect(
      warehouse.fileCurrent({ periodType: 'day', periodStartMs: DAY, filedBy: 'finance' }),
    ).rejects.toMatchObject({
      name: 'NotPublishedError',
      code: 'SL-QUERY-002',
      why: 'it is still provisional',
      period: { type: 'day', startMs: DAY },
    });
    await expect(
      warehouse.fileCurrent({ periodType: 'week', periodStartMs: weekStart(DAY), filedBy: 'x' }),
    ).rejects.toThrow(
      '[SL-QUERY-002] cannot file week 2026-03-23T00:00:00Z: no published version (it has no number at all)',
    );
    expect(await warehouse.listFilings()).toEqual([]);
    await warehouse.close();
  });

  it('refuses a filer or note it could never list or change: too long, a NUL, a lone surrogate', async () => {
    const warehouse = await openFresh();
    await warehouse.publish({ versions: [version()], provisional: [] }, FENCE);
    const day = { periodType: 'day' as const, periodStartMs: DAY };
    const refused: Array<[{ filedBy: string; note?: string }, string]> = [
      [{ filedBy: ' ' }, 'filed_by is empty'],
      [{ filedBy: 'é'.repeat(129) }, 'filed_by is 258 bytes long, above the limit of 256'],
      [
        { filedBy: 'x', note: 'n'.repeat(4097) },
        'note is 4097 bytes long, above the limit of 4096',
      ],
      [{ filedBy: 'fin\u0000ance' }, 'filed_by holds a NUL character'],
      [{ filedBy: 'x', note: 'a \uDC00 b' }, 'note is not well-formed Unicode (a lone surrogate)'],
    ];

    for (const [text, problem] of refused) {
      await expect(warehouse.fileCurrent({ ...day, ...text })).rejects.toMatchObject({
        name: 'InvalidFilingError',
        code: 'SL-QUERY-001',
        message: `[SL-QUERY-001] cannot file day 2026-03-24T00:00:00Z: ${problem}`,
      });
    }
    expect(await warehouse.listFilings()).toEqual([]);

    // At the limits, and with a whole surrogate pair, it files.
    const filing = await warehouse.fileCurrent({
      ...day,
      filedBy: 'é'.repeat(128),
      note: `${'n'.repeat(4092)}\u{1F600}`,
    });
    expect(filing).toMatchObject({ filedBy: 'é'.repeat(128), version: 1 });
    await warehouse.close();
  });

  it('has the database refuse changes to filings and to the history', async () => {
    const place = await backend.place();
    const warehouse = await Warehouse.open(place);
    await warehouse.publish({ versions: [version()], provisional: [] }, FENCE);
    await warehouse.fileCurrent({ periodType: 'day', periodStartMs: DAY, filedBy: 'finance' });
    await warehouse.close();

    const client = await backend.rawClient(place);
    try {
      await expect(client.query('UPDATE filing SET distinct_users = 1')).rejects.toThrow(
        'filings are immutable',
      );
      await expect(client.query('DELETE FROM filing')).rejects.toThrow('filings are immutable');
      await expect(client.exec('TRUNCATE filing')).rejects.toThrow('filings are immutable');
      await expect(client.query('UPDATE period_version SET distinct_users = 1')).rejects.toThrow(
        'period versions are append-only',
      );
      await expect(client.query('DELETE FROM period_version')).rejects.toThrow(
        'period versions are append-only',
      );
      await expect(
        client.query(
          `INSERT INTO filing (period_type, period_start, version, distinct_users, filed_by)
           SELECT period_type, period_start, version, 99, 'forger' FROM period_version`,
        ),
      ).rejects.toThrow(/says 99 users, the version says 100/);
      await expect(
        client.query(
          `INSERT INTO filing (period_type, period_start, version, distinct_users, filed_by)
           SELECT period_type, period_start, 2, 100, 'forger' FROM period_version`,
        ),
      ).rejects.toThrow(/foreign key/);

      const rows = await client.query<{ filed_by: string; distinct_users: unknown }>(
        'SELECT filed_by, distinct_users FROM filing',
      );
      expect(rows.map((row) => [row.filed_by, Number(row.distinct_users)])).toEqual([
        ['finance', 100],
      ]);
    } finally {
      await client.close();
    }
  });

  it('has the database refuse a stale fencing token', async () => {
    const place = await backend.place();
    const warehouse = await Warehouse.open(place);
    const batch = { versions: [version()], provisional: [] };

    await warehouse.claimFence({ ringEpoch: 2, fencingToken: 5 });
    await expect(warehouse.publish(batch, { ringEpoch: 2, fencingToken: 4 })).rejects.toThrow(
      'stale fencing token 4: the writer fence is at 5',
    );
    expect(await warehouse.queryHistory()).toEqual([]);

    await warehouse.publish(batch, { ringEpoch: 2, fencingToken: 5 });
    expect(await warehouse.queryHistory()).toMatchObject([{ version: 1, fencingToken: 5 }]);

    // A claim below the fence is refused, names both tokens, and leaves the fence as it was.
    const refused = warehouse.claimFence({ ringEpoch: 1, fencingToken: 3 });
    await expect(refused).rejects.toBeInstanceOf(StaleFenceError);
    await expect(refused).rejects.toThrow(
      /^\[SL-SINK-001\] stale fencing token 3: the writer fence is at 5, claimed by a newer writer$/,
    );
    await warehouse.claimFence({ ringEpoch: 2, fencingToken: 5 }); // the same token again
    const provisional = [{ periodType: 'hour' as const, periodStartMs: DAY, distinctUsers: 1 }];
    await expect(
      warehouse.publish(
        { versions: [], provisional: provisional.map((row) => ({ ...row, watermarkMs: DAY })) },
        { ringEpoch: 1, fencingToken: 4 },
      ),
    ).rejects.toThrow('stale fencing token');
    await warehouse.close();

    // A deposed leader that skips the warehouse and writes rows itself is refused as well.
    const client = await backend.rawClient(place);
    try {
      await expect(
        client.query(
          `INSERT INTO period_version (period_type, period_start, version, distinct_users, status,
             reason, watermark, ring_epoch, fencing_token)
           VALUES ('day', now(), 1, 1, 'final', 'raw', now(), 1, 4)`,
        ),
      ).rejects.toThrow('stale fencing token 4');
      await expect(
        client.query(
          `INSERT INTO period_current (period_type, period_start, distinct_users, version, status,
             watermark, ring_epoch, fencing_token)
           VALUES ('day', now(), 1, 0, 'provisional', now(), 1, 4)`,
        ),
      ).rejects.toThrow('stale fencing token 4');
      await expect(client.query('UPDATE period_current SET fencing_token = 4')).rejects.toThrow(
        'stale fencing token 4',
      );
      await expect(client.query('UPDATE writer_fence SET fencing_token = 1')).rejects.toThrow(
        'the fencing token cannot be lowered from 5 to 1',
      );
    } finally {
      await client.close();
    }
  });

  it.runIf(backend.kind === 'postgres')(
    'makes a fence claim wait for a publish that has passed the fence check',
    async () => {
      const place = await backend.place();
      const warehouse = await Warehouse.open(place);
      const deposed = await backend.rawClient(place);
      let claimed = false;
      let claim: Promise<void> = Promise.resolve();

      try {
        await deposed.transaction(async (tx) => {
          await tx.query('SELECT assert_writer_fence(1)');
          claim = warehouse.claimFence({ ringEpoch: 2, fencingToken: 2 }).then(() => {
            claimed = true;
          });
          await new Promise((resolve) => setTimeout(resolve, 300));
          expect(claimed).toBe(false);

          await tx.query(
            `INSERT INTO period_version (period_type, period_start, version, distinct_users,
               status, reason, watermark, ring_epoch, fencing_token)
             VALUES ('day', to_timestamp(${DAY / 1000}), 1, 100, 'final', 'closed', now(), 1, 1)`,
          );
        });
        await claim;

        expect(claimed).toBe(true);
        expect(await warehouse.queryHistory()).toMatchObject([{ version: 1, fencingToken: 1 }]);
        await expect(warehouse.publish({ versions: [], provisional: [] }, FENCE)).rejects.toThrow(
          'stale fencing token 1: the writer fence is at 2',
        );
      } finally {
        await deposed.close();
        await warehouse.close();
      }
    },
  );

  it('records each dead letter once and summarizes them per reason', async () => {
    const warehouse = await openFresh();
    const first = [
      reject(1),
      reject(2),
      reject(3),
      reject(4),
      reject(7, { reason: 'invalid_time', detail: 'no event time', raw: 'nul \u0000 byte' }),
    ];

    await warehouse.recordRejects(first);
    await warehouse.recordRejects([...first, reject(9, { reason: 'future' }), reject(9)]);
    await warehouse.recordRejects([reject(1, { source: 'other.csv', reason: 'malformed' })]);

    const summary = await warehouse.rejectSummary(2);
    expect(summary.counts).toEqual({
      invalid_user_id: 4,
      invalid_time: 1,
      future: 1,
      malformed: 1,
    });
    expect(summary.examples.invalid_user_id).toEqual([reject(1), reject(2)]);
    expect(summary.examples.invalid_time).toEqual([
      reject(7, { reason: 'invalid_time', detail: 'no event time', raw: 'nul \uFFFD byte' }),
    ]);
    expect(summary.examples.malformed).toEqual([
      reject(1, { source: 'other.csv', reason: 'malformed' }),
    ]);
    expect(summary.examples.too_old).toBeUndefined();

    expect((await warehouse.rejectSummary()).examples.invalid_user_id).toHaveLength(3);
    await warehouse.close();
  });

  it('keeps another event recorded under a (source, line) already used beside the first', async () => {
    const warehouse = await openFresh();
    // A client that reused a batch id: line 1 of `svc#dup-1` is two different events.
    const first = reject(1, { source: 'svc#dup-1', raw: '{"user_id":""}' });
    const other = reject(1, {
      source: 'svc#dup-1',
      reason: 'too_old',
      detail: 'far behind the watermark',
      raw: '{"user_id":"victim","event_time_ms":1000}',
    });

    await warehouse.recordRejects([first]);
    await warehouse.recordRejects([other, first]);
    await warehouse.recordRejects([other]);

    const summary = await warehouse.rejectSummary(5);
    expect(summary.counts).toEqual({ invalid_user_id: 1, too_old: 1 });
    expect(summary.examples).toEqual({ invalid_user_id: [first], too_old: [other] });
    await warehouse.close();
  });

  it('keeps the dead letter of the longest source and batch id an ingest request may carry', async () => {
    const warehouse = await openFresh();
    // Random text, so that PostgreSQL cannot compress the key below the index's limit.
    const text = (bytes: number): string => randomBytes(bytes).toString('base64').slice(0, bytes);
    // An event without a line is kept under `<source>#<batch_id>`.
    const source = `${text(MAX_SOURCE_BYTES)}#${text(MAX_BATCH_ID_BYTES)}`;

    await warehouse.recordRejects([reject(1, { source })]);

    const summary = await warehouse.rejectSummary(1);
    expect(summary.examples.invalid_user_id).toEqual([reject(1, { source })]);
    await warehouse.close();
  });

  it('publishes 40,000 versions in one batch', async () => {
    const warehouse = await openFresh();
    const start = Date.UTC(2021, 0, 4);
    const versions = Array.from({ length: 40_000 }, (_, index) =>
      version({ periodType: 'hour', periodStartMs: start + index * HOUR_MS, distinctUsers: index }),
    );
    const provisional = [
      { periodType: 'week' as const, periodStartMs: start, distinctUsers: 9, watermarkMs: start },
    ];

    await warehouse.publish({ versions, provisional }, FENCE);
    await warehouse.publish({ versions, provisional }, FENCE);

    const published = await warehouse.loadPublished();
    expect(published.size).toBe(40_000);
    expect(published.get(`hour:${start + 39_999 * HOUR_MS}`)).toEqual({
      version: 1,
      distinctUsers: 39_999,
    });

    const current = await warehouse.queryCurrent();
    expect(current).toHaveLength(40_001);
    expect(current.at(-1)).toMatchObject({ periodType: 'week', status: 'provisional' });
    await warehouse.close();
  });

  it('keeps its data across a reopen and filters queries by range', async () => {
    const place = await backend.place();
    const warehouse = await Warehouse.open(place);
    const week = weekStart(DAY);
    await warehouse.publish(
      {
        versions: [
          version({ periodType: 'week', periodStartMs: week, distinctUsers: 900 }),
          version({ periodStartMs: DAY + DAY_MS }),
          version(),
          version({ periodType: 'hour', periodStartMs: DAY + HOUR_MS, distinctUsers: 3 }),
          version({ periodType: 'hour', periodStartMs: DAY, distinctUsers: 2 }),
          version({ periodType: 'week', periodStartMs: week + WEEK_MS, distinctUsers: 950 }),
        ],
        provisional: [],
      },
      { ringEpoch: 1, fencingToken: 9 },
    );
    await warehouse.claimFence({ ringEpoch: 1, fencingToken: 9 });
    await warehouse.fileCurrent({ periodType: 'week', periodStartMs: week, filedBy: 'finance' });
    await warehouse.recordRejects([reject(1)]);
    const before = {
      current: await warehouse.queryCurrent(),
      history: await warehouse.queryHistory(),
      filings: await warehouse.listFilings(),
      rejects: await warehouse.rejectSummary(),
    };
    await warehouse.close();
    await warehouse.close();

    const reopened = await Warehouse.open(place);
    expect(await reopened.queryCurrent()).toEqual(before.current);
    expect(await reopened.queryHistory()).toEqual(before.history);
    expect(await reopened.listFilings()).toEqual(before.filings);
    expect(await reopened.rejectSummary()).toEqual(before.rejects);
    await expect(reopened.publish({ versions: [], provisional: [] }, FENCE)).rejects.toThrow(
      'stale fencing token',
    );

    const current = await reopened.queryCurrent();
    expect(current.map((row) => `${row.periodType}:${row.periodStartMs}`)).toEqual([
      `hour:${DAY}`,
      `hour:${DAY + HOUR_MS}`,
      `day:${DAY}`,
      `day:${DAY + DAY_MS}`,
      `week:${week}`,
      `week:${week + WEEK_MS}`,
    ]);
    const days = await reopened.queryHistory({
      periodType: 'day',
      fromMs: DAY,
      toMs: DAY + DAY_MS,
    });
    expect(days.map((row) => row.periodStartMs)).toEqual([DAY]);
    const fromSecondDay = await reopened.queryCurrent({ fromMs: DAY + DAY_MS });
    expect(fromSecondDay.map((row) => row.periodType)).toEqual(['day', 'week']);
    await reopened.close();
  });

  it('answers ranges with bounds beyond any period (int64 extremes) as they filter, never failing', async () => {
    const warehouse = await Warehouse.open(await backend.place());
    await warehouse.publish(
      {
        versions: [version(), version({ periodType: 'hour', periodStartMs: DAY })],
        provisional: [],
      },
      FENCE,
    );
    const everything = await warehouse.queryHistory();
    expect(everything).toHaveLength(2);
    // Bounds a client may send as "no limit": int64's extremes, and JS Date's.
    const farPast = -(2 ** 63);
    const farFuture = 2 ** 63;

    expect(await warehouse.queryHistory({ fromMs: farPast, toMs: farFuture })).toEqual(everything);
    expect(await warehouse.queryCurrent({ fromMs: -8.64e15, toMs: 8.64e15 })).toHaveLength(2);
    expect(await warehouse.queryCurrent({ fromMs: farFuture })).toEqual([]);
    expect(await warehouse.queryCurrent({ toMs: farPast })).toEqual([]);
    expect(await warehouse.queryHistory({ periodType: 'day', fromMs: 8.64e15 })).toEqual([]);
    await warehouse.close();
  });
});

describe('Warehouse.open', () => {
  it('needs exactly one of dataDir and postgresUrl', async () => {
    await expect(Warehouse.open({})).rejects.toThrow('exactly one of dataDir and postgresUrl');
    await expect(
      Warehouse.open({ dataDir: '/nonexistent', postgresUrl: 'postgres://localhost/x' }),
    ).rejects.toThrow('exactly one of dataDir and postgresUrl');
    await expect(Warehouse.open({ dataDir: '/nonexistent', schema: 'x' })).rejects.toThrow(
      'schema applies to postgresUrl only',
    );
  });
});
