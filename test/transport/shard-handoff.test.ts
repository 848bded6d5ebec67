/**
 * Shard.Adopt and Shard.Release on real servers (127.0.0.1:0) over real LevelDB, P = 4.
 * Shard A holds every partition under ring epoch 1; shard B holds none. Scenarios:
 * - B adopts partition 1 from A: A refuses Route, Report and Counts for it with the
 *   retryable 'partition-moving' naming B, also after A restarts under epoch 1, and
 *   keeps serving its other partitions; B keeps its complete copy across a restart
 *   under epoch 1; under epoch 2 B serves the partition with the counts and the route
 *   ledger A had, and A, reopened without it, has dropped its state;
 * - an aborted move: under epoch 2 A holds the partition again and serves it with its
 *   counts, and B, reopened without it, has dropped its copy;
 * - an adoption is refused for a partition the adopting shard holds, and a release under
 *   another ring epoch is refused by the owner (nothing is released);
 * - a copy cut short by a crash of the adopting shard (no adoption mark) is dropped when
 *   its store next opens under a ring, while a complete copy is kept;
 * - the node's PartitionDelivery holds a batch for a moving partition (retrying the
 *   refusal) and delivers it to the new owner once the next ring names it.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { EventRouter } from '../../src/ingest/event-router.js';
import { silentLogger } from '../../src/observability/index.js';
import { periodKey } from '../../src/periods/index.js';
import { ShardError } from '../../src/shard/errors.js';
import { LevelStateStore } from '../../src/shard/level-state-store.js';
import type { PartitionChunk } from '../../src/shard/partition-copy.js';
import { PartitionHost } from '../../src/shard/partition-host.js';
import type { PartitionBatch } from '../../src/shard/types.js';
import { PartitionDelivery } from '../../src/transport/partition-delivery.js';
import { RingView } from '../../src/transport/routing-table.js';
import { ShardRpcClient } from '../../src/transport/shard-client.js';
import { ShardServer } from '../../src/transport/shard-server.js';
import { rng, toBatches, type TestEvent } from '../support/events.js';
import { bruteForceCounts } from '../support/oracle.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const P = 4;
const ALL = [0, 1, 2, 3];
const MOVED = 1;
const DEADLINE_MS = 10_000;
/** Monday 2026-03-23. */
const MONDAY = Date.UTC(2026, 2, 23);
const HOURS = [10, 11, 12].map((h) => MONDAY + h * HOUR);
const KEYS = HOURS.map((startMs) => periodKey({ type: 'hour', startMs }));

const settings = {
  partitions: P,
  allowedLatenessMs: 10 * MIN,
  restatementHorizonMs: 3 * 24 * HOUR,
  maxFutureSkewMs: 5 * MIN,
  maxOutOfOrdernessMs: 0,
  watermarkMode: 'clock',
} as const;

const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A shard in miniature: a server whose host is reopened in place, as a shard process does. */
class TestShard {
  private constructor(
    readonly stateDir: string,
    readonly server: ShardServer,
    readonly client: ShardRpcClient,
  ) {}

  static async start(stateDir: string, partitions: number[], ringEpoch: number) {
    const host = await openHost(stateDir, partitions, ringEpoch);
    const server = await ShardServer.start({
      host,
      address: '127.0.0.1:0',
      logger: silentLogger(),
    });
    const shard = new TestShard(stateDir, server, new ShardRpcClient(server.address));
    cleanups.push(async () => {
      shard.client.close();
      await server.close();
      await shard.server.host.close();
    });

    return shard;
  }

  get address(): string {
    return this.server.address;
  }

  get host(): PartitionHost {
    return this.server.host;
  }

  /** Closes the host (as a crash would, without a checkpoint) and opens the store again. */
  async reopen(partitions: number[], ringEpoch: number, dropUnheld = true): Promise<void> {
    await this.server.host.close();
    this.server.replaceHost(await openHost(this.stateDir, partitions, ringEpoch, dropUnheld));
  }

  async counts(ringEpoch: number, partition: number): Promise<number[]> {
    const [counts] = await this.client.counts(ringEpoch, KEYS, [partition], DEADLINE_MS);

    return KEYS.map((key) => counts?.counts.get(key) ?? 0);
  }
}

function openHost(
  stateDir: string,
  partitions: number[],
  ringEpoch: number,
  dropUnheld = false,
): Promise<PartitionHost> {
  return PartitionHost.open({
    stateDir,
    partitionCount: P,
    partitions,
    ringEpoch,
    dropUnheld,
    allowedLatenessMs: settings.allowedLatenessMs,
    memoryBudgetBytes: 1024 ** 3,
    logger: silentLogger(),
  });
}

/** Shard A with every partition under epoch 1, B with none, and events routed to A. */
async function startPair(): Promise<{ a: TestShard; b: TestShard; batches: PartitionBatch[] }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'speedlayer-handoff-'));
  cleanups.push(() => fs.rm(dir, { recursive: true, force: true }));
  const a = await TestShard.start(path.join(dir, 'a'), ALL, 1);
  const b = await TestShard.start(path.join(dir, 'b'), [], 1);

  const router = new EventRouter({ ...settings, now: () => Date.UTC(2030, 0, 1) });
  const next = rng(7);
  const events: TestEvent[] = [];
  for (let i = 0; i < 600; i++) {
    const t = (HOURS[0] as number) + Math.floor((i / 600) * 3 * HOUR);
    events.push({ userId: `u-${Math.floor(next() * 300)}`, eventMs: t, receiveMs: t });
  }
  const batches = toBatches(events, 200).flatMap((batch) => router.route(batch).batches);
  const sequences = new Map<number, number>();
  for (const batch of batches) {
    const sequence = (sequences.get(batch.partition) ?? 0) + 1;
    sequences.set(batch.partition, sequence);
    const stamp = { senderId: 'router-1', sequence };
    await a.client.route({ ringEpoch: 1, stamp, batch }, DEADLINE_MS);
  }

  // The test's own check that every partition holds users: the brute force over all of them.
  const total = bruteForceCounts(events);
  const sums = [0, 0, 0];
  for (const p of ALL) (await a.counts(1, p)).forEach((n, i) => (sums[i] = (sums[i] ?? 0) + n));
  expect(sums).toEqual(HOURS.map((ms) => total.get(`hour,${isoOf(ms)}`)));

  return { a, b, batches: batches.filter((batch) => batch.partition === MOVED) };
}

function isoOf(ms: number): string {
  return new Date(ms).toISOString().replace('.000Z', 'Z');
}

async function refusal(call: Promise<unknown>): Promise<ShardError> {
  const err: unknown = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ShardError);

  return err as ShardError;
}

describe('partition handoff between two shards', () => {
  it('moves a partition whole: the owner refuses it from the release on, the new owner serves it under the next epoch', async () => {
    const { a, b, batches } = await startPair();
    const before = await a.counts(1, MOVED);
    expect(before.every((n) => n > 0)).toBe(true);

    const adopted = await b.client.adopt(
      { ringEpoch: 1, partition: MOVED, from: a.address, to: b.address },
      DEADLINE_MS,
    );
    expect(adopted.partition).toBe(MOVED);
    expect(adopted.entries).toBeGreaterThan(3);
    expect(adopted.bytes).toBeGreaterThan(0);

    // A refuses the partition, retryably, naming B; its other partitions go on.
    const routed = { ringEpoch: 1, stamp: { senderId: 'router-1', sequence: 999 } };
    const moving = await refusal(
      a.client.route({ ...routed, batch: batches[0] as PartitionBatch }, DEADLINE_MS),
    );
    expect(moving).toMatchObject({
      kind: 'partition-moving',
      code: 'SL-SHARD-011',
      retryable: true,
      partition: MOVED,
      ownerHint: b.address,
    });
    expect(await refusal(a.client.reports(1, [MOVED], DEADLINE_MS))).toMatchObject({
      kind: 'partition-moving',
    });
    expect(await refusal(a.client.reports(1, [], DEADLINE_MS))).toMatchObject({
      kind: 'partition-moving',
    });
    expect(await refusal(a.client.counts(1, KEYS, [MOVED], DEADLINE_MS))).toMatchObject({
      kind: 'partition-moving',
    });
    expect((await a.client.reports(1, [0, 2, 3], DEADLINE_MS)).length).toBe(3);

    // The release is durable: a restart under epoch 1 still refuses it. B keeps its copy.
    await a.reopen(ALL, 1);
    expect(await refusal(a.client.counts(1, KEYS, [MOVED], DEADLINE_MS))).toMatchObject({
      kind: 'partition-moving',
    });
    await b.reopen([], 1);

    // Ring epoch 2 switches: B holds the partition with A's counts and route ledger.
    await b.reopen([MOVED], 2);
    await a.reopen([0, 2, 3], 2);
    expect(await b.counts(2, MOVED)).toEqual(before);
    const repeat = await b.client.route(
      { ringEpoch: 2, stamp: { senderId: 'router-1', sequence: 1 }, batch: batches[0]! },
      DEADLINE_MS,
    );
    expect(repeat.duplicate).toBe(true);
    expect(await b.counts(2, MOVED)).toEqual(before);

    // A dropped the partition's state: held again (as a test only), it counts nobody.
    await a.reopen([MOVED], 3, false);
    expect(await a.counts(3, MOVED)).toEqual([0, 0, 0]);
  });

  it('aborts a move: the old owner serves the partition again under the next epoch, the copy is dropped', async () => {
    const { a, b } = await startPair();
    const before = await a.counts(1, MOVED);
    await b.client.adopt(
      { ringEpoch: 1, partition: MOVED, from: a.address, to: b.address },
      DEADLINE_MS,
    );

    await a.reopen(ALL, 2);
    await b.reopen([], 2);
    expect(await a.counts(2, MOVED)).toEqual(before);

    await b.reopen([MOVED], 3, false);
    expect(await b.counts(3, MOVED)).toEqual([0, 0, 0]);
  });

  it('refuses an adoption of a held partition, and a release under another epoch', async () => {
    const { a, b } = await startPair();

    const own = await refusal(
      a.client.adopt({ ringEpoch: 1, partition: 2, from: b.address, to: a.address }, DEADLINE_MS),
    );
    expect(own.kind).toBe('invalid-argument');

    const stale = await refusal(
      b.client.adopt(
        { ringEpoch: 7, partition: MOVED, from: a.address, to: b.address },
        DEADLINE_MS,
      ),
    );
    expect(stale).toMatchObject({ kind: 'epoch-mismatch', ringEpoch: 1 });
    expect((await a.client.reports(1, [MOVED], DEADLINE_MS)).length).toBe(1);
  });

  it('drops a copy cut short by a crash when the store next opens', async () => {
    const { a, b } = await startPair();
    const chunks = (await collect(a, MOVED)).filter((c) => c.entries.length > 0);
    expect(chunks.length).toBeGreaterThan(0);

    // The adopting shard dies after the first chunk is written: no cleanup, no mark.
    const host = b.host;
    async function* cutShort(): AsyncGenerator<PartitionChunk> {
      yield chunks[0] as PartitionChunk;
      await host.close();
      throw new Error('the adopting shard crashed');
    }
    await expect(host.adopt(MOVED, 1, cutShort())).rejects.toThrow();
    expect(await storeHolds(b.stateDir, MOVED)).toBe(true);

    await b.reopen([], 1);
    await b.host.close();
    expect(await storeHolds(b.stateDir, MOVED)).toBe(false);
  });

  it("holds a node's routed batch while its partition moves, and delivers it to the new owner", async () => {
    const { a, b, batches } = await startPair();
    const before = await a.counts(1, MOVED);
    const ring1 = { epoch: 1, partitions: P, owners: ['a', 'a', 'a', 'a'] };
    const view = new RingView({
      ring: ring1,
      addresses: [
        ['a', a.address],
        ['b', b.address],
      ],
    });
    const delivery = new PartitionDelivery({
      nodeId: 'node-1',
      senderId: 'delivery-1',
      partitions: P,
      ring: view,
      localHost: () => undefined,
      logger: silentLogger(),
      initialBackoffMs: 20,
      maxBackoffMs: 100,
    });
    cleanups.push(() => delivery.close());
    await delivery.send(batches[0] as PartitionBatch);

    await b.client.adopt(
      { ringEpoch: 1, partition: MOVED, from: a.address, to: b.address },
      DEADLINE_MS,
    );
    const fresh: TestEvent[] = Array.from({ length: 40 }, (_, i) => ({
      userId: `x-${i}`,
      eventMs: (HOURS[1] as number) + i,
      receiveMs: (HOURS[1] as number) + i,
    }));
    const router = new EventRouter({ ...settings, now: () => Date.UTC(2030, 0, 1) });
    const [moving] = router
      .route(toBatches(fresh, 40)[0]!)
      .batches.filter((batch) => batch.partition === MOVED && batch.length > 0);
    let delivered = false;
    const sent = delivery.send(moving as PartitionBatch).then(() => (delivered = true));
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(delivered).toBe(false);

    await b.reopen([MOVED], 2);
    await a.reopen([0, 2, 3], 2);
    view.setRing({ epoch: 2, partitions: P, owners: ['a', 'b', 'a', 'a'] });
    await sent;

    // Every fresh user is new to hour 11 of the partition, and nothing else changed.
    const added = (moving as PartitionBatch).length;
    expect(added).toBeGreaterThan(0);
    expect(await b.counts(2, MOVED)).toEqual([before[0], (before[1] as number) + added, before[2]]);
  });
});

async function collect(shard: TestShard, partition: number): Promise<PartitionChunk[]> {
  await shard.host.release(partition, 'nowhere:1');
  const chunks: PartitionChunk[] = [];
  for await (const chunk of shard.host.releasedChunks(partition)) chunks.push(chunk);

  return chunks;
}

/** Whether a closed shard's store holds anything of `partition`. */
async function storeHolds(stateDir: string, partition: number): Promise<boolean> {
  const store = await LevelStateStore.open(stateDir);
  try {
    return await store.holdsState(partition);
  } finally {
    await store.close();
  }
}
