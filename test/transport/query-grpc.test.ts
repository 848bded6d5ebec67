/**
 * The Query gRPC service in process on 127.0.0.1:0 over a real warehouse: embedded
 * PGlite in a temp directory, and a real PostgreSQL server (fresh schema, dropped after)
 * when SPEEDLAYER_TEST_POSTGRES_URL is set. Scenarios:
 * - Current, History, ListFilings and Rejects answer with the rows the warehouse holds;
 * - CreateFiling files the current version; filing an unpublished or provisional period
 *   fails with FAILED_PRECONDITION and the SL-QUERY-002 detail, bad requests (a note
 *   over 4 KiB, a NUL, a lone surrogate among them) with INVALID_ARGUMENT;
 * - a reply larger than gRPC's default 4 MiB (over a thousand filings with long notes)
 *   reaches the client;
 * - WatchVersions delivers v1, v2 of one period and v1 of another exactly once while they
 *   are published, and replays them from since_written_at_ms;
 * - health checking reports SERVING, reflection lists speedlayer.v1.Query (and grpcurl
 *   does, when it is installed);
 * - close() is idempotent and ends open watches with a retryable UNAVAILABLE;
 * - `speedlayer query|filings|rejects --target` print what they print from the store.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DAY_MS, HOUR_MS } from '../../src/periods/index.js';
import {
  Warehouse,
  type PeriodRange,
  type VersionRow,
  type VersionWrite,
  type WriterFence,
} from '../../src/sink/index.js';
import {
  loadSpeedlayerProtos,
  type CreateFilingRequestWire,
  type QueryClient as QueryStub,
} from '../../src/transport/index.js';
import { QueryClient } from '../../src/transport/query-client.js';
import { QueryError } from '../../src/transport/query-errors.js';
import { readErrorDetail } from '../../src/transport/status-details.js';
import { startQueryServer, type QueryServer } from '../../src/transport/query-server.js';
import { runCli } from '../support/cli.js';
import { checkHealth, grpcurlList, hasGrpcurl, listServices } from '../support/grpc-probes.js';
import { warehouseBackends } from '../support/warehouse-places.js';

const backends = warehouseBackends('speedlayer-query-grpc-');

/** Monday 2026-03-23. */
const WEEK = Date.UTC(2026, 2, 23);
const DAY_A = WEEK;
const DAY_C = WEEK + 2 * DAY_MS;
/** The periods WatchVersions is tested on: a month no other test writes. */
const WATCHED: PeriodRange = { fromMs: Date.UTC(2026, 5, 1), toMs: Date.UTC(2026, 6, 1) };
const DAY_X = Date.UTC(2026, 5, 10);
const DAY_Y = Date.UTC(2026, 5, 11);
const FENCE: WriterFence = { ringEpoch: 2, fencingToken: 5 };
const POLL_MS = 40;

function version(overrides: Partial<VersionWrite> = {}): VersionWrite {
  return {
    periodType: 'day',
    periodStartMs: DAY_A,
    version: 1,
    distinctUsers: 100,
    status: 'final',
    reason: 'closed',
    watermarkMs: DAY_A + DAY_MS + HOUR_MS,
    ...overrides,
  };
}

/** Day A v1 and v2, an hour, a week, a provisional day C, and three dead letters. */
async function seed(warehouse: Warehouse): Promise<void> {
  await warehouse.claimFence(FENCE);
  await warehouse.publish(
    {
      versions: [
        version(),
        version({ periodType: 'hour', periodStartMs: DAY_A + 9 * HOUR_MS, distinctUsers: 40 }),
        version({ periodType: 'week', periodStartMs: WEEK, distinctUsers: 150 }),
      ],
      provisional: [
        { periodType: 'day', periodStartMs: DAY_C, distinctUsers: 7, watermarkMs: DAY_C + 60_000 },
      ],
    },
    FENCE,
  );
  await warehouse.publish(
    {
      versions: [version({ version: 2, distinctUsers: 104, status: 'restated', reason: 'late' })],
      provisional: [],
    },
    FENCE,
  );
  await warehouse.recordRejects([
    { source: 'a.ndjson', line: 3, reason: 'invalid_user_id', detail: 'empty', raw: '{}' },
    { source: 'a.ndjson', line: 5, reason: 'invalid_user_id', detail: 'empty', raw: '{"u":""}' },
    { source: 'a.ndjson', line: 8, reason: 'invalid_time', detail: 'unreadable', raw: '{"t":1}' },
  ]);
}

/** Resolves once `done()` holds, polling every 10 ms, or fails after `timeoutMs`. */
async function waitFor(done: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await sleep(10);
  }
}

/** Calls CreateFiling on a bare stub and returns the failure it must end with. */
function createFilingFailure(
  stub: QueryStub,
  request: CreateFilingRequestWire,
): Promise<grpc.ServiceError> {
  return new Promise((resolve, reject) => {
    stub.CreateFiling(request, (error) =>
      error === null ? reject(new Error('CreateFiling succeeded')) : resolve(error),
    );
  });
}

const label = (rows: readonly VersionRow[]): string[] =>
  rows.map((r) => `${r.periodType} ${new Date(r.periodStartMs).toISOString()} v${r.version}`);

describe.each(backends)('Query service on $kind', (backend) => {
  let warehouse: Warehouse;
  let server: QueryServer;
  let client: QueryClient;

  beforeAll(async () => {
    warehouse = await Warehouse.open((await backend.place()).options);
    await seed(warehouse);
    server = await startQueryServer({ warehouse, pollIntervalMs: POLL_MS });
    client = await QueryClient.connect(server.address);
  });

  afterAll(async () => {
    client?.close();
    await server?.close();
    await warehouse?.close();
    await backend.tearDown();
  });

  it('answers Current and History with the rows the warehouse holds', async () => {
    const current = await client.current();

    expect(current).toEqual(await warehouse.queryCurrent());
    expect(current.map((r) => [r.periodType, r.distinctUsers, r.version, r.status])).toEqual([
      ['hour', 40, 1, 'final'],
      ['day', 104, 2, 'restated'],
      ['day', 7, 0, 'provisional'],
      ['week', 150, 1, 'final'],
    ]);

    const days = { periodType: 'day', fromMs: DAY_A, toMs: DAY_A + DAY_MS } as const;
    const history = await client.history(days);

    expect(history).toEqual(await warehouse.queryHistory(days));
    expect(history.map((r) => [r.version, r.distinctUsers, r.reason, r.fencingToken])).toEqual([
      [1, 100, 'closed', 5],
      [2, 104, 'late', 5],
    ]);
  });

  it('files the current version and lists the filing beside the current number', async () => {
    const filing = await client.file({
      periodType: 'day',
      periodStartMs: DAY_A,
      filedBy: 'finance',
      note: 'Q1 deck',
    });

    expect(filing).toMatchObject({ version: 2, distinctUsers: 104, filedBy: 'finance' });
    expect(filing.note).toBe('Q1 deck');

    const filings = await client.filings();

    expect(filings).toEqual(await warehouse.listFilings());
    expect(filings.at(-1)).toMatchObject({ filingId: filing.filingId, difference: 0 });
  });

  it('answers Rejects with the counts and examples of each reason', async () => {
    const summary = await client.rejects(1);

    expect(summary).toEqual(await warehouse.rejectSummary(1));
    expect(summary.counts).toEqual({ invalid_user_id: 2, invalid_time: 1 });
    expect(summary.examples.invalid_user_id?.map((e) => e.line)).toEqual([3]);
  });

  it('refuses to file an unpublished period with FAILED_PRECONDITION and SL-QUERY-002', async () => {
    const stub = new (loadSpeedlayerProtos().query.Client)(
      server.address,
      grpc.credentials.createInsecure(),
    );
    try {
      const error = await createFilingFailure(stub, {
        period: { type: 'PERIOD_TYPE_DAY', start_ms: DAY_A + 5 * DAY_MS },
        filed_by: 'finance',
      });

      expect(error.code).toBe(grpc.status.FAILED_PRECONDITION);
      expect(readErrorDetail(error.metadata)).toMatchObject({
        code: 'SL-QUERY-002',
        retryable: false,
        message: expect.stringContaining('no published version (it has no number at all)'),
      });
    } finally {
      stub.close();
    }

    const provisional = client.file({ periodType: 'day', periodStartMs: DAY_C, filedBy: 'x' });

    await expect(provisional).rejects.toBeInstanceOf(QueryError);
    await expect(provisional).rejects.toMatchObject({
      kind: 'not-published',
      code: 'SL-QUERY-002',
      grpcStatus: grpc.status.FAILED_PRECONDITION,
      message:
        '[SL-QUERY-002] cannot file day 2026-03-25T00:00:00Z: no published version (it is still provisional)',
    });
  });

  it('refuses malformed requests with INVALID_ARGUMENT and their codes', async () => {
    await expect(
      client.file({ periodType: 'day', periodStartMs: DAY_A, filedBy: '  ' }),
    ).rejects.toMatchObject({ kind: 'invalid-argument', code: 'SL-QUERY-001' });
    await expect(
      client.file({ periodType: 'day', periodStartMs: DAY_A + HOUR_MS, filedBy: 'x' }),
    ).rejects.toMatchObject({ kind: 'invalid-argument', code: 'SL-QUERY-001' });
    await expect(client.rejects(5000)).rejects.toMatchObject({
      grpcStatus: grpc.status.INVALID_ARGUMENT,
      code: 'SL-QUERY-001',
    });

    // Filings never change: a text that would break listing them, or that PostgreSQL
    // cannot hold, is refused before anything is filed.
    const filedBefore = (await warehouse.listFilings()).length;
    const day = { periodType: 'day' as const, periodStartMs: DAY_A };
    const refusals: Array<[{ filedBy: string; note?: string }, string]> = [
      [
        { filedBy: 'finance', note: 'n'.repeat(100_000) },
        'note is 100000 bytes long, above the limit of 4096',
      ],
      [{ filedBy: 'f'.repeat(257) }, 'filed_by is 257 bytes long, above the limit of 256'],
      [{ filedBy: 'fin\u0000x' }, 'filed_by holds a NUL character'],
    ];
    for (const [text, problem] of refusals) {
      await expect(client.file({ ...day, ...text })).rejects.toMatchObject({
        kind: 'invalid-argument',
        code: 'SL-QUERY-001',
        message: `[SL-QUERY-001] cannot file day 2026-03-23T00:00:00Z: ${problem}`,
      });
    }
    expect(await warehouse.listFilings()).toHaveLength(filedBefore);

    const stub = new (loadSpeedlayerProtos().query.Client)(
      server.address,
      grpc.credentials.createInsecure(),
    );
    try {
      const error = await createFilingFailure(stub, {
        period: { type: 'PERIOD_TYPE_UNSPECIFIED', start_ms: DAY_A },
        filed_by: 'x',
      });

      expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(readErrorDetail(error.metadata)?.code).toBe('SL-WIRE-001');

      // Days far beyond the years of event times, even past PostgreSQL's timestamps.
      for (const days of [100_000_000_000, 3_000_000, -1_000_000]) {
        const far = await createFilingFailure(stub, {
          period: { type: 'PERIOD_TYPE_DAY', start_ms: days * DAY_MS },
          filed_by: 'finance',
        });

        expect(far.code).toBe(grpc.status.INVALID_ARGUMENT);
        expect(readErrorDetail(far.metadata)?.code).toBe('SL-QUERY-001');
      }
    } finally {
      stub.close();
    }
  });

  it('streams each newly published version exactly once, and replays them from an instant', async () => {
    const received: VersionRow[] = [];
    const errors: unknown[] = [];
    let ready = false;
    const cancel = client.watch((row) => received.push(row), {
      range: WATCHED,
      onReady: () => (ready = true),
      onError: (error) => errors.push(error),
    });
    try {
      await waitFor(() => ready);

      const x1 = version({ periodStartMs: DAY_X, distinctUsers: 10 });
      await warehouse.publish({ versions: [x1], provisional: [] }, FENCE);
      await waitFor(() => received.length >= 1);
      const x2 = version({
        periodStartMs: DAY_X,
        version: 2,
        distinctUsers: 12,
        status: 'restated',
      });
      const y1 = version({ periodStartMs: DAY_Y, distinctUsers: 20 });
      await warehouse.publish({ versions: [y1, x2], provisional: [] }, FENCE);
      // A retried publish of a version that exists writes nothing.
      await warehouse.publish({ versions: [x1], provisional: [] }, FENCE);
      await waitFor(() => received.length >= 3);
      await sleep(6 * POLL_MS);
    } finally {
      cancel();
    }

    const history = await warehouse.queryHistory(WATCHED);

    expect(errors).toEqual([]);
    expect(label(received)).toEqual([
      'day 2026-06-10T00:00:00.000Z v1',
      'day 2026-06-10T00:00:00.000Z v2',
      'day 2026-06-11T00:00:00.000Z v1',
    ]);
    expect(received).toEqual(history);

    const replayed: VersionRow[] = [];
    const cancelReplay = client.watch((row) => replayed.push(row), {
      range: WATCHED,
      sinceWrittenAtMs: 0,
    });
    try {
      await waitFor(() => replayed.length >= 3);
      await sleep(4 * POLL_MS);
    } finally {
      cancelReplay();
    }

    expect(replayed).toEqual(received);
  });

  it('delivers a reply larger than the 4 MiB gRPC allows by default', async () => {
    const note = 'n'.repeat(4096);
    const before = (await warehouse.listFilings()).length;
    for (let i = 0; i < 1100; i++) {
      await warehouse.fileCurrent({
        periodType: 'week',
        periodStartMs: WEEK,
        filedBy: `f${i}`,
        note,
      });
    }

    const filings = await client.filings();

    expect(filings).toHaveLength(before + 1100);
    expect(filings.at(-1)).toMatchObject({ filedBy: 'f1099', note, periodStartMs: WEEK });
  });

  it('serves health checking and reflection', async () => {
    await expect(checkHealth(server.address, 'speedlayer.v1.Query')).resolves.toBe('SERVING');
    await expect(checkHealth(server.address, '')).resolves.toBe('SERVING');
    await expect(listServices(server.address)).resolves.toEqual([
      'grpc.health.v1.Health',
      'speedlayer.v1.Query',
    ]);
  });

  it.skipIf(!hasGrpcurl())('is listed by grpcurl', async () => {
    await expect(grpcurlList(server.address)).resolves.toContain('speedlayer.v1.Query');
  });

  it('closes idempotently and ends open watches with a retryable UNAVAILABLE', async () => {
    const other = await startQueryServer({ warehouse, pollIntervalMs: POLL_MS });
    const otherClient = await QueryClient.connect(other.address);
    const errors: unknown[] = [];
    let ready = false;
    otherClient.watch(() => {}, {
      onReady: () => (ready = true),
      onError: (error) => errors.push(error),
    });
    await waitFor(() => ready);

    await Promise.all([other.close(), other.close()]);
    await other.close();
    await waitFor(() => errors.length > 0);

    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({
      kind: 'unavailable',
      code: 'SL-QUERY-003',
      retryable: true,
      grpcStatus: grpc.status.UNAVAILABLE,
    });
    otherClient.close();
    otherClient.close();
    await expect(
      QueryClient.connect(other.address, { connectTimeoutMs: 300 }),
    ).rejects.toMatchObject({ kind: 'unavailable', code: 'SL-QUERY-003' });
  });

  it('prints through --target what the commands print from the store', async () => {
    const place = await backend.place();
    const seeded = await Warehouse.open(place.options);
    await seed(seeded);
    await seeded.fileCurrent({ periodType: 'week', periodStartMs: WEEK, filedBy: 'finance' });
    await seeded.close();

    const commands = [
      ['query', '--format', 'csv'],
      ['query', '--history', '--format', 'csv'],
      ['query', '--period', 'day', '--format', 'table'],
      ['filings', '--format', 'csv'],
    ];
    const local = [];
    for (const args of commands) local.push(await runCli([...args, ...place.flags]));
    const localRejects = await runCli(['rejects', '--format', 'json', ...place.flags]);

    const served = await Warehouse.open(place.options);
    const target = await startQueryServer({ warehouse: served });
    try {
      for (const [i, args] of commands.entries()) {
        const remote = await runCli([...args, '--target', target.address]);

        expect(remote).toEqual(local[i]);
      }

      const remoteRejects = await runCli([
        'rejects',
        '--format',
        'json',
        '--target',
        target.address,
      ]);

      expect(remoteRejects.code).toBe(0);
      expect(JSON.parse(remoteRejects.stdout)).toEqual(JSON.parse(localRejects.stdout));

      const both = await runCli(['query', '--target', target.address, ...place.flags]);

      expect(both.code).toBe(2);
      expect(both.stderr).toContain('--target reads through the Query service');
    } finally {
      await target.close();
      await served.close();
    }

    expect(local[0]?.stdout).toBe(
      [
        'period_type,period_start,distinct_users,version,status',
        'hour,2026-03-23T09:00:00Z,40,1,final',
        'day,2026-03-23T00:00:00Z,104,2,restated',
        'day,2026-03-25T00:00:00Z,7,0,provisional',
        'week,2026-03-23T00:00:00Z,150,1,final',
        '',
      ].join('\n'),
    );
  });
});
