/**
 * Replays a shared case (`shared/cases/*.json`) through a cluster of real processes: etcd,
 * `speedlayer shard` processes and two coordinators ({@link LocalCluster}) over a fresh
 * PostgreSQL schema. The timeline is the single-process harness's (case-steps.ts): the
 * same batches at the same harness-clock times, the same controls, the same end.
 *
 * How the README's "Replaying a case" maps onto the cluster:
 *
 * - configuration: `allowed_lateness` on every shard and coordinator; the restatement
 *   horizon, future skew and an out-of-orderness of zero on every shard; watermark
 *   `receive-time`, so the ingest node's clock is the harness clock; `shards` processes
 *   (two when the case does not say);
 * - arrivals: every batch goes to the first shard's Ingest service over one stream, with
 *   the events' receive times and the harness clock as `clock_ms`; the clock's stops at
 *   close points are batches without events, whose `clock_ms` moves the clock (BH-01);
 * - after each, the harness waits for its acknowledgement; after a batch, and after a stop
 *   past the close of a period that holds events (elsewhere no version can appear), also
 *   for the leader's rounds to catch up (Coordinator.Status), then reads the versions, so
 *   `final_by` is measured on the harness clock;
 * - controls: `kill_shard` and `restart_shard` act on the process that owns the user's
 *   partition under the ring in etcd (`graceful: false` is SIGKILL, otherwise SIGTERM);
 *   `kill_all_shards` and `restart_all_shards` on every shard, the ingest node included.
 *   While a shard is down, batches are sent and their acknowledgements awaited once it is
 *   back: the ingest client resends what was not acknowledged, by batch id.
 */
import { IngestClientError } from '../../src/transport/ingest-client.js';
import { cutBatch, eventBatchToWire } from '../../src/transport/ingest-requests.js';
import { EtcdCoordinationStore } from '../../src/ring/index.js';
import { hashUserId, partitionOf } from '../../src/shard/user-hash.js';
import { Warehouse } from '../../src/sink/index.js';
import type { EventBatch } from '../../src/ingest/index.js';
import { periodEnd, periodsOf } from '../../src/periods/index.js';
import type { EventBatchRequestWire } from '../../src/transport/proto.js';
import type { LocalClusterOptions } from '../../cluster/cluster-options.js';
import { LocalCluster } from '../../cluster/local-cluster.js';
import { VersionWatch, readRun, type CaseRun } from './case-check.js';
import type { CaseControl, SharedCase } from './case-format.js';
import { driveCase, planCase, type CasePlan, type CaseTarget } from './case-steps.js';
import { BatchSender, RoundWatch } from './cluster-case-links.js';

/** Shard processes for a case that does not name a count. */
const DEFAULT_SHARDS = 2;
/** The leader's round interval: short, so that the harness waits little at each step. */
const ROUND_INTERVAL_MS = 100;
/** How long one step may wait for the leader's rounds (a restarted shard takes seconds). */
const CATCH_UP_TIMEOUT_MS = 60_000;

export interface ClusterCaseOptions {
  readonly postgresUrl: string;
}

/** What a cluster replay observed, and how long its parts took. */
export interface ClusterCaseResult {
  readonly run: CaseRun;
  /** LocalCluster.start, until every shard serves and a coordinator leads. */
  readonly startMs: number;
  /** The replay itself, from the first step to the end state read. */
  readonly replayMs: number;
  /** What the controls did, e.g. `shard-2 sent SIGKILL: SIGKILL` and `shard-2 restarted`. */
  readonly actions: readonly string[];
}

/** Starts a cluster configured for the case, replays the case on it and stops it again. */
export async function replayCaseOnCluster(
  c: SharedCase,
  options: ClusterCaseOptions,
): Promise<ClusterCaseResult> {
  const plan = planCase(c);
  const started = Date.now();
  const cluster = await LocalCluster.start(clusterOptions(c, plan, options.postgresUrl));
  const startMs = Date.now() - started;

  try {
    const warehouse = await Warehouse.open({
      postgresUrl: options.postgresUrl,
      schema: cluster.postgresSchema,
    });
    try {
      const replay = await ClusterReplay.open(c, plan, cluster, warehouse);
      try {
        await driveCase(c, plan, replay);
        await replay.close();
      } finally {
        await replay.abandon();
      }

      const run = await readRun(warehouse, replay.watch, plan.records);
      const replayMs = Date.now() - started - startMs;

      return { run, startMs, replayMs, actions: replay.actions };
    } finally {
      await warehouse.close();
    }
  } finally {
    await cluster.stop();
  }
}

/** The launcher's options for a case: its settings as each role's flags. */
function clusterOptions(c: SharedCase, plan: CasePlan, postgresUrl: string): LocalClusterOptions {
  const engine = plan.settings.engine;
  const ms = (value: number): string => `${value}ms`;
  const shards = c.config.shards ?? DEFAULT_SHARDS;
  if (typeof shards !== 'number') {
    throw new Error(`${c.id}: config.shards must be a number, got ${JSON.stringify(shards)}`);
  }

  return {
    shards,
    partitions: engine.partitions,
    port: 0,
    postgresUrl,
    watermark: 'receive-time',
    roundIntervalMs: ROUND_INTERVAL_MS,
    stopGraceMs: 10_000,
    extraArgs: {
      shard: [
        ...['--allowed-lateness', ms(engine.allowedLatenessMs)],
        ...['--restatement-horizon', ms(engine.restatementHorizonMs)],
        ...['--max-future-skew', ms(engine.maxFutureSkewMs)],
        ...['--max-out-of-orderness', '0ms'],
      ],
      coordinator: ['--allowed-lateness', ms(engine.allowedLatenessMs)],
    },
  };
}

/** An acknowledgement the harness still has to wait for, with what it must lead to. */
interface Unsettled {
  /** When the acknowledgement came. */
  readonly ackedAtMs: Promise<number>;
  /** The clock the request brought, which the leader's rounds must reach. */
  readonly watermarkMs: number;
  /** What the harness waits for after the acknowledgement. */
  readonly wait: 'nothing' | 'watermark' | 'round-after-ack';
}

/**
 * The cluster under the harness clock. The clock reaches the ingest node with the next
 * request: a batch carries it as `clock_ms`, and a close point or a control that comes
 * before any batch sends a request without events.
 */
class ClusterReplay implements CaseTarget {
  readonly watch = new VersionWatch();
  /** What the controls did to which process, in order. */
  readonly actions: string[] = [];
  private readonly down = new Set<string>();
  private unsettled: Unsettled[] = [];
  /** Where periods with events close, ascending, from {@link nextClose} on. */
  private readonly closes: readonly number[];
  private nextClose = 0;
  private clockMs = Number.NEGATIVE_INFINITY;
  /** The clock the ingest node was last sent. */
  private sentClockMs = Number.NEGATIVE_INFINITY;
  private batches = 0;

  private constructor(
    private readonly c: SharedCase,
    private readonly cluster: LocalCluster,
    private readonly warehouse: Warehouse,
    private readonly ring: EtcdCoordinationStore,
    private readonly sender: BatchSender,
    private readonly rounds: RoundWatch,
    plan: CasePlan,
  ) {
    this.closes = closesOf(plan);
  }

  static async open(
    c: SharedCase,
    plan: CasePlan,
    cluster: LocalCluster,
    warehouse: Warehouse,
  ): Promise<ClusterReplay> {
    const ring = await EtcdCoordinationStore.open({
      endpoints: [cluster.addresses.etcd],
      clusterName: cluster.clusterName,
    });
    const sender = new BatchSender(cluster.addresses.ingest);
    const rounds = new RoundWatch(
      (name) => statusAddressOf(cluster, name),
      () => cluster.leader(),
    );

    return new ClusterReplay(c, cluster, warehouse, ring, sender, rounds, plan);
  }

  async closePoint(atMs: number): Promise<void> {
    this.clockMs = atMs;
    await this.sendClock();
  }

  async moveClock(atMs: number): Promise<void> {
    this.clockMs = atMs;
  }

  async deliver(batch: EventBatch): Promise<void> {
    const id = `${this.c.id}-${++this.batches}`;
    const parts = cutBatch(batch);
    const requests = parts.map((part, i) =>
      this.request(eventBatchToWire(part, parts.length === 1 ? id : `${id}.${i + 1}`)),
    );
    const acknowledged = Promise.all(requests.map((r) => this.sender.send(r)));

    // A batch of late events may leave the watermark where it was: wait for a round that
    // started after the acknowledgement, which saw them.
    this.passCloses();
    await this.settle(acknowledged, 'round-after-ack');
  }

  async control(control: CaseControl): Promise<void> {
    await this.sendClock();

    switch (control.action) {
      case 'kill_shard':
        await this.kill([await this.shardOf(control)], control.graceful);
        return;
      case 'kill_all_shards':
        await this.kill(this.cluster.shards, control.graceful);
        return;
      case 'restart_shard':
        await this.restart([await this.shardOf(control)]);
        return;
      case 'restart_all_shards':
        await this.restart(this.cluster.shards);
        return;
      default:
        // scale_shards needs partition handoff in the shard role; no case uses it yet.
        throw new Error(`${this.c.id}: the cluster harness cannot perform ${control.action}`);
    }
  }

  /**
   * README step 5: every shard up again, every batch acknowledged, then Finish closes every
   * period the ingest node has seen, and a round after that publishes them.
   */
  async end(): Promise<void> {
    await this.restart([...this.down]);
    await this.sendClock();
    await this.settleWaiting();

    const watermarkMs = await this.sender.finish();
    const after = Date.now();
    await this.rounds.caughtUp(
      { watermarkMs: watermarkMs ?? undefined, startedAfterMs: after },
      CATCH_UP_TIMEOUT_MS,
    );
    await this.observe();
  }

  /** Waits for the last acknowledgements and closes the lines into the cluster. */
  async close(): Promise<void> {
    await this.sender.close();
    this.rounds.close();
    await this.ring.close();
  }

  /** Lets go of the cluster after a failure; harmless after {@link close}. */
  async abandon(): Promise<void> {
    this.sender.abandon();
    this.rounds.close();
    await this.ring.close();
  }

  // --- the clock and the rounds ----------------------------------------------------------

  /** A request of the case, carrying the harness clock. */
  private request(wire: EventBatchRequestWire): EventBatchRequestWire {
    this.sentClockMs = Math.max(this.sentClockMs, this.clockMs);

    return { ...wire, ...(Number.isFinite(this.clockMs) ? { clock_ms: this.clockMs } : {}) };
  }

  /**
   * Sends the clock on its own, when it moved since the last request. Where no period with
   * events closes in between, nothing can be published, and only the acknowledgement is
   * awaited: the rounds are waited for where a version may appear.
   */
  private async sendClock(): Promise<void> {
    if (!(this.clockMs > this.sentClockMs)) return;

    const id = `${this.c.id}-${++this.batches}`;
    const request = this.request({ batch_id: id, source: this.c.id, events: [], unreadable: [] });
    // Without events, the acknowledgement means every partition has the new watermark.
    await this.settle(this.sender.send(request), this.passCloses() ? 'watermark' : 'nothing');
  }

  /** Whether the clock has passed a close point of a period with events since last asked. */
  private passCloses(): boolean {
    const before = this.nextClose;
    while ((this.closes[this.nextClose] ?? Number.POSITIVE_INFINITY) <= this.clockMs) {
      this.nextClose++;
    }

    return this.nextClose > before;
  }

  /**
   * Waits for an acknowledgement and what must follow it, then reads the versions; while a
   * shard is down neither can come, so both wait for its restart.
   */
  private async settle(acknowledged: Promise<unknown>, wait: Unsettled['wait']): Promise<void> {
    const ackedAtMs = acknowledged.then(() => Date.now());
    ackedAtMs.catch(() => undefined); // Awaited in settleWaiting; never left unhandled.
    this.unsettled.push({ ackedAtMs, watermarkMs: this.sentClockMs, wait });
    if (this.down.size === 0) await this.settleWaiting();
  }

  /** Waits for every acknowledgement not yet awaited, then for the leader's rounds. */
  private async settleWaiting(): Promise<void> {
    const waiting = this.unsettled.splice(0);
    let watermarkMs = Number.NEGATIVE_INFINITY;
    let startedAfterMs: number | undefined;
    let rounds = false;
    for (const entry of waiting) {
      const ackedAtMs = await entry.ackedAtMs.catch(rethrowAck);
      watermarkMs = Math.max(watermarkMs, entry.watermarkMs);
      rounds ||= entry.wait !== 'nothing';
      if (entry.wait === 'round-after-ack') {
        startedAfterMs = Math.max(startedAfterMs ?? 0, ackedAtMs);
      }
    }
    if (!rounds) return;

    await this.rounds.caughtUp({ watermarkMs, startedAfterMs }, CATCH_UP_TIMEOUT_MS);
    await this.observe();
  }

  private async observe(): Promise<void> {
    await this.watch.observe(this.warehouse, this.clockMs);
  }

  // --- controls --------------------------------------------------------------------------

  /** `owner_of:<user>`: the shard that owns the user's partition under the ring in etcd. */
  private async shardOf(control: CaseControl): Promise<string> {
    const match = /^owner_of:(.+)$/.exec(control.shard ?? '');
    if (match === null) {
      throw new Error(`${this.c.id}: ${control.action} names no shard as owner_of:<user id>`);
    }

    const ring = await this.ring.readRing();
    if (ring === undefined) throw new Error(`${this.c.id}: no ring in etcd`);
    const partition = partitionOf(
      hashUserId(match[1] as string, { hi: 0, lo: 0 }),
      ring.partitions,
    );
    const owner = ring.owners[partition];
    if (owner === undefined || !this.cluster.shards.includes(owner)) {
      throw new Error(
        `${this.c.id}: partition ${partition} is owned by '${owner}', not a shard of this cluster`,
      );
    }

    return owner;
  }

  private async kill(shards: readonly string[], graceful: boolean | undefined): Promise<void> {
    const signal = graceful === false ? 'SIGKILL' : 'SIGTERM';
    const exits = await Promise.all(shards.map((name) => this.cluster.kill(name, signal)));
    exits.forEach((exit, i) => {
      const how = exit.signal ?? `exit code ${exit.code}`;
      this.actions.push(`${shards[i]} sent ${signal}: ${how}`);
    });
    for (const name of shards) this.down.add(name);
    await this.observe();
  }

  private async restart(shards: readonly string[]): Promise<void> {
    await Promise.all(shards.map((name) => this.cluster.restart(name)));
    for (const name of shards) this.actions.push(`${name} restarted`);
    for (const name of shards) this.down.delete(name);
    if (this.down.size === 0 && this.unsettled.length > 0) {
      // What waited for the restart, and a round of the restarted shards after it.
      this.unsettled.push({
        ackedAtMs: Promise.resolve(Date.now()),
        watermarkMs: this.sentClockMs,
        wait: 'round-after-ack',
      });
      await this.settleWaiting();
    }
  }
}

/**
 * Every instant at which a period that holds an event of the case closes (its end plus the
 * allowed lateness), ascending: the only close points where a version can appear.
 */
function closesOf(plan: CasePlan): number[] {
  const latenessMs = plan.settings.engine.allowedLatenessMs;
  const times = new Set<number>();
  for (const step of plan.steps) {
    if (step.kind === 'batch') for (const ms of step.batch.eventTimeMs) times.add(ms);
  }

  const closes = new Set<number>();
  for (const ms of times) {
    for (const period of periodsOf(ms)) {
      const closeMs = periodEnd(period) + latenessMs;
      if (Number.isFinite(closeMs)) closes.add(closeMs);
    }
  }

  return [...closes].sort((a, b) => a - b);
}

function rethrowAck(err: unknown): never {
  if (err instanceof IngestClientError) {
    throw new Error(`a batch was never acknowledged: ${err.message}`, { cause: err });
  }

  throw err;
}

/** The Coordinator service of a coordinator of the cluster. */
function statusAddressOf(cluster: LocalCluster, name: string): string {
  const status = cluster.addresses.coordinators[name]?.status;
  if (status === undefined) throw new Error(`coordinator ${name} serves no Coordinator service`);

  return status;
}
