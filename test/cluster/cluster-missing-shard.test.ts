/**
 * A shard that is out when a window closes, in a local cluster of real processes (etcd,
 * three `speedlayer shard --postgres --watermark receive-time`, two `speedlayer
 * coordinator`, P = 6, rounds every 200 ms) on the real PostgreSQL server (skipped
 * without SPEEDLAYER_TEST_POSTGRES_URL). The test is the client: it sends events with
 * their receive times and moves the node's clock with a batch's clock_ms, so every close
 * point is its own. Scenario:
 * - with every shard up, the first hours close and are published exactly as version 1;
 * - shard-3 stops (SIGTERM); the clock passes the close of hour 23:00 and of the day;
 *   the other partitions report past it, and for several rounds after that no version
 *   of either period is written; Coordinator.Status (`speedlayer status --target`, over
 *   gRPC) lists shard-3's partitions as missing and `--check` exits 3; the leader's log
 *   names shard-3; the metrics endpoint shows the missing count;
 * - shard-3 comes back: the batch that waited for it is acknowledged, and the hour and
 *   the day are published as version 1 with the brute-force count; nothing is missing.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { LocalCluster } from '../../cluster/local-cluster.js';
import { silentLogger } from '../../src/observability/index.js';
import type { VersionRow } from '../../src/sink/index.js';
import { Warehouse } from '../../src/sink/warehouse.js';
import { IngestClient } from '../../src/transport/ingest-client.js';
import type { EventBatchRequestWire } from '../../src/transport/proto.js';
import { fetchStatus } from '../../src/transport/status-client.js';
import type { StatusView } from '../../src/transport/status-service.js';
import { eventually, periodKeyOf, runSpeedlayer } from '../support/cluster-runs.js';
import { rng, type TestEvent } from '../support/events.js';
import { bruteForceCounts } from '../support/oracle.js';
import { postgresTestUrl } from '../support/postgres.js';

const P = 6;
const MIN = 60_000;
const HOUR = 60 * MIN;
const ROUND_MS = 200;
/** Monday 2026-03-23; the hours are 21:00, 22:00 and 23:00, then the day ends. */
const MONDAY = Date.UTC(2026, 2, 23);
const H21 = MONDAY + 21 * HOUR;
const H23 = MONDAY + 23 * HOUR;
const TUESDAY = MONDAY + 24 * HOUR;
const LATENESS = 10 * MIN;
const postgresUrl = postgresTestUrl();

let cluster: LocalCluster | undefined;
let warehouse: Warehouse | undefined;
let client: IngestClient | undefined;
let batchNumber = 0;

beforeAll(async () => {
  if (postgresUrl === undefined) return;
  cluster = await LocalCluster.start({
    shards: 3,
    partitions: P,
    port: 0,
    postgresUrl,
    watermark: 'receive-time',
    roundIntervalMs: ROUND_MS,
    leaseTtlMs: 3000,
  });
  warehouse = await Warehouse.open({ postgresUrl, schema: cluster.postgresSchema });
  client = new IngestClient(cluster.addresses.ingest, silentLogger());
}, 90_000);

afterAll(async () => {
  client?.close();
  await warehouse?.close();
  await cluster?.stop();
}, 60_000);

/** `users` users, two events each on average, received as they happen, in [from, to). */
function events(seed: number, prefix: string, users: number, fromMs: number, toMs: number) {
  const next = rng(seed);
  return Array.from({ length: users * 2 }, (_, i): TestEvent => {
    const t = fromMs + Math.floor((i / (users * 2)) * (toMs - fromMs));
    return { userId: `${prefix}${Math.floor(next() * users)}`, eventMs: t, receiveMs: t };
  });
}

/** One batch of `list`, with the sender's clock at `clockMs`. */
function batch(list: readonly TestEvent[], clockMs: number): EventBatchRequestWire {
  batchNumber++;
  return {
    batch_id: `missing-shard-${batchNumber}`,
    source: 'cluster-missing-shard',
    events: list.map((e, i) => ({
      user_id: e.userId,
      event_time_ms: e.eventMs,
      received_time_ms: e.receiveMs,
      event_id: '',
      attributes: {},
      line: i + 1,
    })),
    unreadable: [],
    clock_ms: clockMs,
  };
}

async function versionsOf(keys: readonly string[]): Promise<VersionRow[]> {
  const rows = await (warehouse as Warehouse).queryHistory();
  return rows.filter((r) => keys.includes(periodKeyOf(r.periodType, r.periodStartMs)));
}

async function status(c: LocalCluster, leader: string): Promise<StatusView> {
  return fetchStatus(c.addresses.coordinators[leader]?.status as string);
}

async function missingMetric(c: LocalCluster, leader: string): Promise<number> {
  const text = await (await fetch(c.addresses.coordinators[leader]?.metrics as string)).text();
  const line = text.split('\n').find((l) => /^speedlayer_missing_partitions(\{.*\})? /.test(l));
  if (line === undefined) throw new Error(`no speedlayer_missing_partitions in:\n${text}`);

  return Number(line.split(' ').at(-1));
}

describe.skipIf(postgresUrl === undefined)('a shard out at a window close', () => {
  it('holds the numbers back while it is out, and publishes them exactly as version 1 after', async () => {
    const c = cluster as LocalCluster;
    const ingest = client as IngestClient;
    const sent: TestEvent[] = [];
    const send = async (list: TestEvent[], clockMs: number): Promise<void> => {
      sent.push(...list);
      const totals = await ingest.send([batch(list, clockMs)]);
      expect(totals.accepted).toBe(list.length);
    };

    // Every shard up: 21:00 and 22:00 close and are published exactly.
    const early = [`hour,${iso(H21)}`, `hour,${iso(H21 + HOUR)}`];
    await send(events(1, 'a-', 150, H21, H23), H23 - MIN);
    await send(events(2, 'b-', 150, H23, H23 + 50 * MIN), H23 + 50 * MIN);
    const firstRows = await eventually('version 1 of 21:00 and 22:00', async () => {
      const rows = await versionsOf(early);
      return rows.length === 2 ? rows : undefined;
    });
    const truth = bruteForceCounts(sent);
    for (const row of firstRows) {
      expect(row.version).toBe(1);
      expect(row.distinctUsers).toBe(truth.get(periodKeyOf(row.periodType, row.periodStartMs)));
    }

    // shard-3 stops; the clock passes the close of 23:00 and of Monday.
    const leader = (await c.leader()) as string;
    const serving = c
      .process('shard-3')
      .lines()
      .find((l) => l.msg === 'shard serving');
    const out = [...((serving?.partitions as number[] | undefined) ?? [])].sort();
    expect(out.length).toBeGreaterThan(0);
    const leaderMark = c.process(leader).mark();
    expect(await c.kill('shard-3', 'SIGTERM')).toEqual({ code: 0, signal: null });
    const closing = [`hour,${iso(H23)}`, `day,${iso(MONDAY)}`];
    const closePoint = TUESDAY + LATENESS;
    const waiting = ingest.send([batch([], closePoint + 20 * MIN)]);

    const held = await eventually('the other partitions to report past the close', async () => {
      const view = await status(c, leader);
      const others = view.partitions.filter((p) => !out.includes(p.partition));
      const past = others.every((p) => p.watermarkMs !== undefined && p.watermarkMs >= closePoint);
      return past && others.length === P - out.length ? view : undefined;
    });
    expect([...held.missingPartitions].sort()).toEqual(out);
    await sleep(5 * ROUND_MS + 1000);
    expect(await versionsOf(closing)).toEqual([]);

    // Status over gRPC, as an operator reads it.
    const json = await runSpeedlayer([
      'status',
      '--target',
      c.addresses.coordinators[leader]?.status as string,
      '--format',
      'json',
    ]).done;
    expect(json.code, json.stderr).toBe(0);
    const view = JSON.parse(json.stdout) as StatusView & { heldBack: string | null };
    expect(view.leaderId).toBe(leader);
    expect([...view.missingPartitions].sort()).toEqual(out);
    for (const p of view.partitions) {
      expect(p.reported, `partition ${p.partition}`).toBe(!out.includes(p.partition));
      if (out.includes(p.partition)) expect(p.shardId).toBe('shard-3');
    }
    expect(view.heldBack).toMatch(/partitions? missing/);
    const check = await runSpeedlayer([
      'status',
      '--target',
      c.addresses.coordinators[leader]?.status as string,
      '--check',
    ]).done;
    expect(check.code).toBe(3);

    // The leader's log names the shard; its metrics count the missing partitions.
    const named = c
      .process(leader)
      .lines(leaderMark)
      .find((l) => l.msg === 'partitions missing: final and restated numbers held back');
    expect(named).toMatchObject({ shardId: 'shard-3' });
    expect([...((named?.partitions as number[] | undefined) ?? [])].sort()).toEqual(out);
    expect(await missingMetric(c, leader)).toBe(out.length);
    expect(await versionsOf(closing)).toEqual([]);

    // shard-3 returns: the waiting batch is acknowledged, and the numbers are exact.
    await c.restart('shard-3');
    expect((await waiting).batches).toBe(1);
    const rows = await eventually('version 1 of 23:00 and Monday', async () => {
      const found = await versionsOf(closing);
      return found.length === 2 ? found : undefined;
    });
    for (const row of rows) {
      expect(row.version).toBe(1);
      expect(row.status).toBe('final');
      expect(row.distinctUsers).toBe(truth.get(periodKeyOf(row.periodType, row.periodStartMs)));
    }
    await sleep(5 * ROUND_MS);
    expect(await versionsOf(closing)).toHaveLength(2);
    const after = await eventually('nothing missing', async () => {
      const v = await status(c, leader);
      return v.missingPartitions.length === 0 ? v : undefined;
    });
    expect(after.partitions.every((p) => p.reported)).toBe(true);
    expect(await missingMetric(c, leader)).toBe(0);
  });
});

function iso(ms: number): string {
  return new Date(ms).toISOString().replace('.000Z', 'Z');
}
