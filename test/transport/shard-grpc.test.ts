/**
 * The Shard service over gRPC and the coordinator's gRPC port, on real servers on
 * 127.0.0.1:0 with real LevelDB and PGlite. Scenarios:
 * - two shards hold disjoint halves of P = 6 partitions; events are routed to them
 *   through Route, and the Coordinator runs over GrpcPartitionsPort: current rows and
 *   the values of every version equal the embedded node's on the same events, late
 *   events included;
 * - one shard stops: the round reports its partitions missing and publishes no final
 *   number; it restarts from its LevelDB and the right number is published;
 * - a coordinator with less allowed lateness than the shards closes a period only once
 *   every partition has sealed it by its own lateness (never with some seals missing);
 * - a Route resent with the same (sender, sequence) changes nothing, also after a
 *   restart; one that skips a sequence is refused with SL-SHARD-006;
 * - Acknowledge: a repeat of (fencing token, round) is a no-op, and a lower fencing
 *   token is refused with SL-SHARD-005;
 * - a call for a partition the shard does not hold, under another ring epoch, or with a
 *   malformed batch comes back as the typed error the shard raised;
 * - health checking answers SERVING and reflection lists the Shard and Health services
 *   (and grpcurl does, when it is installed).
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';

import { Coordinator } from '../../src/coordinator/coordinator.js';
import { EmbeddedNode, type EngineSettings } from '../../src/embedded/embedded-node.js';
import { EventRouter } from '../../src/ingest/event-router.js';
import { silentLogger } from '../../src/observability/index.js';
import { periodKey } from '../../src/periods/index.js';
import { ShardError } from '../../src/shard/errors.js';
import { PartitionHost } from '../../src/shard/partition-host.js';
import type { PartitionBatch } from '../../src/shard/types.js';
import { hashUserId, partitionOf } from '../../src/shard/user-hash.js';
import type { CurrentRow, VersionRow } from '../../src/sink/index.js';
import { Warehouse } from '../../src/sink/warehouse.js';
import { GrpcPartitionsPort } from '../../src/transport/grpc-partitions.js';
import { WireFormatError } from '../../src/transport/proto.js';
import { ShardRpcClient } from '../../src/transport/shard-client.js';
import { ShardServer } from '../../src/transport/shard-server.js';
import { rng, toBatches, type TestEvent } from '../support/events.js';
import { checkHealth, grpcurlList, hasGrpcurl, listServices } from '../support/grpc-probes.js';
import { lateModel, type ModelEvent } from '../support/late-model.js';
import { diffCounts, rowsToCounts } from '../support/oracle.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const P = 6;
const EVEN = [0, 2, 4];
const ODD = [1, 3, 5];
const ALL = [0, 1, 2, 3, 4, 5];
const DEADLINE_MS = 10_000;
/** Monday 2026-03-23. */
const MONDAY = Date.UTC(2026, 2, 23);

const settings: EngineSettings = {
  partitions: P,
  allowedLatenessMs: 10 * MIN,
  restatementHorizonMs: 3 * DAY,
  maxFutureSkewMs: 5 * MIN,
  maxOutOfOrdernessMs: 0,
  watermarkMode: 'clock',
  memoryBudgetBytes: 1024 ** 3,
};
/** A wall clock after every receive time of the tests, so that none is in the future. */
const now = (): number => Date.UTC(2030, 0, 1);

const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function tempDir(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'speedlayer-shard-grpc-'));
  cleanups.push(() => fs.rm(dir, { recursive: true, force: true }));

  return dir;
}

async function openWarehouse(dir: string): Promise<Warehouse> {
  const warehouse = await Warehouse.open({ dataDir: dir });
  cleanups.push(() => warehouse.close());

  return warehouse;
}

/** A shard process in miniature: a partition host behind a Shard server. */
class TestShard {
  private stopped = false;

  private constructor(
    readonly host: PartitionHost,
    readonly server: ShardServer,
  ) {
    cleanups.push(() => this.stop());
  }

  static async start(
    stateDir: string,
    partitions: readonly number[],
    options: { port?: number; ringEpoch?: number } = {},
  ): Promise<TestShard> {
    const host = await PartitionHost.open({
      stateDir,
      partitionCount: P,
      partitions,
      ringEpoch: options.ringEpoch ?? 0,
      allowedLatenessMs: settings.allowedLatenessMs,
      memoryBudgetBytes: settings.memoryBudgetBytes,
      logger: silentLogger(),
    });
    const server = await ShardServer.start({
      host,
      address: `127.0.0.1:${options.port ?? 0}`,
      logger: silentLogger(),
    });

    return new TestShard(host, server);
  }

  get address(): string {
    return this.server.address;
  }

  /** Stops serving and closes the store: what was acknowledged is already durable. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;

    await this.server.close();
    await this.host.close();
  }
}

/** A node routing partition batches: one ordered stream per partition, sequences from 1. */
class Sender {
  private readonly sequences = new Map<number, number>();
  private readonly clients = new Map<string, ShardRpcClient>();

  constructor(
    readonly senderId: string,
    private readonly addresses: readonly string[],
  ) {
    cleanups.push(() => this.close());
  }

  /** Sends each batch until its shard takes it, resending the same sequence after a failure. */
  async send(batches: readonly PartitionBatch[]): Promise<void> {
    for (const batch of batches) {
      const sequence = (this.sequences.get(batch.partition) ?? 0) + 1;
      const client = this.client(this.addresses[batch.partition] as string);
      const call = { ringEpoch: 0, stamp: { senderId: this.senderId, sequence }, batch };
      await untilAvailable(() => client.route(call, DEADLINE_MS));
      this.sequences.set(batch.partition, sequence);
    }
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
  }

  private client(address: string): ShardRpcClient {
    let client = this.clients.get(address);
    if (client === undefined) {
      client = new ShardRpcClient(address);
      this.clients.set(address, client);
    }

    return client;
  }
}

/** Retries `call` while the shard is unavailable (e.g. still reconnecting after a restart). */
async function untilAvailable<T>(call: () => Promise<T>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await call();
    } catch (err) {
      if (!(err instanceof ShardError && err.kind === 'unavailable') || Date.now() > deadline) {
        throw err;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

function client(address: string): ShardRpcClient {
  const c = new ShardRpcClient(address);
  cleanups.push(() => c.close());

  return c;
}

function partitionOfUser(userId: string): number {
  return partitionOf(hashUserId(userId, { hi: 0, lo: 0 }), P);
}

/** The first `n` user ids of the form `<prefix><i>` that live in `partition`. */
function usersIn(partition: number, n: number, prefix = 'user-'): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < n; i++) {
    if (partitionOfUser(`${prefix}${i}`) === partition) out.push(`${prefix}${i}`);
  }

  return out;
}

/** Arrivals over 10 days in receive order: most on time, some minutes or days late, a few rejected. */
function arrivals(seed: number, n: number): ModelEvent[] {
  const next = rng(seed);
  const start = Date.UTC(2026, 2, 20);
  const out: ModelEvent[] = [];

  for (let i = 0; i < n; i++) {
    const receiveMs = start + Math.floor((i / n) * 10 * DAY);
    const r = next();
    let delay = Math.floor(next() * 2 * MIN);
    if (r < 0.1) delay = 15 * MIN + Math.floor(next() * 3 * HOUR);
    else if (r < 0.16) delay = DAY + Math.floor(next() * 1.9 * DAY);
    else if (r < 0.18) delay = 3 * DAY + HOUR + Math.floor(next() * 10 * DAY);
    else if (r < 0.19) delay = -(6 * MIN + Math.floor(next() * DAY));
    out.push({
      userId: `user-${Math.floor(next() ** 1.5 * 700)}`,
      eventMs: receiveMs - delay,
      receiveMs,
    });
  }

  return out;
}

/** Rows without the wall-clock instant they were written at. */
function currentValues(rows: readonly CurrentRow[]): Omit<CurrentRow, 'computedAtMs'>[] {
  return rows.map(({ computedAtMs: _, ...rest }) => rest);
}

function versionValues(rows: readonly VersionRow[]): Omit<VersionRow, 'writtenAtMs'>[] {
  return rows.map(({ writtenAtMs: _, ...rest }) => rest);
}

const ROUND_EVERY = 3;

async function runEmbedded(
  dir: string,
  events: readonly ModelEvent[],
): Promise<{ current: CurrentRow[]; history: VersionRow[] }> {
  const warehouse = await openWarehouse(path.join(dir, 'embedded'));
  const node = await EmbeddedNode.open({
    ...settings,
    stateDir: path.join(dir, 'embedded', 'state'),
    warehouse,
    logger: silentLogger(),
    now,
  });

  for (const [i, batch] of toBatches(events as TestEvent[], 500).entries()) {
    await node.ingest(batch);
    if (i % ROUND_EVERY === ROUND_EVERY - 1) await node.round();
  }
  await node.finish();
  await node.close();

  return { current: await warehouse.queryCurrent({}), history: await warehouse.queryHistory({}) };
}

async function runOverGrpc(
  dir: string,
  events: readonly ModelEvent[],
): Promise<{ current: CurrentRow[]; history: VersionRow[] }> {
  const even = await TestShard.start(path.join(dir, 'shard-even'), EVEN);
  const odd = await TestShard.start(path.join(dir, 'shard-odd'), ODD);
  const addresses = ALL.map((p) => (p % 2 === 0 ? even.address : odd.address));
  const warehouse = await openWarehouse(path.join(dir, 'cluster'));
  const fence = { ringEpoch: 0, fencingToken: 1 };
  await warehouse.claimFence(fence);
  const port = new GrpcPartitionsPort({ addresses, fence, logger: silentLogger() });
  cleanups.push(() => port.close());
  const coordinator = new Coordinator(port, warehouse, {
    allowedLatenessMs: settings.allowedLatenessMs,
    fence,
    logger: silentLogger(),
  });
  const router = new EventRouter({ ...settings, now });
  const sender = new Sender('node-1', addresses);

  for (const [i, batch] of toBatches(events as TestEvent[], 500).entries()) {
    await sender.send(router.route(batch).batches);
    if (i % ROUND_EVERY === ROUND_EVERY - 1) {
      expect((await coordinator.round()).missingPartitions).toEqual([]);
    }
  }
  await sender.send(router.finish());
  await coordinator.round();

  return { current: await warehouse.queryCurrent({}), history: await warehouse.queryHistory({}) };
}

describe('Coordinator over GrpcPartitionsPort', () => {
  it('publishes the same rows and versions as the embedded node, late events included', async () => {
    const dir = await tempDir();
    const events = arrivals(3, 9000);
    const model = lateModel(events, settings);

    const embedded = await runEmbedded(dir, events);
    const cluster = await runOverGrpc(dir, events);

    expect(currentValues(cluster.current)).toEqual(currentValues(embedded.current));
    expect(versionValues(cluster.history)).toEqual(versionValues(embedded.history));
    expect(diffCounts(model.last, rowsToCounts(cluster.current))).toEqual([]);
    const restated = cluster.history.filter((v) => v.status === 'restated');
    expect(restated.length).toBeGreaterThan(20);
    expect(restated[0]?.reason).toMatch(/ of 6 partitions$/);
  });

  it('holds a final number back while a shard is down and publishes it after the shard restarts', async () => {
    const dir = await tempDir();
    const even = await TestShard.start(path.join(dir, 'shard-even'), EVEN);
    let odd = await TestShard.start(path.join(dir, 'shard-odd'), ODD);
    const oddPort = odd.server.port;
    const addresses = ALL.map((p) => (p % 2 === 0 ? even.address : odd.address));
    const warehouse = await openWarehouse(path.join(dir, 'cluster'));
    const fence = { ringEpoch: 0, fencingToken: 1 };
    await warehouse.claimFence(fence);
    const port = new GrpcPartitionsPort({
      addresses,
      fence,
      reportDeadlineMs: 1000,
      logger: silentLogger(),
    });
    cleanups.push(() => port.close());
    const coordinator = new Coordinator(port, warehouse, {
      allowedLatenessMs: settings.allowedLatenessMs,
      fence,
      logger: silentLogger(),
    });
    const router = new EventRouter({ ...settings, now });
    const sender = new Sender('node-1', addresses);
    const hour = MONDAY + 10 * HOUR;
    const users = Array.from({ length: 300 }, (_, i) => `user-${i}`);

    const events = users.map((userId, i) => ({ userId, eventMs: hour + i, receiveMs: hour + i }));
    await sender.send(router.route(toBatches(events, 1000)[0]!).batches);
    expect(await coordinator.round()).toMatchObject({ missingPartitions: [], finals: 0 });

    await odd.stop();
    // The clock passes the hour's close point; the odd partitions' marks wait for their shard.
    const tick = router.advanceClock(hour + HOUR + settings.allowedLatenessMs + MIN);
    await sender.send(tick.filter((b) => EVEN.includes(b.partition)));
    const held = await coordinator.round();

    expect(held).toMatchObject({ missingPartitions: ODD, finals: 0, restated: 0 });
    expect(await warehouse.queryHistory({})).toEqual([]);

    odd = await TestShard.start(path.join(dir, 'shard-odd'), ODD, { port: oddPort });
    await sender.send(tick.filter((b) => ODD.includes(b.partition)));
    const published = await untilAvailable(async () => {
      const result = await coordinator.round();
      if (result.missingPartitions.length > 0) {
        throw new ShardError('unavailable', 'the restarted shard has not reported yet');
      }
      return result;
    });

    expect(published).toMatchObject({ missingPartitions: [], finals: 1 });
    expect(versionValues(await warehouse.queryHistory({}))).toMatchObject([
      { periodType: 'hour', periodStartMs: hour, version: 1, distinctUsers: 300, status: 'final' },
    ]);
  });

  it('closes a period only once every partition sealed it by its own lateness, not the lower one of the coordinator', async () => {
    const dir = await tempDir();
    // The shards seal with 10 minutes of lateness (fixed in their data directories); the
    // coordinator was started with none, as after a configuration change that restarted
    // only the coordinators.
    const even = await TestShard.start(path.join(dir, 'shard-even'), EVEN);
    const odd = await TestShard.start(path.join(dir, 'shard-odd'), ODD);
    const addresses = ALL.map((p) => (p % 2 === 0 ? even.address : odd.address));
    const warehouse = await openWarehouse(path.join(dir, 'cluster'));
    const fence = { ringEpoch: 0, fencingToken: 1 };
    await warehouse.claimFence(fence);
    const port = new GrpcPartitionsPort({ addresses, fence, logger: silentLogger() });
    cleanups.push(() => port.close());
    const logged: Record<string, unknown>[] = [];
    const logger = pino(
      { level: 'warn' },
      { write: (line: string) => logged.push(JSON.parse(line)) },
    );
    const coordinator = new Coordinator(port, warehouse, { allowedLatenessMs: 0, fence, logger });
    const router = new EventRouter({ ...settings, now });
    const sender = new Sender('node-1', addresses);
    const hour = MONDAY + 10 * HOUR;
    const users = Array.from({ length: 300 }, (_, i) => `user-${i}`);
    const events = users.map((userId, i) => ({ userId, eventMs: hour + i, receiveMs: hour + i }));
    await sender.send(router.route(toBatches(events, 1000)[0]!).batches);

    // Every partition passes the hour's end, 5 minutes into its lateness; then the even
    // ones pass its close point and seal it, the odd ones not yet.
    await sender.send(router.advanceClock(hour + HOUR + 5 * MIN));
    const tick = router.advanceClock(hour + HOUR + settings.allowedLatenessMs + MIN);
    await sender.send(tick.filter((b) => EVEN.includes(b.partition)));
    expect(await coordinator.round()).toMatchObject({ missingPartitions: [], finals: 0 });
    expect(await warehouse.queryHistory({})).toEqual([]);
    expect(logged.map((l) => [l.msg, l.partitionLatenessMs, l.coordinatorLatenessMs])).toEqual([
      [
        'a partition seals with another allowed lateness than the coordinator; periods close by the later of the two',
        settings.allowedLatenessMs,
        0,
      ],
    ]);

    await sender.send(tick.filter((b) => ODD.includes(b.partition)));
    expect(await coordinator.round()).toMatchObject({ finals: 1, restated: 0 });
    await coordinator.round();
    expect(versionValues(await warehouse.queryHistory({}))).toMatchObject([
      { periodType: 'hour', periodStartMs: hour, version: 1, distinctUsers: 300, status: 'final' },
    ]);
    expect(logged).toHaveLength(1);
  });
});

describe('ShardServer', () => {
  it('applies a resent Route once, also after a restart, and refuses one that skips a sequence', async () => {
    const dir = await tempDir();
    let shard = await TestShard.start(dir, ALL);
    let c = client(shard.address);
    const router = new EventRouter({ ...settings, now });
    const hour = MONDAY + 10 * HOUR;
    const partition = 2;
    const route = (batch: PartitionBatch, sequence: number): ReturnType<ShardRpcClient['route']> =>
      c.route({ ringEpoch: 0, stamp: { senderId: 'node-1', sequence }, batch }, DEADLINE_MS);
    const batchFor = (users: string[]): PartitionBatch => {
      const events = users.map((userId) => ({ userId, eventMs: hour, receiveMs: hour }));
      const batches = router.route(toBatches(events, 1000)[0]!).batches;

      return batches.find((b) => b.partition === partition) as PartitionBatch;
    };
    const hourCount = async (): Promise<number | undefined> => {
      const [counts] = await c.counts(0, [periodKey({ type: 'hour', startMs: hour })], [2], 5000);
      return counts?.counts.get(periodKey({ type: 'hour', startMs: hour }));
    };
    const first = batchFor(usersIn(partition, 40));
    const other = batchFor(usersIn(partition, 20, 'other-'));

    expect(await route(first, 1)).toMatchObject({ partition, sequence: 1, duplicate: false });
    expect(await hourCount()).toBe(40);
    expect(await route(first, 1)).toMatchObject({ sequence: 1, duplicate: true });
    // A repeat is recognised by its stamp alone, whatever it carries.
    expect(await route(other, 1)).toMatchObject({ sequence: 1, duplicate: true });
    expect(await hourCount()).toBe(40);

    const gap = route(other, 3);
    await expect(gap).rejects.toBeInstanceOf(ShardError);
    await expect(gap).rejects.toMatchObject({ kind: 'sequence-gap', partition, retryable: false });
    await expect(gap).rejects.toThrow(/^\[SL-SHARD-006\] /);

    await shard.stop();
    shard = await TestShard.start(dir, ALL);
    c = client(shard.address);

    expect(await route(first, 1)).toMatchObject({ sequence: 1, duplicate: true });
    expect(await hourCount()).toBe(40);
    expect(await route(other, 2)).toMatchObject({ sequence: 2, duplicate: false });
    expect(await hourCount()).toBe(60);
  });

  it('takes a repeated acknowledgement as done and refuses one from a lower fencing token', async () => {
    const dir = await tempDir();
    const shard = await TestShard.start(dir, ALL);
    const c = client(shard.address);
    const router = new EventRouter({ ...settings, now });
    const sender = new Sender(
      'node-1',
      ALL.map(() => shard.address),
    );
    const hour = MONDAY + 10 * HOUR;
    const hourKey = periodKey({ type: 'hour', startMs: hour });
    const [a, b, d] = usersIn(4, 3) as [string, string, string];
    const late = MONDAY + 11 * HOUR + 20 * MIN;
    const send = (events: TestEvent[]): Promise<void> =>
      sender.send(router.route(toBatches(events, 10)[0]!).batches);
    const reportOf4 = async (): Promise<unknown> =>
      (await c.reports(0, [4], 5000)).map(({ seals, changes }) => ({ seals, changes }))[0];

    await send([{ userId: a, eventMs: hour, receiveMs: hour }]);
    await sender.send(router.advanceClock(MONDAY + 11 * HOUR + 11 * MIN));
    await send([{ userId: b, eventMs: hour + 30 * MIN, receiveMs: late }]);
    const change = { key: hourKey, lateEvents: 1, newUsers: 1 };
    expect(await reportOf4()).toEqual({ seals: [{ key: hourKey, count: 1 }], changes: [change] });

    const fence = { ringEpoch: 0, fencingToken: 5 };
    await c.acknowledge(fence, 1, [{ partition: 4, seals: [hourKey], changes: [change] }], 5000);
    expect(await reportOf4()).toEqual({ seals: [], changes: [] });

    await send([{ userId: d, eventMs: hour + 40 * MIN, receiveMs: late + MIN }]);
    // A retry of round 1 must not take the new change for the one it acknowledged.
    await c.acknowledge(fence, 1, [{ partition: 4, seals: [], changes: [change] }], 5000);
    expect(await reportOf4()).toEqual({ seals: [], changes: [change] });

    const stale = c.acknowledge(
      { ringEpoch: 0, fencingToken: 4 },
      9,
      [{ partition: 4, seals: [], changes: [change] }],
      5000,
    );
    await expect(stale).rejects.toMatchObject({ kind: 'stale-fencing-token', retryable: false });
    await expect(stale).rejects.toThrow(/^\[SL-SHARD-005\] /);
    expect(await reportOf4()).toEqual({ seals: [], changes: [change] });

    await c.acknowledge(fence, 2, [{ partition: 4, seals: [], changes: [change] }], 5000);
    expect(await reportOf4()).toEqual({ seals: [], changes: [] });
  });

  it('answers a call it refuses with the typed error the shard raised', async () => {
    const dir = await tempDir();
    const shard = await TestShard.start(dir, EVEN, { ringEpoch: 3 });
    const c = client(shard.address);
    const router = new EventRouter({ ...settings, now });
    const [user] = usersIn(0, 1);
    const events = [{ userId: user as string, eventMs: MONDAY, receiveMs: MONDAY }];
    const batch = router.route(toBatches(events, 1)[0]!).batches.find((x) => x.partition === 0);
    const malformed = { ...(batch as PartitionBatch), slotHashes: new Uint32Array(0) };

    const notOwner = c.reports(3, [1], 5000);
    await expect(notOwner).rejects.toMatchObject({
      name: 'ShardError',
      kind: 'not-owner',
      code: 'SL-SHARD-003',
      partition: 1,
      ringEpoch: 3,
      retryable: false,
    });
    await expect(c.counts(2, [], [], 5000)).rejects.toMatchObject({
      kind: 'epoch-mismatch',
      ringEpoch: 3,
    });
    const bad = c.route(
      { ringEpoch: 3, stamp: { senderId: 'node-1', sequence: 1 }, batch: malformed },
      5000,
    );
    await expect(bad).rejects.toBeInstanceOf(WireFormatError);
    await expect(bad).rejects.toThrow(/^\[SL-WIRE-001\] partition 0 batch has 1 user ids, 0 slot/);
    expect(await c.checkpoint(3, 5000)).toEqual(EVEN);
  });

  it('refuses a routed batch holding a user of another partition, or a slot hash not its own', async () => {
    const dir = await tempDir();
    const shard = await TestShard.start(dir, EVEN);
    const c = client(shard.address);
    const router = new EventRouter({ ...settings, now });
    const hour = MONDAY + 10 * HOUR;
    const key = periodKey({ type: 'hour', startMs: hour });
    const batchFor = (users: string[], partition: number): PartitionBatch => {
      const events = users.map((userId) => ({ userId, eventMs: hour, receiveMs: hour }));
      return router
        .route(toBatches(events, 100)[0]!)
        .batches.find((b) => b.partition === partition) as PartitionBatch;
    };
    // Sequences are per partition: each batch below is its partition's first.
    const route = (batch: PartitionBatch): ReturnType<ShardRpcClient['route']> =>
      c.route({ ringEpoch: 0, stamp: { senderId: 'node-1', sequence: 1 }, batch }, DEADLINE_MS);
    const hourCounts = async (): Promise<(number | undefined)[]> =>
      (await c.counts(0, [key], [0, 2], 5000)).map((p) => p.counts.get(key));

    // Users of partition 2, labelled for partition 0: counted in both, they would be summed twice.
    const ofTwo = batchFor(usersIn(2, 5), 2);
    await expect(route(ofTwo)).resolves.toMatchObject({ partition: 2, duplicate: false });
    const relabelled = route({ ...ofTwo, partition: 0 });
    await expect(relabelled).rejects.toBeInstanceOf(WireFormatError);
    await expect(relabelled).rejects.toThrow(
      /^\[SL-WIRE-001\] partition 0 batch: the user id at 0 hashes to partition 2 \(P = 6\); the sender partitions user ids differently/,
    );

    // The right partition, one slot hash off: the dictionary would take the user for a new one.
    const own = batchFor(usersIn(0, 4), 0);
    const slotHashes = Uint32Array.from(own.slotHashes);
    slotHashes[3] = (slotHashes[3] as number) ^ 1;
    const wrongSlot = route({ ...own, slotHashes });
    await expect(wrongSlot).rejects.toThrow(
      /^\[SL-WIRE-001\] partition 0 batch: the user id at 3 was sent with a slot hash that is not its own/,
    );

    expect(await hourCounts()).toEqual([0, 5]);
    await expect(route(own)).resolves.toMatchObject({
      partition: 0,
      sequence: 1,
      duplicate: false,
    });
    expect(await hourCounts()).toEqual([4, 5]);
  });

  it('answers health checks with SERVING and lists its services through reflection', async () => {
    const shard = await TestShard.start(await tempDir(), ALL);

    await expect(checkHealth(shard.address, '')).resolves.toBe('SERVING');
    await expect(checkHealth(shard.address, 'speedlayer.v1.Shard')).resolves.toBe('SERVING');
    await expect(listServices(shard.address)).resolves.toEqual([
      'grpc.health.v1.Health',
      'speedlayer.v1.Shard',
    ]);
  });

  it.skipIf(!hasGrpcurl())('is listed by grpcurl', async () => {
    const shard = await TestShard.start(await tempDir(), ALL);

    await expect(grpcurlList(shard.address)).resolves.toContain('speedlayer.v1.Shard');
  });
});
