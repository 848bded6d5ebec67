/**
 * Partition handoff end to end, in process: a real etcd (one per file, a cluster prefix
 * per test), shards as in a shard process (a ShardServer whose host a RingAssignment
 * reopens on every ring from the watch, registered in etcd), a CoordinatorService over
 * a warehouse (the test PostgreSQL server, or PGlite without it), and a router that routes by the ring and membership in etcd,
 * retrying refused batches (partition moving, epoch behind or ahead, shard unavailable)
 * under the newest ring with the same (sender, sequence). P = 6. Scenarios:
 * - scale-out: shards a and b hold ring 1; while the router sends events (with repeated
 *   events, and late ones into a published hour), shard c joins. The leader moves two
 *   partitions to it: ring epoch 2 names c, each moved partition's state is on c and gone
 *   from its old owner's store, the router had batches refused during the move and
 *   every batch was applied once (replaying them all on c changes nothing), and every
 *   version published equals the brute-force model, with none duplicated or missing;
 * - abort, adopter closed mid-copy: c's host closes as soon as the owner has released
 *   the first partition; the leader writes ring epoch 2 with the old owners, the owner
 *   serves the partition again, c's partial copy is dropped when its store next opens,
 *   and the counts stay exact;
 * - abort, leader closed after the plan: the next leader finds the pending ring, writes
 *   the old owners under epoch 2, then moves again (epoch 3), and the counts stay exact.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import pg from 'pg';
import { pino, type Logger } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { CoordinatorService } from '../../src/coordinator/coordinator-service.js';
import { EventRouter } from '../../src/ingest/event-router.js';
import { silentLogger } from '../../src/observability/index.js';
import { periodKey } from '../../src/periods/index.js';
import {
  EtcdCoordinationStore,
  diffRings,
  type Membership,
  type Ring,
  type Subscription,
} from '../../src/ring/index.js';
import { ShardError } from '../../src/shard/errors.js';
import { LevelStateStore } from '../../src/shard/level-state-store.js';
import { PartitionHost } from '../../src/shard/partition-host.js';
import { RingAssignment } from '../../src/shard/ring-assignment.js';
import type { PartitionBatch } from '../../src/shard/types.js';
import type { VersionRow } from '../../src/sink/index.js';
import { Warehouse } from '../../src/sink/warehouse.js';
import { RingView } from '../../src/transport/routing-table.js';
import { ShardRpcClient } from '../../src/transport/shard-client.js';
import { ShardServer } from '../../src/transport/shard-server.js';
import { startEtcd, type EtcdServer } from '../support/etcd.js';
import { toBatches } from '../support/events.js';
import { lateModel, type ModelEvent } from '../support/late-model.js';
import { rowsToCounts, type Counts } from '../support/oracle.js';
import { postgresTestUrl } from '../support/postgres.js';
import { runCli } from '../support/cli.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const P = 6;
const DEADLINE_MS = 10_000;
/** Monday 2026-03-23. */
const MONDAY = Date.UTC(2026, 2, 23);

const settings = {
  partitions: P,
  allowedLatenessMs: 10 * MIN,
  restatementHorizonMs: 3 * DAY,
  maxFutureSkewMs: 5 * MIN,
  maxOutOfOrdernessMs: 0,
  watermarkMode: 'clock',
} as const;

let etcd: EtcdServer;
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  etcd = await startEtcd();
});

afterAll(async () => {
  await etcd?.stop();
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A logger that hands every message to `onMessage` as it is logged. */
function watchingLogger(onMessage: (msg: string) => void): Logger {
  return pino(
    { level: 'info' },
    { write: (line: string) => onMessage((JSON.parse(line) as { msg: string }).msg) },
  );
}

/** A shard as a shard process runs it: registered, following the ring, serving over gRPC. */
class LiveShard {
  private queue: Promise<void> = Promise.resolve();
  private stopped = false;

  private constructor(
    readonly id: string,
    readonly stateDir: string,
    readonly server: ShardServer,
    private readonly membership: Membership,
    private readonly subscription: Subscription,
  ) {}

  static async start(
    id: string,
    dir: string,
    store: EtcdCoordinationStore,
    logger: Logger = silentLogger(),
  ): Promise<LiveShard> {
    const stateDir = path.join(dir, id);
    const open = (partitions: number[], ringEpoch: number, dropUnheld: boolean) =>
      PartitionHost.open({
        stateDir,
        partitionCount: P,
        partitions,
        ringEpoch,
        dropUnheld,
        allowedLatenessMs: settings.allowedLatenessMs,
        memoryBudgetBytes: 1024 ** 3,
        logger,
      });
    const server = await ShardServer.start({
      host: await open([], 0, false),
      address: '127.0.0.1:0',
      logger: silentLogger(),
    });
    const assignment = new RingAssignment({
      shardId: id,
      partitionCount: P,
      slot: server,
      open: (partitions, ringEpoch) => open(partitions, ringEpoch, true),
      logger: silentLogger(),
    });
    const membership = await store.registerShard(id, server.address, 10);

    let shard: LiveShard | undefined;
    const rings: Ring[] = [];
    const subscription = await store.watchRing((ring) => {
      if (shard === undefined) rings.push(ring);
      else shard.follow(assignment, ring);
    });
    shard = new LiveShard(id, stateDir, server, membership, subscription);
    for (const ring of rings) shard.follow(assignment, ring);
    cleanups.push(() => shard.stop());

    return shard;
  }

  get address(): string {
    return this.server.address;
  }

  get host(): PartitionHost {
    return this.server.host;
  }

  /** Resolves once the host holds exactly `partitions` under `ringEpoch`. */
  async serving(ringEpoch: number, partitions: readonly number[]): Promise<void> {
    await eventually(`${this.id} serving epoch ${ringEpoch}`, () =>
      this.host.ringEpoch === ringEpoch &&
      JSON.stringify(this.host.partitions) === JSON.stringify(partitions)
        ? true
        : undefined,
    );
  }

  /** Stops following the ring, leaves etcd, stops serving and closes the store. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;

    await this.subscription.close();
    await this.queue;
    await this.membership.release().catch(() => undefined);
    await this.server.close();
    await this.server.host.close();
  }

  private follow(assignment: RingAssignment, ring: Ring): void {
    this.queue = this.queue
      .then(() => assignment.apply(ring))
      .then(
        () => undefined,
        // A closed host refuses the reopen; the scenario that closes it expects that.
        (err: unknown) => {
          if (!(err instanceof ShardError && err.kind === 'unavailable')) throw err;
        },
      );
  }
}

/**
 * Routes partition batches by the ring and the membership in etcd, one ordered stream per
 * partition with sequences from 1, retrying a refused batch under the newest ring.
 */
class RetryingRouter {
  readonly view = new RingView();
  /** Every batch with the stamp it was sent under, for the replay check. */
  readonly sent: { stamp: { senderId: string; sequence: number }; batch: PartitionBatch }[] = [];
  /** How often each kind of refusal was retried. */
  readonly refusals = new Map<string, number>();
  /** Acknowledgements that said the batch had been applied before. */
  duplicates = 0;
  private readonly sequences = new Map<number, number>();
  private readonly clients = new Map<string, ShardRpcClient>();
  private readonly subscriptions: Subscription[] = [];

  static async start(store: EtcdCoordinationStore): Promise<RetryingRouter> {
    const router = new RetryingRouter();
    router.subscriptions.push(await store.watchRing((ring) => router.view.setRing(ring)));
    router.subscriptions.push(
      await store.watchShards((shards) => router.view.setAddresses(shards)),
    );
    cleanups.push(() => router.close());

    return router;
  }

  async send(batches: readonly PartitionBatch[]): Promise<void> {
    for (const batch of batches) {
      const sequence = (this.sequences.get(batch.partition) ?? 0) + 1;
      this.sequences.set(batch.partition, sequence);
      const stamp = { senderId: 'router-1', sequence };
      this.sent.push({ stamp, batch });
      await this.deliver(stamp, batch);
    }
  }

  async close(): Promise<void> {
    for (const subscription of this.subscriptions) await subscription.close();
    for (const client of this.clients.values()) client.close();
  }

  private async deliver(
    stamp: { senderId: string; sequence: number },
    batch: PartitionBatch,
  ): Promise<void> {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const table = this.view.current();
      const owner = table?.ring.owners[batch.partition];
      const address = owner === undefined ? undefined : table?.addresses.get(owner);
      try {
        if (table === undefined || address === undefined) {
          throw new ShardError('unavailable', `no address for partition ${batch.partition} yet`);
        }
        const call = { ringEpoch: table.ring.epoch, stamp, batch };
        const outcome = await this.client(address).route(call, DEADLINE_MS);
        if (outcome.duplicate) this.duplicates++;
        return;
      } catch (err) {
        const again =
          err instanceof ShardError &&
          (err.retryable || err.kind === 'epoch-mismatch' || err.kind === 'not-owner');
        if (!again || Date.now() > deadline) throw err;
        this.refusals.set(err.kind, (this.refusals.get(err.kind) ?? 0) + 1);
        await sleep(10);
      }
    }
  }

  private client(address: string): ShardRpcClient {
    let client = this.clients.get(address);
    if (client === undefined) this.clients.set(address, (client = new ShardRpcClient(address)));

    return client;
  }
}

async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/** A cluster of live shards, a router, a warehouse and the events sent so far. */
interface Cluster {
  readonly dir: string;
  readonly clusterName: string;
  readonly store: EtcdCoordinationStore;
  readonly warehouse: Warehouse;
  readonly router: RetryingRouter;
  readonly events: ModelEvent[];
  /** Rings in the order the watch delivered them. */
  readonly rings: Ring[];
  send(events: readonly ModelEvent[]): Promise<void>;
  advanceClock(ms: number): Promise<void>;
  service(
    candidateId: string,
    logger?: Logger,
    retryBackoffMs?: number,
  ): Promise<CoordinatorService>;
}

async function startCluster(): Promise<Cluster> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'speedlayer-handoff-'));
  cleanups.push(() => fs.rm(dir, { recursive: true, force: true }));
  const clusterName = `h-${path.basename(dir).slice(-6).toLowerCase()}`;
  const store = await EtcdCoordinationStore.open({
    endpoints: [etcd.endpoint],
    clusterName,
    requestTimeoutMs: 2_000,
  });
  cleanups.push(() => store.close());
  const rings: Ring[] = [];
  const ringWatch = await store.watchRing((ring) => rings.push(ring));
  cleanups.push(() => ringWatch.close());

  const warehouse = await openWarehouse(dir);
  const router = await RetryingRouter.start(store);
  const events: ModelEvent[] = [];
  const eventRouter = new EventRouter({ ...settings, now: () => Date.UTC(2030, 0, 1) });

  return {
    dir,
    clusterName,
    store,
    warehouse,
    router,
    events,
    rings,
    send: async (more) => {
      events.push(...more);
      for (const batch of toBatches([...more], 40))
        await router.send(eventRouter.route(batch).batches);
    },
    advanceClock: (ms) => router.send(eventRouter.advanceClock(ms)),
    service: async (candidateId, logger = silentLogger(), retryBackoffMs = 200) => {
      const service = new CoordinatorService({
        coordination: { endpoints: [etcd.endpoint], clusterName, requestTimeoutMs: 2_000 },
        sink: warehouse,
        candidateId,
        partitions: P,
        allowedLatenessMs: settings.allowedLatenessMs,
        logger,
        roundIntervalMs: 50,
        leaseTtlSeconds: 3,
        initialShards: 2,
        port: { reportDeadlineMs: 1000 },
        handoff: { retryBackoffMs, adoptDeadlineMs: 5000 },
      });
      cleanups.push(() => service.close());
      await service.start();

      return service;
    },
  };
}

/**
 * The real PostgreSQL server in a fresh schema (dropped afterwards) when the test server's
 * URL is set; PGlite, which takes seconds to start, otherwise.
 */
async function openWarehouse(dir: string): Promise<Warehouse> {
  const url = postgresTestUrl();
  if (url === undefined) {
    const warehouse = await Warehouse.open({ dataDir: path.join(dir, 'warehouse') });
    cleanups.push(() => warehouse.close());
    return warehouse;
  }

  const schema = `sl_handoff_${randomBytes(4).toString('hex')}`;
  cleanups.push(async () => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await client.end();
  });
  const warehouse = await Warehouse.open({ postgresUrl: url, schema });
  cleanups.push(() => warehouse.close());

  return warehouse;
}

/** `users` users, each with two events in [fromMs, toMs), every tenth event sent twice. */
function onTime(prefix: string, users: number, fromMs: number, toMs: number): ModelEvent[] {
  const events: ModelEvent[] = [];
  for (let i = 0; i < users * 2; i++) {
    const t = fromMs + Math.floor((i / (users * 2)) * (toMs - fromMs));
    const event = { userId: `${prefix}${(i * 7) % users}`, eventMs: t, receiveMs: t };
    events.push(event);
    if (i % 10 === 0) events.push({ ...event });
  }

  return events;
}

/** Periods whose close point `clockMs` has passed. */
function closedBy(counts: Counts, clockMs: number): Counts {
  const length: Record<string, number> = { hour: HOUR, day: DAY, week: 7 * DAY };
  const out: Counts = new Map();
  for (const [key, n] of counts) {
    const [type, iso] = key.split(',') as [string, string];
    if (Date.parse(iso) + (length[type] as number) + settings.allowedLatenessMs <= clockMs) {
      out.set(key, n);
    }
  }

  return out;
}

/** Per period, its versions' values in order; checks they run 1..n with no repeat. */
function versionsByPeriod(history: readonly VersionRow[]): Map<string, number[]> {
  const keys = history.map((r) => `${r.periodType},${r.periodStartMs},${r.version}`);
  expect(new Set(keys).size).toBe(keys.length);

  const byKey = new Map<string, VersionRow[]>();
  for (const row of history) {
    const [key] = [...rowsToCounts([row]).keys()] as [string];
    byKey.set(key, [...(byKey.get(key) ?? []), row]);
  }
  const out = new Map<string, number[]>();
  for (const [key, rows] of byKey) {
    const sorted = [...rows].sort((a, b) => a.version - b.version);
    expect(sorted.map((r) => r.version)).toEqual(sorted.map((_, i) => i + 1));
    out.set(
      key,
      sorted.map((r) => r.distinctUsers),
    );
  }

  return out;
}

/**
 * Waits until the warehouse holds, for every period closed by `clockMs`, a first version
 * equal to the model's on-time count and a last one equal to its count of every event;
 * then checks that every version in between grows, and that nothing else was published.
 */
async function expectExact(cluster: Cluster, clockMs: number): Promise<VersionRow[]> {
  const model = lateModel(cluster.events, settings);
  const first = closedBy(model.first, clockMs);
  const last = closedBy(model.last, clockMs);
  const history = await eventually('the model numbers to be published', async () => {
    const rows = await cluster.warehouse.queryHistory({});
    const latest = new Map<string, number>();
    for (const row of rows) {
      const [[key, n]] = [...rowsToCounts([row])] as [[string, number]];
      latest.set(key, Math.max(latest.get(key) ?? 0, n));
    }
    return [...last].every(([key, n]) => latest.get(key) === n) ? rows : undefined;
  });

  const versions = versionsByPeriod(history);
  expect(new Map([...versions].map(([key, values]) => [key, values[0]]))).toEqual(first);
  expect(new Map([...versions].map(([key, values]) => [key, values.at(-1)]))).toEqual(last);
  for (const values of versions.values()) {
    for (let i = 1; i < values.length; i++) expect(values[i]).toBeGreaterThan(values[i - 1]!);
  }

  return history;
}

/** Starts shards a and b and a leader, and waits for ring 1 to be served. */
async function startTwoShards(
  cluster: Cluster,
  options: { logger?: Logger; retryBackoffMs?: number } = {},
): Promise<{ shards: Map<string, LiveShard>; leader: CoordinatorService; ring1: Ring }> {
  const shards = new Map<string, LiveShard>();
  for (const id of ['shard-a', 'shard-b']) {
    shards.set(id, await LiveShard.start(id, cluster.dir, cluster.store, options.logger));
  }
  const leader = await cluster.service('coord-1', silentLogger(), options.retryBackoffMs);
  const ring1 = await eventually('ring 1', () => cluster.store.readRing());
  expect(ring1.epoch).toBe(1);
  for (const shard of shards.values()) {
    await shard.serving(
      1,
      ring1.owners.flatMap((o, p) => (o === shard.id ? [p] : [])),
    );
  }

  return { shards, leader, ring1 };
}

describe('partition handoff', () => {
  it('moves partitions to a joining shard while events flow: exact, once, and complete', async () => {
    const cluster = await startCluster();
    const { shards, ring1 } = await startTwoShards(cluster);

    // Phase 1: hours 10..12 close and are published under ring 1.
    await cluster.send(onTime('u-', 150, MONDAY + 10 * HOUR, MONDAY + 13 * HOUR));
    await cluster.advanceClock(MONDAY + 14 * HOUR);
    await expectExact(cluster, MONDAY + 14 * HOUR);

    // Phase 2: events flow, late ones into hour 10 among them, while shard-c joins.
    let sentAfterSwitch = 0;
    let i = 0;
    let joined: Promise<LiveShard> | undefined;
    while (sentAfterSwitch < 8) {
      if (i > 1000) throw new Error('no move to shard-c within 1000 batches');
      const t = MONDAY + 14 * HOUR + i * 20_000;
      const batch: ModelEvent[] = onTime(`v${i}-`, 6, t, t + 20_000);
      if (i % 4 === 0)
        batch.push({ userId: `late-${i}`, eventMs: MONDAY + 10 * HOUR + i, receiveMs: t });
      await cluster.send(batch);
      if (i === 3) joined = LiveShard.start('shard-c', cluster.dir, cluster.store);
      if ((cluster.router.view.current()?.ring.epoch ?? 0) >= 2) sentAfterSwitch++;
      i++;
    }
    const c = await (joined as Promise<LiveShard>);
    shards.set('shard-c', c);

    // Ring 2 names shard-c; nothing is pending; every shard serves its new set.
    const ring2 = (await cluster.store.readRing()) as Ring;
    expect(ring2.epoch).toBe(2);
    expect(await cluster.store.readPendingRing()).toBeUndefined();
    const moves = diffRings(ring1, ring2);
    expect(moves.map((m) => m.to)).toEqual(['shard-c', 'shard-c']);
    expect(ring2.owners.filter((o) => o === 'shard-c').length).toBe(2);
    for (const shard of shards.values()) {
      await shard.serving(
        2,
        ring2.owners.flatMap((o, p) => (o === shard.id ? [p] : [])),
      );
    }

    // Batches were refused while the partitions moved, and every one was applied once.
    const waited =
      (cluster.router.refusals.get('partition-moving') ?? 0) +
      (cluster.router.refusals.get('epoch-mismatch') ?? 0);
    expect(waited).toBeGreaterThan(0);
    expect(cluster.router.duplicates).toBe(0);

    const clock = MONDAY + 14 * HOUR + i * 20_000 + 2 * HOUR;
    await cluster.advanceClock(clock);
    const history = await expectExact(cluster, clock);
    expect(new Set(history.map((r) => r.ringEpoch))).toEqual(new Set([1, 2]));
    const hour10 = history.filter(
      (r) => r.periodType === 'hour' && r.periodStartMs === MONDAY + 10 * HOUR,
    );
    expect(hour10.length).toBeGreaterThan(1);

    // The moved partitions' state is on shard-c: a replay of every batch changes nothing.
    const keys = [10, 11, 12, 14].map((h) =>
      periodKey({ type: 'hour', startMs: MONDAY + h * HOUR }),
    );
    const moved = moves.map((m) => m.partition);
    const before = await c.host.counts(keys, moved);
    expect(before.every(({ counts }) => [...counts.values()].every((n) => n > 0))).toBe(true);
    for (const { stamp, batch } of cluster.router.sent.filter((s) =>
      moved.includes(s.batch.partition),
    )) {
      const replay = await c.host.route(stamp, batch);
      expect(replay.duplicate).toBe(true);
    }
    expect(await c.host.counts(keys, moved)).toEqual(before);

    // ... and gone from the store of the shard that held it.
    for (const move of moves) {
      const owner = shards.get(move.from) as LiveShard;
      await owner.stop();
      const store = await LevelStateStore.open(owner.stateDir);
      try {
        expect(await store.holdsState(move.partition)).toBe(false);
        const kept = ring2.owners.findIndex((o) => o === move.from);
        expect(await store.holdsState(kept)).toBe(true);
      } finally {
        await store.close();
      }
    }
  });

  it('moves every partition off a decommissioned shard while events flow, and gives it none back', async () => {
    const cluster = await startCluster();
    const { shards, ring1 } = await startTwoShards(cluster);
    await cluster.send(onTime('u-', 150, MONDAY + 10 * HOUR, MONDAY + 13 * HOUR));
    await cluster.advanceClock(MONDAY + 14 * HOUR);
    await expectExact(cluster, MONDAY + 14 * HOUR);
    const fromB = ring1.owners.flatMap((o, p) => (o === 'shard-b' ? [p] : []));
    expect(fromB.length).toBe(3);

    // `speedlayer decommission` marks shard-b as leaving and waits, while events flow.
    const etcdFlags = ['--etcd', etcd.endpoint, '--cluster', cluster.clusterName];
    const decommissioned = runCli(['decommission', ...etcdFlags, '--shard', 'shard-b']);
    let i = 0;
    while ((cluster.router.view.current()?.ring.epoch ?? 0) < 2) {
      if (i > 1000) throw new Error('no move off shard-b within 1000 batches');
      const t = MONDAY + 14 * HOUR + i * 20_000;
      const batch: ModelEvent[] = onTime(`v${i}-`, 6, t, t + 20_000);
      if (i % 4 === 0)
        batch.push({ userId: `late-${i}`, eventMs: MONDAY + 10 * HOUR + i, receiveMs: t });
      await cluster.send(batch);
      i++;
    }
    for (let k = 0; k < 8; k++, i++) {
      const t = MONDAY + 14 * HOUR + i * 20_000;
      await cluster.send(onTime(`w${i}-`, 6, t, t + 20_000));
    }
    const run = await decommissioned;
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('shard-b: marked as leaving; its partitions move to shard-a');
    expect(run.stdout).toContain('shard-b: owns no partition under ring epoch 2; stop it now\n');

    // Ring 2 is shard-a's alone; shard-b, still registered, serves nothing.
    const ring2 = (await cluster.store.readRing()) as Ring;
    expect(ring2.epoch).toBe(2);
    expect(ring2.owners.every((o) => o === 'shard-a')).toBe(true);
    expect(diffRings(ring1, ring2).map((m) => m.partition)).toEqual(fromB);
    await shards.get('shard-a')!.serving(2, [0, 1, 2, 3, 4, 5]);
    await shards.get('shard-b')!.serving(2, []);
    expect(cluster.router.duplicates).toBe(0);

    const clock = MONDAY + 14 * HOUR + i * 20_000 + 2 * HOUR;
    await cluster.advanceClock(clock);
    const history = await expectExact(cluster, clock);
    expect(new Set(history.map((r) => r.ringEpoch))).toEqual(new Set([1, 2]));

    // A registered shard that owns nothing is not given partitions back while it leaves.
    await sleep(1_500);
    expect((await cluster.store.readRing())?.epoch).toBe(2);
    expect(await cluster.store.listLeaving()).toEqual(['shard-b']);

    // Its state went with the partitions.
    const b = shards.get('shard-b') as LiveShard;
    await b.stop();
    const store = await LevelStateStore.open(b.stateDir);
    try {
      for (const p of fromB) expect(await store.holdsState(p)).toBe(false);
    } finally {
      await store.close();
    }

    // --cancel clears the mark; a shard not registered cannot be decommissioned.
    const cancelled = await runCli([
      'decommission',
      ...etcdFlags,
      '--shard',
      'shard-b',
      '--cancel',
    ]);
    expect(cancelled.code).toBe(0);
    expect(await cluster.store.listLeaving()).toEqual([]);
    await eventually('shard-b to leave the list', async () =>
      (await cluster.store.listShards()).every((s) => s.shardId !== 'shard-b') ? true : undefined,
    );
    const absent = await runCli(['decommission', ...etcdFlags, '--shard', 'shard-b']);
    expect(absent.code).toBe(1);
    expect(absent.stderr).toContain(
      `shard-b is not registered (registered in cluster '${cluster.clusterName}': shard-a)`,
    );
    const otherCluster = etcdFlags.map((f, i) => (etcdFlags[i - 1] === '--cluster' ? 'nosuch' : f));
    const nowhere = await runCli(['decommission', ...otherCluster, '--shard', 'shard-a']);
    expect(nowhere.code).toBe(1);
    expect(nowhere.stderr).toContain(
      "shard-a is not registered (no shard is registered in cluster 'nosuch' (is --cluster right?))",
    );
    const last = await runCli(['decommission', ...etcdFlags, '--shard', 'shard-a']);
    expect(last.code).toBe(1);
    expect(last.stderr).toContain('no other shard is registered to take the partitions of shard-a');
  });

  it('aborts a move whose adopting shard closes mid-copy: the old owners serve under a new epoch', async () => {
    const cluster = await startCluster();
    let c: LiveShard | undefined;
    let released = 0;
    // The owner logs the release before it streams the first chunk: c closes right then.
    const owners = watchingLogger((msg) => {
      if (msg !== 'partition released' || released++ > 0) return;
      void c?.host.close();
    });
    // A long backoff: the leader does not plan again while shard-c is on its way out.
    const { ring1 } = await startTwoShards(cluster, { logger: owners, retryBackoffMs: 60_000 });
    await cluster.send(onTime('u-', 120, MONDAY + 10 * HOUR, MONDAY + 12 * HOUR));

    c = await LiveShard.start('shard-c', cluster.dir, cluster.store);
    const ring2 = await eventually('the abort', async () => {
      const ring = await cluster.store.readRing();
      return ring !== undefined && ring.epoch >= 2 ? ring : undefined;
    });
    expect(released).toBeGreaterThan(0);
    expect(ring2).toEqual({ ...ring1, epoch: 2 });
    expect(await cluster.store.readPendingRing()).toBeUndefined();
    // shard-c is gone for good; no other move starts.
    await c.stop();

    await cluster.send(onTime('w-', 120, MONDAY + 12 * HOUR, MONDAY + 13 * HOUR));
    await cluster.advanceClock(MONDAY + 14 * HOUR);
    const history = await expectExact(cluster, MONDAY + 14 * HOUR);
    expect(history.some((r) => r.ringEpoch === 2)).toBe(true);
    expect((await cluster.store.readRing())?.epoch).toBe(2);
    expect(cluster.router.duplicates).toBe(0);

    // The partial copy on shard-c is dropped when its store opens under the abort's ring.
    const host = await PartitionHost.open({
      stateDir: c.stateDir,
      partitionCount: P,
      partitions: [],
      ringEpoch: 2,
      dropUnheld: true,
      allowedLatenessMs: settings.allowedLatenessMs,
      memoryBudgetBytes: 1024 ** 3,
      logger: silentLogger(),
    });
    await host.close();
    const store = await LevelStateStore.open(c.stateDir);
    try {
      for (let p = 0; p < P; p++) expect(await store.holdsState(p)).toBe(false);
    } finally {
      await store.close();
    }
  });

  it('aborts a move left pending by a leader that closed, then moves again: exact throughout', async () => {
    const cluster = await startCluster();
    const { leader, ring1 } = await startTwoShards(cluster);
    await cluster.send(onTime('u-', 120, MONDAY + 10 * HOUR, MONDAY + 12 * HOUR));
    await cluster.advanceClock(MONDAY + 12 * HOUR);
    await expectExact(cluster, MONDAY + 12 * HOUR);

    // The leader closes as soon as it has planned, before any copy.
    await leader.close();
    let planned = false;
    const closing = watchingLogger((msg) => {
      if (msg !== 'partition move planned' || planned) return;
      planned = true;
      void second.close();
    });
    const second = await cluster.service('coord-2', closing);
    await eventually('coord-2 to lead', () => (second.state === 'leading' ? true : undefined));
    await LiveShard.start('shard-c', cluster.dir, cluster.store);
    await eventually('the plan', () => (planned ? true : undefined));
    await eventually('coord-2 to stop', () => (second.state === 'stopped' ? true : undefined));
    expect(await cluster.store.readPendingRing()).toMatchObject({ epoch: 2 });
    expect((await cluster.store.readRing())?.epoch).toBe(1);

    // The next leader aborts (old owners, epoch 2), then moves to shard-c (epoch 3).
    await cluster.service('coord-3');
    await eventually('ring 3 from the watch', () => (cluster.rings.length >= 3 ? true : undefined));
    expect(cluster.rings.map((r) => r.epoch)).toEqual([1, 2, 3]);
    expect(cluster.rings[1]).toEqual({ ...ring1, epoch: 2 });
    expect(cluster.rings[2]?.owners.filter((o) => o === 'shard-c').length).toBe(2);

    await cluster.send(onTime('w-', 120, MONDAY + 12 * HOUR, MONDAY + 14 * HOUR));
    await cluster.advanceClock(MONDAY + 15 * HOUR);
    const history = await expectExact(cluster, MONDAY + 15 * HOUR);
    expect(history.some((r) => r.ringEpoch === 3)).toBe(true);
    expect(cluster.router.duplicates).toBe(0);
  });
});
