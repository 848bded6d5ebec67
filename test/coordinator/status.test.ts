/**
 * What holds numbers back, made visible: a real etcd (one per file, a cluster prefix per
 * test), two in-process ShardServers holding the partitions of P = 4 as computeRing
 * assigns them, a PGlite warehouse, and two CoordinatorServices, each serving
 * Coordinator.Status over real gRPC and its metrics over HTTP. A third Status server
 * answers from a bare coordination store, as a shard would. Scenarios:
 *
 * - both shards up: the leader publishes version 1 of the closed hour with the exact
 *   count; the standby (and the bare store) answer Status with the leader's id, its token,
 *   ring epoch 1, no partition missing and every watermark at the clock;
 * - one shard stopped: every Status lists exactly its partitions as missing, owned by it;
 *   the leader's metrics show 2 missing partitions, is_leader 1 and held-back rounds, the
 *   standby's is_leader 0; `speedlayer status` prints the missing shard and exits 3 with
 *   --check; the leader logs the shard once, not every round; nothing is published;
 * - the shard back: the missing list empties, the held-back hour is published with the
 *   brute-force count, the metrics show 0 missing, and the leader logs it back once;
 * - a `speedlayer coordinator` process standing by answers Status and serves metrics;
 * - a deposed leader cannot overwrite its successor's status record.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';

import { pino, type Logger } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { CoordinatorMetrics } from '../../src/coordinator/coordinator-metrics.js';
import { CoordinatorService } from '../../src/coordinator/coordinator-service.js';
import { EventRouter, type EventRouterOptions } from '../../src/ingest/event-router.js';
import {
  createMetricsRegistry,
  silentLogger,
  startMetricsServer,
} from '../../src/observability/index.js';
import {
  EtcdCoordinationStore,
  computeRing,
  isRingError,
  partitionsOf,
  type Ring,
} from '../../src/ring/index.js';
import { ShardError } from '../../src/shard/errors.js';
import { PartitionHost } from '../../src/shard/partition-host.js';
import type { PartitionBatch } from '../../src/shard/types.js';
import { Warehouse } from '../../src/sink/warehouse.js';
import { ShardRpcClient } from '../../src/transport/shard-client.js';
import { ShardServer } from '../../src/transport/shard-server.js';
import { fetchStatus } from '../../src/transport/status-client.js';
import {
  startCoordinatorServer,
  storeStatusSource,
  type StatusView,
} from '../../src/transport/status-service.js';
import { runCli } from '../support/cli.js';
import { startEtcd, type EtcdServer } from '../support/etcd.js';
import { rng, toBatches } from '../support/events.js';
import { checkHealth, listServices } from '../support/grpc-probes.js';
import { bruteForceCounts, rowsToCounts } from '../support/oracle.js';

const BIN = path.resolve(import.meta.dirname, '../../bin/speedlayer.js');
const MIN = 60_000;
const HOUR = 60 * MIN;
const P = 4;
const SHARD_IDS = ['shard-a', 'shard-b'];
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
  memoryBudgetBytes: 1024 ** 3,
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

/** A shard that can be stopped and started again on the same address and state. */
class TestShard {
  private host: PartitionHost | undefined;
  private server: ShardServer | undefined;
  address = '127.0.0.1:0';

  constructor(
    readonly shardId: string,
    private readonly stateDir: string,
    private readonly ring: Ring,
  ) {
    cleanups.push(() => this.stop());
  }

  get up(): boolean {
    return this.server !== undefined;
  }

  async start(): Promise<void> {
    const host = await PartitionHost.open({
      stateDir: this.stateDir,
      partitionCount: P,
      partitions: partitionsOf(this.ring, this.shardId),
      ringEpoch: this.ring.epoch,
      allowedLatenessMs: settings.allowedLatenessMs,
      memoryBudgetBytes: settings.memoryBudgetBytes,
      logger: silentLogger(),
    });
    this.host = host;
    this.server = await ShardServer.start({ host, address: this.address, logger: silentLogger() });
    this.address = this.server.address;
  }

  /** Stops serving and closes the store: what was acknowledged is already durable. */
  async stop(): Promise<void> {
    await this.server?.close();
    await this.host?.close();
    this.server = undefined;
    this.host = undefined;
  }
}

/** A coordinator as a process runs it: the service, its Status server, its metrics. */
interface TestCoordinator {
  readonly id: string;
  readonly service: CoordinatorService;
  readonly statusAddress: string;
  readonly metricsUrl: string;
  readonly messages: string[];
}

interface Cluster {
  readonly clusterName: string;
  readonly store: EtcdCoordinationStore;
  readonly ring: Ring;
  readonly shards: Map<string, TestShard>;
  readonly warehouse: Warehouse;
  /** Routes each batch to the shard that owns its partition. */
  readonly route: (batches: readonly PartitionBatch[]) => Promise<void>;
  readonly router: EventRouter;
  readonly coordinator: (id: string) => Promise<TestCoordinator>;
}

async function startCluster(): Promise<Cluster> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'speedlayer-status-'));
  cleanups.push(() => fs.rm(dir, { recursive: true, force: true }));
  const clusterName = `t-${randomUUID().slice(0, 8)}`;
  const ring = computeRing(P, SHARD_IDS);

  const store = await EtcdCoordinationStore.open({
    endpoints: [etcd.endpoint],
    clusterName,
    requestTimeoutMs: 2_000,
  });
  cleanups.push(() => store.close());

  // Before the shards' leases: opening PGlite keeps the event loop busy for a while.
  const warehouse = await Warehouse.open({ dataDir: path.join(dir, 'warehouse') });
  cleanups.push(() => warehouse.close());

  const shards = new Map<string, TestShard>();
  for (const shardId of SHARD_IDS) {
    const shard = new TestShard(shardId, path.join(dir, shardId), ring);
    await shard.start();
    shards.set(shardId, shard);
    await store.registerShard(shardId, shard.address, 30);
  }

  // The wall clock is past every event: the watermark follows the receive times alone.
  const router = new EventRouter({
    ...settings,
    now: () => Date.UTC(2030, 0, 1),
  } as EventRouterOptions);
  const clients = new Map<string, ShardRpcClient>();
  cleanups.push(() => {
    for (const c of clients.values()) c.close();
  });
  const sequences = new Map<number, number>();
  const route = async (batches: readonly PartitionBatch[]): Promise<void> => {
    for (const batch of batches) {
      const shard = shards.get(ring.owners[batch.partition] as string) as TestShard;
      let client = clients.get(shard.address);
      if (client === undefined)
        clients.set(shard.address, (client = new ShardRpcClient(shard.address)));
      const sequence = (sequences.get(batch.partition) ?? 0) + 1;
      const stamp = { senderId: 'node-1', sequence };
      await client.route({ ringEpoch: ring.epoch, stamp, batch }, DEADLINE_MS);
      sequences.set(batch.partition, sequence);
    }
  };

  const coordinator = async (id: string): Promise<TestCoordinator> => {
    const { logger, messages } = recordingLogger();
    const service = new CoordinatorService({
      coordination: { endpoints: [etcd.endpoint], clusterName, requestTimeoutMs: 2_000 },
      sink: warehouse,
      candidateId: id,
      partitions: P,
      allowedLatenessMs: settings.allowedLatenessMs,
      logger,
      roundIntervalMs: 100,
      leaseTtlSeconds: 10,
      port: { reportDeadlineMs: 500 },
      // Watermark-only changes reach etcd within this; missing partitions at once.
      status: { refreshIntervalMs: 300 },
    });
    const registry = createMetricsRegistry({ processMetrics: false });
    const detach = new CoordinatorMetrics(registry).observe(service);
    const metrics = await startMetricsServer({ registry, port: 0 });
    await service.start();
    const status = await startCoordinatorServer({
      address: '127.0.0.1:0',
      source: () => service.status(),
      answeredBy: id,
    });
    cleanups.push(async () => {
      await status.close();
      await service.close();
      detach();
      await metrics.close();
    });

    return {
      id,
      service,
      statusAddress: status.address,
      metricsUrl: `http://${metrics.address}/metrics`,
      messages,
    };
  };

  return { clusterName, store, ring, shards, warehouse, route, router, coordinator };
}

/** A logger that keeps the messages it is given. */
function recordingLogger(): { logger: Logger; messages: string[] } {
  const messages: string[] = [];
  const logger = pino(
    { level: 'info' },
    { write: (line: string) => messages.push((JSON.parse(line) as { msg: string }).msg) },
  );

  return { logger, messages };
}

async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`, { cause: lastError });
    }
    await sleep(50);
  }
}

/** Retries a call while the shard is unavailable (the client reconnecting after a restart). */
async function untilAvailable<T>(call: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 15_000;
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

/** `users` distinct users with on-time events spread over [fromMs, toMs). */
function onTime(seed: number, prefix: string, users: number, fromMs: number, toMs: number) {
  const next = rng(seed);

  return Array.from({ length: users * 2 }, (_, i) => {
    const t = fromMs + Math.floor((i / (users * 2)) * (toMs - fromMs));

    return { userId: `${prefix}${Math.floor(next() * users)}`, eventMs: t, receiveMs: t };
  });
}

/** The value of one series in a Prometheus text exposition, e.g. `name{label="x"}`. */
async function scrape(url: string, series: string): Promise<number | undefined> {
  const response = await fetch(url);
  expect(response.status).toBe(200);
  const text = await response.text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));

  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** The Status answer once `accept` holds. */
function statusWhen(
  what: string,
  address: string,
  accept: (view: StatusView) => boolean,
): Promise<StatusView> {
  return eventually(what, async () => {
    const view = await fetchStatus(address);
    return accept(view) ? view : undefined;
  });
}

describe('Coordinator status', () => {
  it('shows a stopped shard as missing everywhere, and publishes the held-back hour once it is back', async () => {
    const cluster = await startCluster();
    const a = await cluster.coordinator('coord-a');
    const b = await cluster.coordinator('coord-b');
    const [leader, standby] = await eventually('one leader', () => {
      if (a.service.state === 'leading' && a.service.ring) return [a, b] as const;
      if (b.service.state === 'leading' && b.service.ring) return [b, a] as const;
      return undefined;
    });
    const token = leader.service.fencingToken as number;
    const bare = await startCoordinatorServer({
      address: '127.0.0.1:0',
      source: storeStatusSource(cluster.store),
      answeredBy: 'shard-a',
    });
    cleanups.push(() => bare.close());

    // Both shards up: hour 10 closes with its exact count.
    const first = onTime(1, 'u-', 200, MONDAY + 10 * HOUR, MONDAY + 11 * HOUR);
    for (const batch of toBatches(first, 500))
      await cluster.route(cluster.router.route(batch).batches);
    let clock = MONDAY + 12 * HOUR;
    await cluster.route(cluster.router.advanceClock(clock));
    await eventually('hour 10 published', async () =>
      (await cluster.warehouse.queryHistory({})).length === 1 ? true : undefined,
    );

    const allUp = await statusWhen(
      'a complete round at the clock',
      standby.statusAddress,
      (v) => v.globalWatermarkMs === clock,
    );
    expect(allUp).toMatchObject({
      answeredBy: standby.id,
      leaderId: leader.id,
      fencingToken: token,
      ringEpoch: 1,
      partitionCount: P,
      missingPartitions: [],
    });
    expect(allUp.partitions).toEqual(
      cluster.ring.owners.map((shardId, partition) => ({
        partition,
        shardId,
        reported: true,
        watermarkMs: clock,
      })),
    );
    expect(await listServices(standby.statusAddress)).toEqual([
      'grpc.health.v1.Health',
      'speedlayer.v1.Coordinator',
    ]);
    expect(await checkHealth(standby.statusAddress, 'speedlayer.v1.Coordinator')).toBe('SERVING');

    // shard-b stops; hour 12's events reached both shards before, the clock reaches shard-a only.
    const second = onTime(2, 'v-', 150, MONDAY + 12 * HOUR, MONDAY + 13 * HOUR);
    for (const batch of toBatches(second, 500))
      await cluster.route(cluster.router.route(batch).batches);
    // Their receive times moved the clock: the last complete round is at that watermark.
    const lastComplete = cluster.router.watermark;
    await statusWhen(
      'a complete round at the receive times',
      leader.statusAddress,
      (v) => v.globalWatermarkMs === lastComplete,
    );
    const shardB = cluster.shards.get('shard-b') as TestShard;
    const missing = partitionsOf(cluster.ring, 'shard-b');
    await shardB.stop();
    clock = MONDAY + 13 * HOUR + 30 * MIN;
    const tick = cluster.router.advanceClock(clock);
    await cluster.route(tick.filter((b) => !missing.includes(b.partition)));

    for (const c of [leader, standby]) {
      const view = await statusWhen(
        `${c.id} to list shard-b's partitions`,
        c.statusAddress,
        (v) => v.missingPartitions.length > 0,
      );
      expect(view.missingPartitions).toEqual(missing);
      expect(view.leaderId).toBe(leader.id);
      expect(view.globalWatermarkMs).toBeUndefined();
      for (const p of missing)
        expect(view.partitions[p]).toMatchObject({ shardId: 'shard-b', reported: false });
    }
    const fromStore = await fetchStatus(bare.address);
    expect(fromStore).toMatchObject({
      answeredBy: 'shard-a',
      leaderId: leader.id,
      missingPartitions: missing,
    });

    expect(await scrape(leader.metricsUrl, 'speedlayer_missing_partitions')).toBe(2);
    expect(await scrape(leader.metricsUrl, 'speedlayer_coordinator_is_leader')).toBe(1);
    expect(await scrape(standby.metricsUrl, 'speedlayer_coordinator_is_leader')).toBe(0);
    for (const p of [0, 1, 2, 3]) {
      const series = `speedlayer_partition_reported{partition="${p}"}`;
      expect(await scrape(leader.metricsUrl, series)).toBe(missing.includes(p) ? 0 : 1);
    }
    expect(await scrape(leader.metricsUrl, 'speedlayer_global_watermark_seconds')).toBe(
      lastComplete / 1000,
    );
    expect(lastComplete).toBeGreaterThan(MONDAY + 12 * HOUR);
    const heldBack = 'speedlayer_rounds_total{outcome="held_back"}';
    expect(await scrape(leader.metricsUrl, heldBack)).toBeGreaterThan(0);

    const table = await runCli(['status', '--target', standby.statusAddress]);
    expect(table.code).toBe(0);
    expect(table.stdout).toContain(`leader            ${leader.id} (fencing token ${token})`);
    expect(table.stdout).toContain(`shard-b (2 partitions: ${missing.join(', ')})`);
    expect(table.stdout).toMatch(new RegExp(`^${missing[0]}\\s+shard-b\\s+MISSING`, 'm'));
    const check = await runCli(['status', '--target', standby.statusAddress, '--check']);
    expect(check.code).toBe(3);
    expect(check.stderr).toContain('numbers are held back: 2 partitions missing');
    const json = await runCli(['status', '--target', leader.statusAddress, '--format', 'json']);
    expect(JSON.parse(json.stdout)).toMatchObject({
      leaderId: leader.id,
      missingPartitions: missing,
    });

    // Rounds go on while it stays missing: one line, and nothing published.
    const rounds = await scrape(leader.metricsUrl, heldBack);
    await eventually('five more held-back rounds', async () =>
      ((await scrape(leader.metricsUrl, heldBack)) ?? 0) >= (rounds ?? 0) + 5 ? true : undefined,
    );
    const missingLine = 'partitions missing: final and restated numbers held back';
    expect(leader.messages.filter((m) => m === missingLine)).toHaveLength(1);
    expect(await cluster.warehouse.queryHistory({})).toHaveLength(1);

    // shard-b back on its address: the clock reaches it, hour 12 is published exact.
    await shardB.start();
    await untilAvailable(() => cluster.route(tick.filter((b) => missing.includes(b.partition))));
    const history = await eventually('hour 12 published', async () => {
      const rows = await cluster.warehouse.queryHistory({ periodType: 'hour' });
      return rows.length === 2 ? rows : undefined;
    });
    const expected = bruteForceCounts([...first, ...second]);
    expect(rowsToCounts(history)).toEqual(
      new Map([...expected].filter(([key]) => key.startsWith('hour,'))),
    );
    expect(history.map((r) => [r.version, r.status, r.fencingToken])).toEqual([
      [1, 'final', token],
      [1, 'final', token],
    ]);

    const back = await statusWhen(
      'no partition missing',
      standby.statusAddress,
      (v) => v.missingPartitions.length === 0 && v.globalWatermarkMs === clock,
    );
    expect(back.partitions.every((p) => p.reported && p.watermarkMs === clock)).toBe(true);
    await eventually('the metrics to show none missing', async () =>
      (await scrape(leader.metricsUrl, 'speedlayer_missing_partitions')) === 0 ? true : undefined,
    );
    expect(leader.messages.filter((m) => m === 'partitions reporting again')).toHaveLength(1);
    expect(leader.messages.filter((m) => m === missingLine)).toHaveLength(1);
    expect((await runCli(['status', '--target', bare.address, '--check'])).code).toBe(0);
  });

  it('is answered by a standing-by `speedlayer coordinator` process, which serves its metrics', async () => {
    const cluster = await startCluster();
    const leader = await cluster.coordinator('coord-a');
    await eventually('coord-a to lead', () => (leader.service.ring ? true : undefined));

    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'speedlayer-status-proc-'));
    cleanups.push(() => fs.rm(dataDir, { recursive: true, force: true }));
    const proc = startProcess([
      'coordinator',
      ...['--id', 'coord-proc', '--etcd', etcd.endpoint, '--cluster', cluster.clusterName],
      ...['--partitions', String(P), '--data-dir', dataDir, '--port', '0', '--metrics-port', '0'],
    ]);
    const grpcAddress = (await proc.waitFor('coordinator service listening')).address as string;
    const metricsAddress = (await proc.waitFor('metrics endpoint listening')).address as string;

    const view = await statusWhen('the leader in etcd', grpcAddress, (v) => v.leaderId !== '');
    expect(view).toMatchObject({
      answeredBy: 'coord-proc',
      leaderId: 'coord-a',
      fencingToken: leader.service.fencingToken,
      ringEpoch: 1,
      partitionCount: P,
    });
    const metricsUrl = `http://${metricsAddress}/metrics`;
    expect(
      await scrape(
        metricsUrl,
        'speedlayer_coordinator_is_leader{role="coordinator",candidate_id="coord-proc"}',
      ),
    ).toBe(0);
    expect((await fetch(`http://${metricsAddress}/other`)).status).toBe(404);

    proc.child.kill('SIGTERM');
    expect(await proc.exited).toEqual({ code: 0, signal: null });
  });

  it("refuses a deposed leader's status write, and reads the successor's leader without a round", async () => {
    const cluster = await startCluster();
    const other = await EtcdCoordinationStore.open({
      endpoints: [etcd.endpoint],
      clusterName: cluster.clusterName,
      requestTimeoutMs: 2_000,
    });
    cleanups.push(() => other.close());

    const first = await cluster.store.campaign('coord-a', 3);
    const record = {
      leaderId: 'coord-a',
      fencingToken: first.fencingToken,
      ringEpoch: 1,
      partitionCount: P,
      globalWatermarkMs: MONDAY,
      missingPartitions: [],
      partitions: [],
      lastRoundAtMs: MONDAY,
      recordedAtMs: MONDAY,
    };
    await cluster.store.writeStatus(record, { leadership: first });
    expect(await other.readStatus()).toEqual(record);

    await first.resign();
    const second = await other.campaign('coord-b', 3);
    await expect(cluster.store.writeStatus(record, { leadership: first })).rejects.toSatisfy(
      (err: unknown) => isRingError(err, 'not-leader'),
    );
    expect(await other.readStatus()).toEqual({
      leaderId: 'coord-b',
      fencingToken: second.fencingToken,
      ringEpoch: 1,
      partitionCount: P,
      missingPartitions: [],
      partitions: [],
      recordedAtMs: MONDAY,
    });
    await second.resign();
  });
});

/** A `speedlayer` child process and the JSON lines it logs on stderr. */
function startProcess(args: readonly string[]): {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitFor: (msg: string) => Promise<Record<string, unknown>>;
} {
  const env = { ...process.env };
  delete env.SPEEDLAYER_POSTGRES_URL;
  const child = spawn(process.execPath, [BIN, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env,
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  const lines: Record<string, unknown>[] = [];
  let tail = '';
  createInterface({ input: child.stderr! }).on('line', (text) => {
    tail = (tail + text + '\n').slice(-4000);
    try {
      lines.push(JSON.parse(text) as Record<string, unknown>);
    } catch {
      // Not a log line.
    }
  });

  return {
    child,
    exited,
    waitFor: (msg) =>
      eventually(
        `'${msg}' from the coordinator process`,
        () => {
          if (child.exitCode !== null) throw new Error(`the process exited:\n${tail}`);
          return lines.find((l) => l.msg === msg);
        },
        // Starting a process through tsx on a busy 2-core machine can take this long.
        60_000,
      ),
  };
}
