/**
 * The process roles as real child processes: `speedlayer shard` twice and `speedlayer
 * coordinator` once, over a real etcd and the real PostgreSQL server (a fresh schema,
 * dropped afterwards; the file is skipped without SPEEDLAYER_TEST_POSTGRES_URL). P = 4.
 * Scenario:
 * - both shards register, the coordinator writes ring epoch 1 over both, and each shard
 *   logs 'shard serving' with its partitions of that ring;
 * - the test routes events itself (EventRouter + ShardRpcClient) to the owners the ring
 *   in etcd names, and moves the watermark past four hours: version 1 of each hour is
 *   published with the brute-force count;
 * - events of a still-open hour go to both shards; one shard is SIGKILLed and restarted
 *   with the same arguments: it recovers from its LevelDB, and after more events and the
 *   watermark the next hours' version 1 are exact (the events sent before the kill
 *   included), and no period has a duplicated version;
 * - SIGTERM: every process drains and exits 0.
 * And, with one shard process and rings written by the test: the shard clears a leaving
 * mark of its id when it starts; an epoch bump that keeps
 * the shard's partitions reopens them under the new epoch; a ring that gives half of
 * them to another shard reopens the shard with the other half under the new epoch.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';

import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { EventRouter } from '../../src/ingest/event-router.js';
import { EtcdCoordinationStore, partitionsOf, type Ring } from '../../src/ring/index.js';
import { ShardError } from '../../src/shard/errors.js';
import type { PartitionBatch } from '../../src/shard/types.js';
import type { VersionRow } from '../../src/sink/index.js';
import { Warehouse } from '../../src/sink/warehouse.js';
import { ShardRpcClient } from '../../src/transport/shard-client.js';
import { freePorts } from '../../cluster/ports.js';
import { startEtcd, type EtcdServer } from '../support/etcd.js';
import { rng, toBatches, type TestEvent } from '../support/events.js';
import { bruteForceCounts, rowsToCounts, type Counts } from '../support/oracle.js';
import { postgresTestUrl } from '../support/postgres.js';

const BIN = path.resolve(import.meta.dirname, '../../bin/speedlayer.js');
const MIN = 60_000;
const HOUR = 60 * MIN;
const P = 4;
const SHARD_IDS = ['shard-a', 'shard-b'] as const;
const READY_MS = 30_000;
const PUBLISH_MS = 20_000;
const DEADLINE_MS = 10_000;
/** Monday 2026-03-23. */
const MONDAY = Date.UTC(2026, 2, 23);
const settings = {
  partitions: P,
  allowedLatenessMs: 10 * MIN,
  restatementHorizonMs: 3 * 24 * HOUR,
  maxFutureSkewMs: 5 * MIN,
  maxOutOfOrdernessMs: 0,
  watermarkMode: 'clock',
} as const;

const postgresUrl = postgresTestUrl();
const schema = `sl_roles_${randomBytes(4).toString('hex')}`;
const cluster = `roles-${randomBytes(4).toString('hex')}`;

interface LogLine {
  readonly msg: string;
  readonly level?: number;
  readonly shardId?: string;
  readonly ringEpoch?: number;
  readonly partitions?: number[];
  readonly address?: string;
}

/** A running `speedlayer` process and the JSON lines it logged. */
class Proc {
  readonly lines: LogLine[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly waiters = new Set<() => void>();
  stderrTail = '';

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        resolve({ code, signal });
        for (const w of this.waiters) w();
      }),
    );
    createInterface({ input: child.stderr! }).on('line', (text) => {
      this.stderrTail = (this.stderrTail + text + '\n').slice(-4000);
      try {
        this.lines.push(JSON.parse(text) as LogLine);
      } catch {
        return; // Not a log line.
      }
      for (const w of this.waiters) w();
    });
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves with the first line (from index `from`) with message `msg`. */
  waitFor(msg: string, from = 0, timeoutMs = READY_MS): Promise<LogLine> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const line = this.lines.slice(from).find((l) => l.msg === msg);
        if (line !== undefined) done(() => resolve(line));
        else if (!this.running) {
          done(() => reject(new Error(`${this.name} exited before '${msg}':\n${this.stderrTail}`)));
        }
      };
      const timer = setTimeout(
        () =>
          done(() =>
            reject(
              new Error(`${this.name}: no '${msg}' within ${timeoutMs} ms:\n${this.stderrTail}`),
            ),
          ),
        timeoutMs,
      );
      const done = (settle: () => void): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        settle();
      };
      this.waiters.add(check);
      check();
    });
  }
}

const procs: Proc[] = [];

function start(name: string, args: readonly string[]): Proc {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const proc = new Proc(name, child);
  procs.push(proc);

  return proc;
}

async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = PUBLISH_MS,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Retries a call while the shard is unavailable (e.g. reconnecting after a restart). */
async function untilAvailable<T>(call: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + READY_MS;
  for (;;) {
    try {
      return await call();
    } catch (err) {
      if (!(err instanceof ShardError && err.kind === 'unavailable') || Date.now() > deadline) {
        throw err;
      }
      await sleep(100);
    }
  }
}

/** `users` distinct users, two on-time events each on average, in [fromMs, toMs). */
function onTime(seed: number, prefix: string, users: number, fromMs: number, toMs: number) {
  const next = rng(seed);
  const events: TestEvent[] = [];
  for (let i = 0; i < users * 2; i++) {
    const t = fromMs + Math.floor((i / (users * 2)) * (toMs - fromMs));
    events.push({ userId: `${prefix}${Math.floor(next() * users)}`, eventMs: t, receiveMs: t });
  }

  return events;
}

/** The brute-force counts of the hours in [fromMs, toMs). */
function hoursOf(counts: Counts, fromMs: number, toMs: number): Counts {
  const out: Counts = new Map();
  for (const [key, n] of counts) {
    const [type, iso] = key.split(',') as [string, string];
    const ms = Date.parse(iso);
    if (type === 'hour' && ms >= fromMs && ms < toMs) out.set(key, n);
  }

  return out;
}

/** The version-1 rows of the hours, as counts. */
function firstVersions(history: readonly VersionRow[]): Counts {
  return rowsToCounts(history.filter((r) => r.version === 1 && r.periodType === 'hour'));
}

let etcd: EtcdServer | undefined;
let dir: string | undefined;
let warehouse: Warehouse | undefined;
let store: EtcdCoordinationStore | undefined;
const clients = new Map<string, ShardRpcClient>();

beforeAll(async () => {
  if (postgresUrl === undefined) return;
  etcd = await startEtcd();
  dir = await mkdtemp(path.join(tmpdir(), 'speedlayer-roles-'));
  warehouse = await Warehouse.open({ postgresUrl, schema });
  store = await EtcdCoordinationStore.open({ endpoints: [etcd.endpoint], clusterName: cluster });
});

afterAll(async () => {
  for (const proc of procs) if (proc.running) proc.child.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exited));
  for (const client of clients.values()) client.close();
  await store?.close();
  await warehouse?.close();
  if (postgresUrl !== undefined) {
    const client = new pg.Client({ connectionString: postgresUrl });
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await client.end();
  }
  await etcd?.stop();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe.skipIf(postgresUrl === undefined)('speedlayer shard and coordinator processes', () => {
  it('publish exact hours, survive a SIGKILLed shard, and drain on SIGTERM', async () => {
    const endpoint = (etcd as EtcdServer).endpoint;
    const ports = new Map<string, number>();
    const free = await freePorts(SHARD_IDS.length);
    SHARD_IDS.forEach((id, i) => ports.set(id, free[i] as number));
    const shardArgs = (id: string): string[] => [
      'shard',
      ...['--id', id, '--etcd', endpoint, '--cluster', cluster, '--partitions', String(P)],
      ...['--data-dir', path.join(dir as string, id), '--port', String(ports.get(id))],
      ...['--allowed-lateness', '10m', '--lease-ttl', '15s', '--log-level', 'info'],
    ];

    // Both shards register first, so that the first ring the coordinator writes has both.
    const shards = new Map<string, Proc>(SHARD_IDS.map((id) => [id, start(id, shardArgs(id))]));
    await Promise.all([...shards.values()].map((s) => s.waitFor('waiting for ring assignment')));
    const coordinator = start('coordinator', [
      'coordinator',
      ...['--id', 'coord-1', '--etcd', endpoint, '--cluster', cluster, '--partitions', String(P)],
      ...['--postgres', postgresUrl as string, '--postgres-schema', schema],
      ...['--allowed-lateness', '10m', '--round-interval', '200ms', '--lease-ttl', '3s'],
    ]);
    const serving = await Promise.all(
      SHARD_IDS.map((id) => shards.get(id)!.waitFor('shard serving')),
    );

    const ring = (await (store as EtcdCoordinationStore).readRing()) as Ring;
    expect(ring.epoch).toBe(1);
    const addressOf = new Map<string, string>();
    for (const [i, id] of SHARD_IDS.entries()) {
      const line = serving[i] as LogLine;
      expect(line).toMatchObject({ shardId: id, ringEpoch: 1, partitions: partitionsOf(ring, id) });
      expect(line.partitions?.length).toBe(P / 2);
      addressOf.set(id, line.address as string);
    }

    // The test is the router: one ordered stream per partition, sequences from 1.
    const router = new EventRouter({ ...settings, now: () => Date.UTC(2030, 0, 1) });
    const sequences = new Map<number, number>();
    const route = async (batches: readonly PartitionBatch[]): Promise<void> => {
      for (const batch of batches) {
        const address = addressOf.get(ring.owners[batch.partition] as string) as string;
        let client = clients.get(address);
        if (client === undefined) clients.set(address, (client = new ShardRpcClient(address)));
        const sequence = (sequences.get(batch.partition) ?? 0) + 1;
        const call = { ringEpoch: ring.epoch, stamp: { senderId: 'test-router', sequence }, batch };
        await untilAvailable(() => (client as ShardRpcClient).route(call, DEADLINE_MS));
        sequences.set(batch.partition, sequence);
      }
    };
    const events: TestEvent[] = [];
    const send = async (more: TestEvent[]): Promise<void> => {
      events.push(...more);
      for (const batch of toBatches(more, 500)) await route(router.route(batch).batches);
    };
    const history = (): Promise<VersionRow[]> => (warehouse as Warehouse).queryHistory({});

    // Phase 1: four hours, then the watermark passes their close.
    await send(onTime(1, 'u-', 300, MONDAY + 10 * HOUR, MONDAY + 14 * HOUR));
    await route(router.advanceClock(MONDAY + 15 * HOUR));
    const phase1 = hoursOf(bruteForceCounts(events), MONDAY + 10 * HOUR, MONDAY + 14 * HOUR);
    expect(phase1.size).toBe(4);
    await eventually('version 1 of the first four hours', async () => {
      const rows = await history();
      return firstVersions(rows).size === 4 ? rows : undefined;
    });
    expect(firstVersions(await history())).toEqual(phase1);

    // Phase 2: events of an open hour reach both shards; then shard-a dies and comes back.
    await send(onTime(2, 'v-', 200, MONDAY + 15 * HOUR, MONDAY + 16 * HOUR));
    const victim = shards.get('shard-a') as Proc;
    victim.child.kill('SIGKILL');
    expect(await victim.exited).toEqual({ code: null, signal: 'SIGKILL' });
    const restarted = start('shard-a (restarted)', shardArgs('shard-a'));
    shards.set('shard-a', restarted);
    const back = await restarted.waitFor('shard serving');
    expect(back).toMatchObject({
      ringEpoch: 1,
      partitions: partitionsOf(ring, 'shard-a'),
      address: addressOf.get('shard-a'),
    });
    // It took its registration over at once: the shard never left the list.
    expect(restarted.lines.map((l) => l.msg)).toContain(
      'shard key taken over from a previous incarnation',
    );

    await send(onTime(3, 'w-', 200, MONDAY + 15 * HOUR, MONDAY + 18 * HOUR));
    await route(router.advanceClock(MONDAY + 19 * HOUR));
    const all = bruteForceCounts(events);
    const expected = hoursOf(all, MONDAY + 10 * HOUR, MONDAY + 18 * HOUR);
    expect(expected.size).toBe(7);
    const rows = await eventually('version 1 of the hours after the restart', async () => {
      const now = await history();
      return firstVersions(now).size === expected.size ? now : undefined;
    });
    expect(firstVersions(rows)).toEqual(expected);
    // The hour that was open across the kill counts the users routed before it.
    const crossing = `hour,${new Date(MONDAY + 15 * HOUR).toISOString().replace('.000Z', 'Z')}`;
    expect(firstVersions(rows).get(crossing)).toBe(all.get(crossing));

    // No version is duplicated, and every period's versions run 1..n.
    const final = await history();
    const keys = final.map((r) => `${r.periodType},${r.periodStartMs},${r.version}`);
    expect(new Set(keys).size).toBe(keys.length);
    const versions = new Map<string, number[]>();
    for (const r of final) {
      const key = `${r.periodType},${r.periodStartMs}`;
      versions.set(key, [...(versions.get(key) ?? []), r.version]);
    }
    for (const list of versions.values()) {
      expect([...list].sort((a, b) => a - b)).toEqual(list.map((_, i) => i + 1));
    }
    expect(new Set(final.map((r) => r.ringEpoch))).toEqual(new Set([1]));
    expect((await (store as EtcdCoordinationStore).readRing())?.epoch).toBe(1);

    // SIGTERM: the coordinator first (so that it writes no ring without the shards), then
    // the shards; each drains and exits 0.
    coordinator.child.kill('SIGTERM');
    expect(await coordinator.exited).toEqual({ code: 0, signal: null });
    const live = [...shards.values()];
    for (const shard of live) shard.child.kill('SIGTERM');
    for (const shard of live) {
      expect(await shard.exited).toEqual({ code: 0, signal: null });
      expect(shard.lines.map((l) => l.msg)).toContain('shard stopped');
      expect(shard.lines.filter((l) => (l.level ?? 0) >= 50)).toEqual([]);
    }
    expect(await (store as EtcdCoordinationStore).listShards()).toEqual([]);
  });

  it('reopens its partitions on an epoch bump, and with the new set when partitions move', async () => {
    const endpoint = (etcd as EtcdServer).endpoint;
    const name = `${cluster}-ring`;
    const rings = await EtcdCoordinationStore.open({ endpoints: [endpoint], clusterName: name });
    try {
      // A leaving mark left from an earlier decommission ends when the shard starts.
      await rings.markLeaving('shard-x');
      const shard = start('shard-x', [
        'shard',
        ...['--id', 'shard-x', '--etcd', endpoint, '--cluster', name, '--partitions', String(P)],
        ...['--data-dir', path.join(dir as string, 'shard-x'), '--lease-ttl', '3s'],
      ]);
      expect(
        await shard.waitFor('leaving mark cleared: this shard takes partitions again'),
      ).toMatchObject({ shardId: 'shard-x' });
      await shard.waitFor('waiting for ring assignment');
      expect(await rings.listLeaving()).toEqual([]);
      await rings.writeRing(
        { epoch: 1, partitions: P, owners: ['shard-x', 'shard-x', 'shard-x', 'shard-x'] },
        { expectEpoch: 0 },
      );
      const first = await shard.waitFor('shard serving');
      expect(first).toMatchObject({ ringEpoch: 1, partitions: [0, 1, 2, 3] });
      const client = new ShardRpcClient(first.address as string);
      clients.set(`ring-${first.address}`, client);
      expect(await client.checkpoint(1, DEADLINE_MS)).toEqual([0, 1, 2, 3]);

      // Epoch bump, same partitions: reopened under epoch 2.
      let mark = shard.lines.length;
      await rings.writeRing(
        { epoch: 2, partitions: P, owners: ['shard-x', 'shard-x', 'shard-x', 'shard-x'] },
        { expectEpoch: 1 },
      );
      expect(await shard.waitFor('ring changed', mark)).toMatchObject({ ringEpoch: 2 });
      expect(await shard.waitFor('shard serving', mark)).toMatchObject({
        ringEpoch: 2,
        partitions: [0, 1, 2, 3],
      });
      expect(await client.checkpoint(2, DEADLINE_MS)).toEqual([0, 1, 2, 3]);

      // Partitions move away: the shard reopens with the rest under epoch 3.
      mark = shard.lines.length;
      await rings.writeRing(
        { epoch: 3, partitions: P, owners: ['shard-x', 'shard-x', 'shard-y', 'shard-y'] },
        { expectEpoch: 2 },
      );
      expect(await shard.waitFor('ring changed', mark)).toMatchObject({
        ringEpoch: 3,
        gained: [],
        lost: [2, 3],
      });
      expect(await shard.waitFor('shard serving', mark)).toMatchObject({
        ringEpoch: 3,
        partitions: [0, 1],
      });
      expect(await client.checkpoint(3, DEADLINE_MS)).toEqual([0, 1]);
      await expect(client.checkpoint(2, DEADLINE_MS)).rejects.toMatchObject({
        kind: 'epoch-mismatch',
      });

      // A shard started with another partition count exits before it registers: the ring
      // and the membership stay as they were, and it is never seen as a member.
      const members = new Set<string>();
      const watch = await rings.watchShards((shards) => {
        for (const s of shards) members.add(s.shardId);
      });
      const wrong = start('shard-z', [
        'shard',
        ...['--id', 'shard-z', '--etcd', endpoint, '--cluster', name, '--partitions', '8'],
        ...['--data-dir', path.join(dir as string, 'shard-z'), '--lease-ttl', '3s'],
      ]);
      expect((await wrong.exited).code).not.toBe(0);
      // Its stderr may still be read after the exit.
      await vi.waitFor(() =>
        expect(wrong.stderrTail).toContain(
          '[SL-CONFIG-001] the ring in etcd has 4 partitions; this shard was started with --partitions 8',
        ),
      );
      await watch.close();
      expect([...members]).toEqual(['shard-x']);
      expect((await rings.readRing())?.epoch).toBe(3);

      shard.child.kill('SIGTERM');
      expect(await shard.exited).toEqual({ code: 0, signal: null });
      expect(await rings.listShards()).toEqual([]);
    } finally {
      await rings.close();
    }
  });
});
