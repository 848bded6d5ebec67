/**
 * A deposed leader that does not know it is deposed, in a local cluster of real
 * processes (etcd, two `speedlayer shard --postgres --watermark receive-time`, two
 * `speedlayer coordinator` that reach etcd through TCP proxies the test can freeze,
 * P = 4, rounds every 200 ms, leases of 3 s) on the real PostgreSQL server (skipped
 * without SPEEDLAYER_TEST_POSTGRES_URL). Scenario:
 * - the leader publishes an hour; then it is paused (SIGSTOP, between two of its rounds)
 *   and its traffic with etcd frozen, so that its lease expires and the standby takes
 *   over with a higher fencing token and publishes the next hour;
 * - the old leader is resumed (SIGCONT) with its etcd traffic still frozen, so that
 *   nothing from etcd tells it first: its next round has numbers to write and tries,
 *   and the database refuses them with 'stale fencing token' (its log line says so);
 * - no version row carries its token after the standby claimed the fence, the fence
 *   holds the standby's token, and the standby still leads once etcd is reachable again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { LocalCluster, type LogLine } from '../../cluster/local-cluster.js';
import { silentLogger } from '../../src/observability/index.js';
import type { VersionRow } from '../../src/sink/index.js';
import { Warehouse } from '../../src/sink/warehouse.js';
import { IngestClient } from '../../src/transport/ingest-client.js';
import type { EventBatchRequestWire } from '../../src/transport/proto.js';
import { fetchStatus } from '../../src/transport/status-client.js';
import { eventually, periodKeyOf } from '../support/cluster-runs.js';
import { rng, type TestEvent } from '../support/events.js';
import { bruteForceCounts } from '../support/oracle.js';
import { postgresTestUrl } from '../support/postgres.js';

const P = 4;
const MIN = 60_000;
const HOUR = 60 * MIN;
/** Monday 2026-03-23, 09:00. */
const H9 = Date.UTC(2026, 2, 23, 9);
const postgresUrl = postgresTestUrl();

let cluster: LocalCluster | undefined;
let warehouse: Warehouse | undefined;
let client: IngestClient | undefined;
let batchNumber = 0;

beforeAll(async () => {
  if (postgresUrl === undefined) return;
  cluster = await LocalCluster.start({
    shards: 2,
    partitions: P,
    port: 0,
    postgresUrl,
    watermark: 'receive-time',
    roundIntervalMs: 200,
    leaseTtlMs: 3000,
    etcdProxied: ['coordinator-1', 'coordinator-2'],
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
function events(seed: number, users: number, fromMs: number, toMs: number): TestEvent[] {
  const next = rng(seed);
  return Array.from({ length: users * 2 }, (_, i): TestEvent => {
    const t = fromMs + Math.floor((i / (users * 2)) * (toMs - fromMs));
    return { userId: `u-${seed}-${Math.floor(next() * users)}`, eventMs: t, receiveMs: t };
  });
}

function batch(list: readonly TestEvent[], clockMs: number): EventBatchRequestWire {
  batchNumber++;
  return {
    batch_id: `fencing-${batchNumber}`,
    source: 'cluster-fencing',
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

function hourKey(startMs: number): string {
  return periodKeyOf('hour', startMs);
}

async function history(): Promise<VersionRow[]> {
  return (warehouse as Warehouse).queryHistory();
}

async function version1Of(key: string): Promise<VersionRow> {
  return eventually(`version 1 of ${key}`, async () =>
    (await history()).find((r) => periodKeyOf(r.periodType, r.periodStartMs) === key),
  );
}

/**
 * SIGSTOPs the coordinator `name` just after one of its rounds ended (its Status says
 * so), so that it is asleep until its next round. Paused in the middle of a round, it
 * would finish that round on reports from before the pause when resumed, and could learn
 * that its lease ran out before it started another.
 */
async function pauseBetweenRounds(c: LocalCluster, name: string): Promise<void> {
  const address = c.addresses.coordinators[name]?.status as string;
  const before = (await fetchStatus(address)).lastRoundAtMs;
  const deadline = Date.now() + 10_000;
  while ((await fetchStatus(address)).lastRoundAtMs === before) {
    if (Date.now() > deadline) throw new Error(`${name} ran no round for 10 s`);
  }
  c.pause(name);
}

function token(line: LogLine): number {
  return Number(line.fencingToken);
}

describe.skipIf(postgresUrl === undefined)('a leader paused past its lease', () => {
  it('is refused by the database when it publishes after it resumes', async () => {
    const c = cluster as LocalCluster;
    const ingest = client as IngestClient;
    const sent: TestEvent[] = [];
    const send = async (list: TestEvent[], clockMs: number): Promise<void> => {
      sent.push(...list);
      expect((await ingest.send([batch(list, clockMs)])).accepted).toBe(list.length);
    };
    const old = (await c.leader()) as string;
    const standby = c.coordinators.find((name) => name !== old) as string;
    const oldToken = token(await c.waitForLog(old, (l) => l.msg === 'leadership acquired', 1000));

    // The leader publishes 09:00.
    await send(events(1, 120, H9, H9 + HOUR), H9 + HOUR + 15 * MIN);
    const first = await version1Of(hourKey(H9));
    expect(first.fencingToken).toBe(oldToken);

    // Paused and cut off from etcd: the standby takes over and publishes 10:00.
    const standbyMark = c.process(standby).mark();
    await pauseBetweenRounds(c, old);
    c.etcdLink(old).freeze();
    const acquired = await c.waitForLog(standby, (l) => l.msg === 'leadership acquired', {
      since: standbyMark,
      timeoutMs: 20_000,
    });
    const newToken = token(acquired);
    expect(newToken).toBeGreaterThan(oldToken);
    const claimedAtMs = Number(acquired.time);
    await send(events(2, 120, H9 + HOUR, H9 + 2 * HOUR), H9 + 2 * HOUR + 5 * MIN);
    // 11:00 stays open: a provisional number is due too, for the old leader as well.
    await send(events(3, 120, H9 + 2 * HOUR, H9 + 2 * HOUR + 30 * MIN), H9 + 2 * HOUR + 30 * MIN);
    const second = await version1Of(hourKey(H9 + HOUR));
    expect(second.fencingToken).toBe(newToken);
    expect(second.distinctUsers).toBe(bruteForceCounts(sent).get(hourKey(H9 + HOUR)));

    // Resumed with etcd still frozen: its next round writes, and the database refuses it.
    const oldMark = c.process(old).mark();
    c.resume(old);
    const refused = await c.waitForLog(
      old,
      (l) => l.msg === 'publish refused: a newer leader holds the writer fence',
      { since: oldMark, timeoutMs: 20_000 },
    );
    expect(refused.fencingToken).toBe(oldToken);
    expect((refused.err as { message?: string } | undefined)?.message).toContain(
      `stale fencing token ${oldToken}: the writer fence is at ${newToken}`,
    );
    c.etcdLink(old).thaw();

    // Nothing of the old leader after the claim; the standby's token holds the fence.
    const rows = await history();
    const late = rows.filter((r) => r.fencingToken === oldToken && r.writtenAtMs >= claimedAtMs);
    expect(late).toEqual([]);
    expect(
      rows.filter((r) => r.writtenAtMs >= claimedAtMs).every((r) => r.fencingToken === newToken),
    ).toBe(true);
    expect(new Set(rows.map((r) => r.fencingToken))).toEqual(new Set([oldToken, newToken]));
    expect(await c.leader()).toBe(standby);
    await c.waitForLog(old, (l) => l.msg === 'campaigning', { since: oldMark, timeoutMs: 20_000 });
    expect(await c.leader()).toBe(standby);
  });
});
