/**
 * CoordinatorService against a real etcd (one per file, a cluster prefix per test), two
 * in-process ShardServers holding disjoint partitions of P = 4 as computeRing assigns
 * them, a PGlite warehouse, and events routed with the real EventRouter. Scenarios:
 * - two services start; exactly one leads and its rounds publish version 1 of the closed
 *   periods, equal to a brute-force count;
 * - the leader closes: the standby takes over with a higher fencing token and goes on;
 *   after more events and late ones, every period's versions run 1..n with strictly
 *   increasing values, the first and last exact;
 * - an operator revokes the leader's lease: it goes back to campaigning and the standby
 *   leads; each logs only its lifecycle lines;
 * - a shard joins that cannot be reached: once a round has reached every partition, the
 *   leader plans a move to it, the copy fails, and the move aborts: ring epoch 2 keeps the
 *   old owners and nothing stays pending (the scale-out itself: test/cluster/handoff);
 * - a deposed leader's Coordinator (built with the old fence) cannot publish once the
 *   new leader has claimed the fence: its round rejects with 'stale fencing token' and
 *   nothing is written.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

import { pino, type Logger } from 'pino';

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { Coordinator, type RoundResult } from '../../src/coordinator/coordinator.js';
import { CoordinatorService, type FencedSink } from '../../src/coordinator/coordinator-service.js';
import { EventRouter, type EventRouterOptions } from '../../src/ingest/event-router.js';
import { silentLogger } from '../../src/observability/index.js';
import {
  EtcdCoordinationStore,
  computeRing,
  partitionsOf,
  type Ring,
} from '../../src/ring/index.js';
import { PartitionHost } from '../../src/shard/partition-host.js';
import type { PartitionBatch } from '../../src/shard/types.js';
import type { VersionRow } from '../../src/sink/index.js';
import { Warehouse } from '../../src/sink/warehouse.js';
import { GrpcPartitionsPort } from '../../src/transport/grpc-partitions.js';
import { ShardRpcClient } from '../../src/transport/shard-client.js';
import { ShardServer } from '../../src/transport/shard-server.js';
import { startEtcd, type EtcdServer } from '../support/etcd.js';
import { rng, toBatches } from '../support/events.js';
import { lateModel, type ModelEvent } from '../support/late-model.js';
import { rowsToCounts, type Counts } from '../support/oracle.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const P = 4;
const SHARD_IDS = ['shard-a', 'shard-b'];
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
  memoryBudgetBytes: 1024 ** 3,
} as const;
const now = (): number => Date.UTC(2030, 0, 1);

const run = promisify(execFile);

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

async function tempDir(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'speedlayer-coord-service-'));
  cleanups.push(() => fs.rm(dir, { recursive: true, force: true }));

  return dir;
}

/** Two shards registered in etcd, holding what computeRing assigns them, a warehouse. */
interface Cluster {
  readonly clusterName: string;
  /** The shards' store, also for reading the leader. */
  readonly store: EtcdCoordinationStore;
  readonly ring: Ring;
  /** Partition → address. */
  readonly addresses: string[];
  readonly warehouse: Warehouse;
  readonly send: (events: readonly ModelEvent[]) => Promise<void>;
  readonly advanceClock: (ms: number) => Promise<void>;
  readonly service: (
    candidateId: string,
    logger?: Logger,
    sink?: FencedSink,
  ) => Promise<CoordinatorService>;
}

async function startCluster(): Promise<Cluster> {
  const dir = await tempDir();
  const clusterName = `t-${randomUUID().slice(0, 8)}`;
  // computeRing is deterministic: the service will compute this same ring.
  const ring = computeRing(P, SHARD_IDS);
  // PGlite first: starting it can hold the event loop for seconds, longer than a lease.
  const warehouse = await Warehouse.open({ dataDir: path.join(dir, 'warehouse') });
  cleanups.push(() => warehouse.close());

  const shardStore = await EtcdCoordinationStore.open({
    endpoints: [etcd.endpoint],
    clusterName,
    requestTimeoutMs: 2_000,
  });
  cleanups.push(() => shardStore.close());

  const addressOf = new Map<string, string>();
  for (const shardId of SHARD_IDS) {
    const host = await PartitionHost.open({
      stateDir: path.join(dir, shardId),
      partitionCount: P,
      partitions: partitionsOf(ring, shardId),
      ringEpoch: ring.epoch,
      allowedLatenessMs: settings.allowedLatenessMs,
      memoryBudgetBytes: settings.memoryBudgetBytes,
      logger: silentLogger(),
    });
    const server = await ShardServer.start({
      host,
      address: '127.0.0.1:0',
      logger: silentLogger(),
    });
    cleanups.push(async () => {
      await server.close();
      await host.close();
    });
    addressOf.set(shardId, server.address);
    await shardStore.registerShard(shardId, server.address, 10);
  }
  const addresses = ring.owners.map((owner) => addressOf.get(owner) as string);

  const router = new EventRouter({ ...settings, now } as EventRouterOptions);
  const clients = new Map<string, ShardRpcClient>();
  const sequences = new Map<number, number>();
  cleanups.push(() => {
    for (const c of clients.values()) c.close();
  });
  const route = async (batches: readonly PartitionBatch[]): Promise<void> => {
    for (const batch of batches) {
      const address = addresses[batch.partition] as string;
      let client = clients.get(address);
      if (client === undefined) clients.set(address, (client = new ShardRpcClient(address)));
      const sequence = (sequences.get(batch.partition) ?? 0) + 1;
      const stamp = { senderId: 'node-1', sequence };
      await client.route({ ringEpoch: ring.epoch, stamp, batch }, DEADLINE_MS);
      sequences.set(batch.partition, sequence);
    }
  };

  return {
    clusterName,
    store: shardStore,
    ring,
    addresses,
    warehouse,
    send: async (events) => {
      for (const batch of toBatches([...events], 500)) await route(router.route(batch).batches);
    },
    advanceClock: (ms) => route(router.advanceClock(ms)),
    service: async (candidateId, logger = silentLogger(), sink: FencedSink = warehouse) => {
      const service = new CoordinatorService({
        coordination: { endpoints: [etcd.endpoint], clusterName, requestTimeoutMs: 2_000 },
        sink,
        candidateId,
        partitions: P,
        allowedLatenessMs: settings.allowedLatenessMs,
        logger,
        roundIntervalMs: 100,
        leaseTtlSeconds: 3,
        port: { reportDeadlineMs: 1000 },
      });
      cleanups.push(() => service.close());
      await service.start();

      return service;
    },
  };
}

async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

function leaderOf(services: readonly CoordinatorService[]): CoordinatorService | undefined {
  const leading = services.filter((s) => s.state === 'leading' && s.ring !== undefined);

  return leading.length === 1 ? leading[0] : undefined;
}

/** `users` distinct users, each with one on-time event in [fromMs, toMs). */
function onTime(
  seed: number,
  prefix: string,
  users: number,
  fromMs: number,
  toMs: number,
): ModelEvent[] {
  const next = rng(seed);
  const events: ModelEvent[] = [];
  for (let i = 0; i < users * 2; i++) {
    const t = fromMs + Math.floor((i / (users * 2)) * (toMs - fromMs));
    events.push({ userId: `${prefix}${Math.floor(next() * users)}`, eventMs: t, receiveMs: t });
  }

  return events;
}

/** Periods whose close point the clock has passed. */
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

/** Per period, the values of its versions in version order, checking they run 1..n. */
function versionsByPeriod(history: readonly VersionRow[]): Map<string, number[]> {
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

function firstAndLast(history: readonly VersionRow[]): { first: Counts; last: Counts } {
  const first: Counts = new Map();
  const last: Counts = new Map();
  for (const [key, values] of versionsByPeriod(history)) {
    for (let i = 1; i < values.length; i++) {
      expect(values[i]).toBeGreaterThan(values[i - 1] as number);
    }
    first.set(key, values[0] as number);
    last.set(key, values.at(-1) as number);
  }

  return { first, last };
}

async function revokeAsOperator(leaseId: string): Promise<void> {
  const hex = BigInt(leaseId).toString(16);
  await run('etcdctl', [`--endpoints=${etcd.endpoint}`, 'lease', 'revoke', hex], {
    env: { ...process.env, ETCDCTL_API: '3' },
  });
}

interface LogLine {
  level: number;
  msg: string;
  heldToken?: number;
  leaderId?: string;
  hint?: string;
  err?: { message: string };
}

/** A logger that keeps every line it is given, parsed. */
function lineLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino(
    { level: 'debug' },
    { write: (line: string) => lines.push(JSON.parse(line) as LogLine) },
  );

  return { logger, lines };
}

/** A logger that keeps the messages it is given. */
function recordingLogger(): { logger: Logger; messages: string[] } {
  const messages: string[] = [];
  const logger = pino(
    { level: 'debug' },
    {
      write: (line: string) => {
        messages.push((JSON.parse(line) as { msg: string }).msg);
      },
    },
  );

  return { logger, messages };
}

describe('CoordinatorService', () => {
  it('elects one leader whose rounds publish exact finals, and hands over to the standby', async () => {
    const cluster = await startCluster();
    const a = await cluster.service('coord-a');
    const b = await cluster.service('coord-b');

    const leader = await eventually('one leader', () => leaderOf([a, b]));
    const standby = leader === a ? b : a;
    expect(standby.state).toBe('campaigning');
    expect(leader.ring).toEqual(cluster.ring);
    const firstToken = leader.fencingToken as number;

    // Phase 1: four hours on time, then the clock passes their close.
    const events: ModelEvent[] = onTime(1, 'u-', 300, MONDAY + 10 * HOUR, MONDAY + 14 * HOUR);
    await cluster.send(events);
    let clock = MONDAY + 15 * HOUR;
    await cluster.advanceClock(clock);

    let model = lateModel(events, settings);
    const firstClosed = closedBy(model.first, clock);
    expect(firstClosed.size).toBe(4);
    await eventually('version 1 of the closed hours', async () => {
      const history = await cluster.warehouse.queryHistory({});
      return history.length === firstClosed.size ? history : undefined;
    });
    let history = await cluster.warehouse.queryHistory({});
    expect(firstAndLast(history).first).toEqual(firstClosed);
    expect(new Set(history.map((r) => r.fencingToken))).toEqual(new Set([firstToken]));
    expect(new Set(history.map((r) => r.ringEpoch))).toEqual(new Set([cluster.ring.epoch]));

    // Phase 2: the leader goes; the standby takes over with a higher token.
    await leader.close();
    expect(leader.state).toBe('stopped');
    await eventually('the standby to lead', () => leaderOf([standby]));
    expect(standby.fencingToken).toBeGreaterThan(firstToken);
    expect(standby.ring).toEqual(cluster.ring);

    // More hours on time, late events into the published hours, and the day closes.
    const more = onTime(2, 'v-', 200, MONDAY + 15 * HOUR, MONDAY + 18 * HOUR);
    const lateAt = MONDAY + 18 * HOUR;
    const late = onTime(3, 'late-', 50, MONDAY + 10 * HOUR, MONDAY + 13 * HOUR).map((e) => ({
      ...e,
      receiveMs: lateAt,
    }));
    await cluster.send([...more, ...late]);
    clock = MONDAY + DAY + HOUR;
    await cluster.advanceClock(clock);
    events.push(...more, ...late);

    model = lateModel(events, settings);
    const expectedLast = closedBy(model.last, clock);
    const expectedFirst = closedBy(model.first, clock);
    expect(model.restated.size).toBeGreaterThan(0);
    history = await eventually('the last versions to match', async () => {
      const rows = await cluster.warehouse.queryHistory({});
      const latest = new Map<string, number>();
      for (const row of rows) {
        const [[key, n]] = [...rowsToCounts([row])] as [[string, number]];
        latest.set(key, Math.max(latest.get(key) ?? 0, n));
      }
      const done = [...expectedLast].every(([key, n]) => latest.get(key) === n);
      return done ? rows : undefined;
    });

    // Let a few more rounds run: nothing more may be written.
    await sleep(500);
    history = await cluster.warehouse.queryHistory({});
    const { first, last } = firstAndLast(history);
    expect(last).toEqual(expectedLast);
    expect(first).toEqual(expectedFirst);
    expect([...versionsByPeriod(history).values()].some((v) => v.length > 1)).toBe(true);
    const newer = history.filter((r) => r.fencingToken !== firstToken);
    expect(newer.length).toBeGreaterThan(0);
    expect(new Set(newer.map((r) => r.fencingToken))).toEqual(new Set([standby.fencingToken]));
  });

  it("refuses a deposed leader's publish once the new leader has claimed the fence", async () => {
    const cluster = await startCluster();
    const a = await cluster.service('coord-a');
    await eventually('a to lead', () => leaderOf([a]));
    const oldFence = { ringEpoch: cluster.ring.epoch, fencingToken: a.fencingToken as number };

    // The old leader's coordinator, kept alive past its term.
    const port = new GrpcPartitionsPort({
      addresses: cluster.addresses,
      fence: oldFence,
      reportDeadlineMs: 1000,
      logger: silentLogger(),
    });
    cleanups.push(() => port.close());
    const deposed = new Coordinator(port, cluster.warehouse, {
      allowedLatenessMs: settings.allowedLatenessMs,
      fence: oldFence,
      logger: silentLogger(),
    });
    await deposed.resume();

    await a.close();
    const b = await cluster.service('coord-b');
    await eventually('b to lead', () => leaderOf([b]));
    expect(b.fencingToken).toBeGreaterThan(oldFence.fencingToken);
    // b has claimed the fence; close it too so that nobody else publishes.
    await b.close();

    await cluster.send(onTime(4, 'w-', 100, MONDAY + 10 * HOUR, MONDAY + 11 * HOUR));
    await cluster.advanceClock(MONDAY + 12 * HOUR);

    await expect(deposed.round()).rejects.toThrow(/stale fencing token/);
    expect(await cluster.warehouse.queryHistory({})).toEqual([]);
    expect(await cluster.warehouse.queryCurrent({})).toEqual([]);

    // A new leader publishes the hour the deposed one could not.
    const c = await cluster.service('coord-c');
    await eventually('c to lead', () => leaderOf([c]));
    const history = await eventually('the hour to be published', async () => {
      const rows = await cluster.warehouse.queryHistory({});
      return rows.length > 0 ? rows : undefined;
    });
    expect(history).toMatchObject([
      { periodType: 'hour', periodStartMs: MONDAY + 10 * HOUR, version: 1, status: 'final' },
    ]);
    expect(history[0]?.fencingToken).toBe(c.fencingToken);
    expect(history[0]?.distinctUsers).toBe(
      new Set(onTime(4, 'w-', 100, MONDAY + 10 * HOUR, MONDAY + 11 * HOUR).map((e) => e.userId))
        .size,
    );
  });

  it('steps down, loudly, when the database fence holds a newer token than etcd issues', async () => {
    // As after etcd was rebuilt from nothing: its revisions restart below the fence.
    const cluster = await startCluster();
    const held = 1_000_000_000;
    await cluster.warehouse.claimFence({ ringEpoch: 9, fencingToken: held });
    const { logger, lines } = lineLogger();
    const a = await cluster.service('coord-a', logger);

    await eventually('two refused terms', () =>
      lines.filter((l) => l.msg.startsWith('the writer fence')).length >= 2 ? true : undefined,
    );
    const refused = lines.find((l) => l.msg.startsWith('the writer fence'));
    expect(refused).toMatchObject({
      level: 50,
      msg: 'the writer fence holds a token above any leader etcd knows; stepping down',
      heldToken: held,
      hint: expect.stringMatching(/was it rebuilt from nothing\?/),
    });
    expect(refused?.err?.message).toMatch(
      /^\[SL-SINK-001\] stale fencing token \d+: the writer fence is at 1000000000, claimed by a newer writer$/,
    );
    expect(lines.map((l) => l.msg)).not.toContain('leadership acquired');
    expect(a.state).not.toBe('leading');
    expect(await cluster.store.readRing()).toBeUndefined();
  });

  it('takes a newer leader that claimed the fence first for an ordinary handover: no error', async () => {
    // The race this stands for: a's lease runs out between its election and its claim,
    // and the next leader claims first. Here etcd is made to name that leader, so that
    // a's claim is refused before a hears of its loss.
    const cluster = await startCluster();
    const store = await EtcdCoordinationStore.open({
      endpoints: [etcd.endpoint],
      clusterName: cluster.clusterName,
      requestTimeoutMs: 2_000,
    });
    cleanups.push(() => store.close());
    let newer: { candidateId: string; fencingToken: number; leaseId: string } | undefined;
    const seen = new Proxy(store, {
      get(target, property) {
        if (property === 'currentLeader' && newer !== undefined) {
          return () => Promise.resolve(newer);
        }
        const value: unknown = Reflect.get(target, property, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const sink: FencedSink = {
      loadPublished: () => cluster.warehouse.loadPublished(),
      publish: (batch, fence) => cluster.warehouse.publish(batch, fence),
      claimFence: async (fence) => {
        if (newer === undefined) {
          newer = { candidateId: 'coord-b', fencingToken: fence.fencingToken + 1000, leaseId: '1' };
          await cluster.warehouse.claimFence({ ringEpoch: 0, fencingToken: newer.fencingToken });
        }
        await cluster.warehouse.claimFence(fence);
      },
    };
    const { logger, lines } = lineLogger();
    const a = new CoordinatorService({
      coordination: seen,
      sink,
      candidateId: 'coord-a',
      partitions: P,
      allowedLatenessMs: settings.allowedLatenessMs,
      logger,
      roundIntervalMs: 100,
      leaseTtlSeconds: 3,
    });
    cleanups.push(() => a.close());
    await a.start();

    await eventually('a to campaign again', () =>
      lines.filter((l) => l.msg === 'campaigning').length >= 2 ? true : undefined,
    );
    expect(lines.filter((l) => l.level >= 50)).toEqual([]);
    expect(lines.find((l) => l.msg.startsWith('leadership lost'))).toMatchObject({
      level: 40,
      msg: 'leadership lost: a newer leader claimed the writer fence',
      leaderId: 'coord-b',
      heldToken: newer?.fencingToken,
    });
    expect(lines.map((l) => l.msg)).not.toContain('leadership acquired');
    expect(await cluster.warehouse.queryHistory({})).toEqual([]);
  });

  it('goes back to standby when its lease is revoked, logging only lifecycle lines', async () => {
    const cluster = await startCluster();
    const logs = { a: recordingLogger(), b: recordingLogger() };
    const a = await cluster.service('coord-a', logs.a.logger);
    await eventually('a to lead', () => leaderOf([a]));
    const b = await cluster.service('coord-b', logs.b.logger);
    const states: string[] = [];
    a.on('state', (to) => states.push(to));
    const oldToken = a.fencingToken as number;

    const leader = await cluster.store.currentLeader();
    expect(leader).toMatchObject({ candidateId: 'coord-a', fencingToken: oldToken });
    await revokeAsOperator(leader?.leaseId as string);

    await eventually('b to lead', () => leaderOf([b]));
    expect(b.fencingToken).toBeGreaterThan(oldToken);
    await eventually('a to campaign again', () => (a.state === 'campaigning' ? a : undefined));
    expect(states).toEqual(['campaigning']);
    expect(a.fencingToken).toBeUndefined();

    await cluster.send(onTime(5, 'x-', 80, MONDAY + 10 * HOUR, MONDAY + 11 * HOUR));
    await cluster.advanceClock(MONDAY + 12 * HOUR);
    const history = await eventually('the hour to be published', async () => {
      const rows = await cluster.warehouse.queryHistory({});
      return rows.length > 0 ? rows : undefined;
    });
    expect(history).toMatchObject([{ version: 1, fencingToken: b.fencingToken }]);
    await sleep(300);

    expect(logs.a.messages).toEqual([
      'campaigning',
      'leadership acquired',
      'ring written',
      'leadership lost',
      'campaigning',
    ]);
    expect(logs.b.messages).toEqual(['campaigning', 'leadership acquired', 'round published']);

    await a.close();
    await a.close();
    expect(a.state).toBe('stopped');
    expect(b.state).toBe('leading');
  });

  it('aborts a move to a joining shard it cannot reach: the old owners stay, under epoch 2', async () => {
    const cluster = await startCluster();
    const { logger, messages } = recordingLogger();
    const a = await cluster.service('coord-a', logger);
    await eventually('a to lead', () => leaderOf([a]));

    // A shard joins at an address nobody answers.
    await cluster.store.registerShard('shard-c', '127.0.0.1:1', 10);
    await eventually('the abort', () =>
      messages.includes(
        'partition move aborted: the old owners serve every partition under a new ring epoch',
      )
        ? true
        : undefined,
    );
    expect(messages).toContain('partition move planned');
    expect(messages).toContain('partition move failed; aborting it');
    expect(await cluster.store.readRing()).toEqual({ ...cluster.ring, epoch: 2 });
    expect(await cluster.store.readPendingRing()).toBeUndefined();
    await eventually('the port on ring 2', () => (a.ring?.epoch === 2 ? true : undefined));
  });
});
