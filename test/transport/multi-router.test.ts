/**
 * Two nodes that both take Ingest and route to each other's partitions (P = 4, fixed
 * ring, event-time mode, partitions that stop counting a router after 1.5 s of silence).
 * A partition's watermark is the lowest mark of the routers that count, so:
 * - while one router races days ahead and the other is still sending the first day,
 *   nothing closes early: every period's first version equals the brute-force recount
 *   of both streams, and none is restated (each router repeats its mark while it has
 *   input, so the slow one keeps counting while it sends nothing new);
 * - the same when the slow router is busy sending to one partition only, with a mark
 *   that does not move: it repeats its mark to the partitions it sends nothing to;
 * - a router that falls silent without finishing (closed mid-stream) holds the periods
 *   after its mark back until the partitions stop counting it, then they close on the
 *   other router's mark; a partition host reopened from its store counts it again at
 *   first, from its durable mark.
 */
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';

import type { Coordinator } from '../../src/coordinator/coordinator.js';
import { createMetricsRegistry, silentLogger } from '../../src/observability/index.js';
import { PartitionHost } from '../../src/shard/partition-host.js';
import { hashUserId, partitionOf } from '../../src/shard/user-hash.js';
import type { VersionRow } from '../../src/sink/index.js';
import { Warehouse } from '../../src/sink/warehouse.js';
import { ShardMetrics } from '../../src/transport/shard-metrics.js';
import { IngestRouter } from '../../src/transport/ingest-router.js';
import { ingestService } from '../../src/transport/ingest-server.js';
import type { EventBatchRequestWire } from '../../src/transport/proto.js';
import { RingView } from '../../src/transport/routing-table.js';
import {
  DAY,
  HOUR,
  Ingest,
  MEMORY_BUDGET,
  NOW,
  P,
  RING,
  SETTINGS,
  TestShard,
  cleanups,
  fencedCoordinator,
  tempDir,
} from '../support/ingest-cluster.js';
import { bruteForceCounts, diffCounts, rowsToCounts } from '../support/oracle.js';

/** Monday 2026-03-23. */
const MONDAY = Date.UTC(2026, 2, 23);
const SILENCE_MS = 1_500;

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Event {
  readonly userId: string;
  readonly eventMs: number;
}

/** `n` events in time order over `days` days, users drawn from `users` (ids `prefix-k`). */
function stream(prefix: string, n: number, days: number, users: number): Event[] {
  const out: Event[] = [];
  for (let i = 0; i < n; i++) {
    const eventMs = MONDAY + Math.floor((i / n) * days * DAY);
    out.push({ userId: `${prefix}-${(i * 7919) % users}`, eventMs });
  }

  return out;
}

function requests(events: readonly Event[], size: number, prefix: string): EventBatchRequestWire[] {
  const out: EventBatchRequestWire[] = [];
  for (let start = 0, b = 0; start < events.length; start += size, b++) {
    out.push({
      batch_id: `${prefix}-${b}`,
      source: prefix,
      events: events.slice(start, start + size).map((e) => ({
        user_id: e.userId,
        event_time_ms: e.eventMs,
        received_time_ms: e.eventMs,
        event_id: '',
        attributes: {},
        line: 0,
      })),
      unreadable: [],
    });
  }

  return out;
}

/** Two nodes, each a shard with Ingest, a warehouse and a coordinator. */
async function twoNodes(dir: string): Promise<{
  nodes: { shard: TestShard; router: IngestRouter; ingest: Ingest }[];
  warehouse: Warehouse;
  coordinator: Coordinator;
  /** What shard-b's partition host logged, and its shard metrics. */
  bLog: Record<string, unknown>[];
  bMetrics: ShardMetrics;
}> {
  const bLog: Record<string, unknown>[] = [];
  const bMetrics = new ShardMetrics(createMetricsRegistry({ labels: { shard_id: 'shard-b' } }));
  const warehouse = await Warehouse.open({ dataDir: path.join(dir, 'warehouse') });
  cleanups.push(() => warehouse.close());
  const ring = new RingView({ ring: RING });
  const nodes: { shard: TestShard; router: IngestRouter; ingest: Ingest }[] = [];

  for (const id of ['shard-a', 'shard-b']) {
    const local: { shard?: TestShard } = {};
    const router = await IngestRouter.open({
      ...SETTINGS,
      nodeId: id,
      watermark: 'event-time',
      ring,
      localHost: () => local.shard?.server.host,
      deadLetters: warehouse,
      logger: silentLogger(),
      now: () => NOW,
      heartbeatMs: 250,
      delivery: { initialBackoffMs: 50, maxBackoffMs: 300 },
    });
    cleanups.push(() => router.close());
    const held = RING.owners.flatMap((owner, partition) => (owner === id ? [partition] : []));
    const logger =
      id === 'shard-b'
        ? pino({ level: 'info' }, { write: (line: string) => void bLog.push(JSON.parse(line)) })
        : silentLogger();
    local.shard = await TestShard.start(path.join(dir, id), held, {
      services: [ingestService({ router, logger: silentLogger() })],
      senderSilenceMs: SILENCE_MS,
      logger,
      ...(id === 'shard-b' ? { metrics: bMetrics } : {}),
    });
    nodes.push({ shard: local.shard, router, ingest: new Ingest(local.shard.address) });
  }
  ring.setAddresses(
    nodes.map(({ shard }, i) => ({
      shardId: i === 0 ? 'shard-a' : 'shard-b',
      address: shard.address,
    })),
  );

  const coordinator = await fencedCoordinator(
    warehouse,
    (owner) => nodes[owner === 'shard-a' ? 0 : 1]!.shard.address,
  );

  return { nodes, warehouse, coordinator, bLog, bMetrics };
}

async function routerGauge(metrics: ShardMetrics): Promise<Record<string, number>> {
  const gauge = await metrics.registry.getSingleMetric('speedlayer_shard_routers')?.get();

  return Object.fromEntries((gauge?.values ?? []).map((v) => [String(v.labels.state), v.value]));
}

/** The `skip`-th id `prefix-k` whose user falls into `partition`. */
function userIn(partition: number, prefix: string, skip = 0): string {
  const hash = { hi: 0, lo: 0 };
  for (let k = 0, found = 0; ; k++) {
    const id = `${prefix}-${k}`;
    hashUserId(id, hash);
    if (partitionOf(hash, P) === partition && found++ === skip) return id;
  }
}

function published(history: readonly VersionRow[]): string[] {
  return history.map((v) => `${v.periodType}@${new Date(v.periodStartMs).toISOString()}`);
}

describe('several routers', () => {
  it('closes no period while a slower router still sends for it on time', async () => {
    const dir = await tempDir('speedlayer-multi-router-');
    const { nodes, warehouse, coordinator } = await twoNodes(dir);
    const [a, b] = nodes as [(typeof nodes)[0], (typeof nodes)[0]];
    const fast = stream('fast', 3000, 3, 400);
    const slow = stream('slow', 3000, 3, 400).map((e, i) => ({
      // Half the slow stream's users are the fast one's too.
      userId: i % 2 === 0 ? `fast-${(i * 31) % 400}` : e.userId,
      eventMs: e.eventMs,
    }));
    // Both routers start at Monday 00:00 (a router's mark counts from its first batch),
    // then the fast one sends its three days while the slow one sends Monday's first
    // hours, and only then the rest.
    const fastBatches = requests(fast, 100, 'fast');
    const slowBatches = [
      ...requests(slow.slice(0, 5), 5, 'slow-first'),
      ...requests(slow.slice(5), 100, 'slow'),
    ];
    await b.ingest.send(slowBatches[0]!);
    await a.ingest.send(fastBatches[0]!);
    await b.ingest.send(slowBatches[1]!);
    for (const batch of fastBatches.slice(1)) await a.ingest.send(batch);
    await coordinator.round();
    // The slow router's mark (its last event less the 10-minute bound) holds every
    // partition back: only the hours that closed before it are published.
    const slowMarkMs = slow[104]!.eventMs - SETTINGS.maxOutOfOrdernessMs;
    const closedHours = Array.from({ length: 6 }, (_, h) => MONDAY + h * HOUR).filter(
      (hourMs) => hourMs + HOUR + SETTINGS.allowedLatenessMs <= slowMarkMs,
    );
    expect(closedHours.length).toBeGreaterThan(0);
    expect(published(await warehouse.queryHistory())).toEqual(
      closedHours.map((hourMs) => `hour@${new Date(hourMs).toISOString()}`),
    );

    for (const batch of slowBatches.slice(2)) await b.ingest.send(batch);
    await a.ingest.finish();
    await b.ingest.finish();
    await coordinator.round();

    const history = await warehouse.queryHistory();
    const expected = bruteForceCounts([...fast, ...slow]);
    expect(history.filter((v) => v.version > 1)).toEqual([]);
    expect(diffCounts(expected, rowsToCounts(history))).toEqual([]);
    expect(history).toHaveLength(expected.size);
  });

  it('keeps counting a router that sends to one partition only, on the others too', async () => {
    const dir = await tempDir('speedlayer-busy-router-');
    const { nodes, warehouse, coordinator } = await twoNodes(dir);
    const [a, b] = nodes as [(typeof nodes)[0], (typeof nodes)[0]];
    const fast = stream('fast', 3000, 3, 400);
    const hot = userIn(0, 'hot');
    // The slow router starts at Monday 00:00, then for longer than the silence sends one
    // user of partition 0 at 01:00 again and again: its mark stays at 00:50 and nothing
    // but those batches goes out to partition 0. Its last events, at 01:30, are on time
    // for partitions 1 to 3, which must have kept counting its mark meanwhile.
    const slow: Event[] = [{ userId: hot, eventMs: MONDAY }];
    const fastBatches = requests(fast, 100, 'fast');
    await b.ingest.send(requests(slow, 5, 'slow-first')[0]!);
    await a.ingest.send(fastBatches[0]!);
    const busyUntil = Date.now() + 3 * SILENCE_MS;
    const busy = (async () => {
      for (let i = 0; Date.now() < busyUntil; i++) {
        const repeat = { userId: hot, eventMs: MONDAY + HOUR };
        slow.push(repeat);
        await b.ingest.send(requests([repeat], 5, `slow-hot-${i}`)[0]!);
        await sleep(100);
      }
    })();
    for (const batch of fastBatches.slice(1)) await a.ingest.send(batch);
    await busy;
    const last = [1, 2, 3].map((p) => ({
      userId: userIn(p, 'slow'),
      eventMs: MONDAY + 90 * 60_000,
    }));
    slow.push(...last);
    expect((await b.ingest.send(requests(last, 5, 'slow-last')[0]!)).accepted).toBe(3);
    await a.ingest.finish();
    await b.ingest.finish();
    await coordinator.round();

    const history = await warehouse.queryHistory();
    const expected = bruteForceCounts([...fast, ...slow]);
    expect(history.filter((v) => v.version > 1)).toEqual([]);
    expect(diffCounts(expected, rowsToCounts(history))).toEqual([]);
    expect(history).toHaveLength(expected.size);
  });

  it('stops counting a router that fell silent, and counts it again after a restart', async () => {
    const dir = await tempDir('speedlayer-silent-router-');
    const { nodes, warehouse, coordinator, bLog, bMetrics } = await twoNodes(dir);
    const [a, b] = nodes as [(typeof nodes)[0], (typeof nodes)[0]];
    const early = stream('early', 200, 0.25, 100); // Monday 00:00 to 06:00
    const full = stream('full', 3000, 3, 500);

    const fullBatches = [
      ...requests(full.slice(0, 5), 5, 'full-first'),
      ...requests(full.slice(5), 100, 'full'),
    ];
    await b.ingest.send(fullBatches[0]!);
    for (const batch of requests(early, 100, 'early')) await a.ingest.send(batch);
    for (const batch of fullBatches.slice(1)) await b.ingest.send(batch);
    // Both routers have just sent: both hold shard-b's partitions.
    expect(await routerGauge(bMetrics)).toEqual({ counting: 2, silent: 0 });
    await b.ingest.finish();
    await coordinator.round();
    // Router a, alive and lately active, holds back everything after its mark
    // (Monday ~05:45 less the 10-minute bound): Monday's early hours only.
    const heldBack = published(await warehouse.queryHistory());
    expect(heldBack.length).toBeGreaterThan(0);
    expect(heldBack.every((p) => p.startsWith('hour@2026-03-23T0'))).toBe(true);

    // a's router stops without Finish: once silent for 1.5 s the partitions follow b.
    await a.router.close();
    await sleep(SILENCE_MS + 2_000);
    await coordinator.round();
    const history = await warehouse.queryHistory();
    const expected = bruteForceCounts([...early, ...full]);
    expect(diffCounts(expected, rowsToCounts(history))).toEqual([]);
    expect(history.filter((v) => v.version > 1)).toEqual([]);
    // Both routers are silent now (b since its Finish); shard-b said so once for each.
    expect(await routerGauge(bMetrics)).toEqual({ counting: 0, silent: 2 });
    const silenced = bLog.filter((line) => String(line.msg).startsWith('router silent'));
    expect(silenced.map((line) => [line.router, line.partitions]).sort()).toEqual([
      [a.router.senderId, [1, 3]],
      [b.router.senderId, [1, 3]],
    ]);

    // The marks are durable: reopened, a partition counts router a again, from its mark,
    // until it has been silent for as long again.
    await b.shard.stop();
    const host = await PartitionHost.open({
      stateDir: path.join(dir, 'shard-b'),
      partitionCount: P,
      partitions: [1, 3],
      ringEpoch: RING.epoch,
      allowedLatenessMs: SETTINGS.allowedLatenessMs,
      senderSilenceMs: SILENCE_MS,
      memoryBudgetBytes: MEMORY_BUDGET,
      logger: silentLogger(),
    });
    cleanups.push(() => host.close());
    const marks = await host.senderMarks(1);
    expect(marks.map(({ sender, counts }) => [sender.split('@')[0], counts])).toEqual([
      ['shard-a', true],
      ['shard-b', true],
    ]);
    expect(marks[0]!.markMs).toBeLessThan(MONDAY + 6 * HOUR);
    expect(marks[1]!.markMs).toBe(MONDAY + 7 * DAY + SETTINGS.allowedLatenessMs);
    await sleep(SILENCE_MS + 100);
    expect((await host.senderMarks(1)).map(({ counts }) => counts)).toEqual([false, false]);
  });
});
