/**
 * The Ingest path of one node: it judges each client batch with the same
 * {@link EventRouter} the embedded mode uses, routes the accepted events to the shards
 * that own their partitions, keeps the rejected ones in the dead-letter store, and
 * acknowledges a batch only when all of that is durable (DESIGN invariant 3).
 *
 * Batches are judged synchronously, in the order they arrive, so that one client's
 * batches are judged in the order it sent them. Delivery to the owners is asynchronous
 * and never loses a batch (see partition-delivery.ts).
 *
 * A partition takes marks from every router that sends to it and follows the lowest of
 * those that count (see PartitionActor): a router counts while it is heard from. In
 * `wall-clock` mode the clock's marks go out every second; in the other modes a router
 * that had input in the last {@link ACTIVE_AFTER_INPUT_MS} repeats its mark every
 * `heartbeatMs` to each partition it sent nothing else to in that time (a router busy
 * with a few partitions must not fall silent on the others), and falls silent once idle
 * or finished, so that it stops holding other routers' periods back.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

import { EventRouter, type WatermarkMode } from '../ingest/event-router.js';
import type { Logger } from '../observability/index.js';
import type { PartitionHost } from '../shard/partition-host.js';
import type { PartitionBatch } from '../shard/types.js';
import type { DeadLetterWrite } from '../sink/types.js';
import {
  checkRequest,
  eventDeadLetter,
  indexedRouterReject,
  rejectionsToWire,
  type IndexedReject,
} from './ingest-batch.js';
import { IngestError, asIngestError } from './ingest-errors.js';
import { PartitionDelivery, type PartitionDeliveryOptions } from './partition-delivery.js';
import type { EventBatchRequestWire, IngestAckWire } from './proto.js';
import { readRouterState, writeRouterState } from './router-state-file.js';
import type { RingSource, RoutingTable } from './routing-table.js';
import type { ShardMetrics } from './shard-metrics.js';

/**
 * How a node's watermark moves.
 * - `event-time`: with the highest accepted event time (a replay in file order);
 * - `receive-time`: with the events' receive times, and a batch's `clock_ms` (a replay in
 *   receive order);
 * - `wall-clock`: with the receive times and the wall clock, which also moves it every
 *   second while input is idle (live operation).
 */
export type IngestWatermarkMode = 'event-time' | 'receive-time' | 'wall-clock';

export const INGEST_WATERMARK_MODES: readonly IngestWatermarkMode[] = [
  'event-time',
  'receive-time',
  'wall-clock',
];

/** The judging settings; the same as the embedded engine's. */
export interface IngestSettings {
  /** P. */
  readonly partitions: number;
  readonly allowedLatenessMs: number;
  /** Events further behind the watermark than this are rejected as `too_old`. */
  readonly restatementHorizonMs: number;
  /** Events later than their receive time plus this are rejected as `future`. */
  readonly maxFutureSkewMs: number;
  /** How far behind the highest event time (or the clock) the watermark stays. */
  readonly maxOutOfOrdernessMs: number;
}

/** Where rejected events are kept: the warehouse's dead-letter table. */
export interface DeadLetterSink {
  recordRejects(rows: readonly DeadLetterWrite[]): Promise<void>;
}

export interface IngestRouterOptions extends IngestSettings {
  /** This node's shard id in the ring. */
  readonly nodeId: string;
  /** @default 'wall-clock' */
  readonly watermark?: IngestWatermarkMode;
  readonly ring: RingSource;
  /** The partition host of this node now (a shard's server replaces it on ring changes). */
  readonly localHost: () => PartitionHost | undefined;
  readonly deadLetters: DeadLetterSink;
  /** Where `router.json` is kept; without it the router's position is not persisted. */
  readonly dataDir?: string;
  /**
   * In `event-time` and `receive-time` modes, where a router with no saved position starts
   * its watermark: the cluster's published watermark, so that a node that joins a running
   * cluster judges the restatement horizon as the others do instead of taking events of
   * any age. @default none (from the first events)
   */
  readonly watermarkFloor?: () => Promise<number | undefined>;
  readonly logger: Logger;
  /** The wall clock. @default Date.now */
  readonly now?: () => number;
  /** How often the wall clock moves the watermark in `wall-clock` mode. @default 1000 */
  readonly clockTickMs?: number;
  /**
   * In `event-time` and `receive-time` modes, how often the router repeats its mark, while
   * it has input, to each partition that nothing else went out to. @default 2000
   */
  readonly heartbeatMs?: number;
  /** Least time between two writes of `router.json`. @default 1000 */
  readonly stateWriteIntervalMs?: number;
  /** Where batches, events and deliveries are counted. @default not counted */
  readonly metrics?: ShardMetrics;
  /** Route deadline, coalescing, backoff and client options of the delivery. */
  readonly delivery?: Pick<
    PartitionDeliveryOptions,
    | 'routeDeadlineMs'
    | 'maxCoalescedEvents'
    | 'maxCoalescedBytes'
    | 'initialBackoffMs'
    | 'maxBackoffMs'
    | 'client'
  >;
}

/** A batch judged and queued: what its acknowledgement waits for and will say. */
interface Routed {
  /** Resolves once every partition batch of it is durable on its owner. */
  readonly delivered: Promise<void>;
  /** Its rejected events and unreadable records, for the dead-letter store. */
  readonly letters: DeadLetterWrite[];
  readonly accepted: number;
  readonly rejected: IndexedReject[];
  /** The batch's unreadable records (the last of {@link letters}). */
  readonly unreadable: readonly DeadLetterWrite[];
}

/** A routing whose batches are on their way, and the router's position after it. */
interface InFlight {
  readonly state: EventRouter['state'];
  done: boolean;
}

/** A router without input for this long stops repeating its mark (it is idle). */
export const ACTIVE_AFTER_INPUT_MS = 30_000;

/** Attempts at the dead-letter store before the call fails as unavailable. */
const DEAD_LETTER_ATTEMPTS = 3;

/** One node's router: judge, route, deliver, acknowledge. */
export class IngestRouter {
  /** `<nodeId>@<incarnation>`: names this process's streams to the owners. */
  readonly senderId: string;
  readonly mode: IngestWatermarkMode;
  private readonly now: () => number;
  private readonly delivery: PartitionDelivery;
  private readonly inFlight: InFlight[] = [];
  private readonly stopListening: () => void;
  private readonly ticker: NodeJS.Timeout | undefined;
  private durableState: EventRouter['state'];
  private writtenState: EventRouter['state'] | undefined;
  private stateTimer: NodeJS.Timeout | undefined;
  private stateWrite: Promise<void> = Promise.resolve();
  private lastStateWriteMs = 0;
  private seenEpoch: number | undefined;
  private deadLettersFailing = false;
  private lastInputAtMs = Number.NEGATIVE_INFINITY;
  /** Per partition: when a batch (events or a mark) last went out to it. */
  private readonly lastSentAtMs: Float64Array;
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly options: IngestRouterOptions,
    private readonly router: EventRouter,
  ) {
    this.mode = options.watermark ?? 'wall-clock';
    this.now = options.now ?? Date.now;
    this.senderId = `${options.nodeId}@${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
    this.durableState = router.state;
    this.writtenState = router.state;
    this.lastSentAtMs = new Float64Array(options.partitions).fill(Number.NEGATIVE_INFINITY);
    this.delivery = new PartitionDelivery({
      ...options.delivery,
      nodeId: options.nodeId,
      senderId: this.senderId,
      partitions: options.partitions,
      ring: options.ring,
      localHost: options.localHost,
      logger: options.logger,
      metrics: options.metrics,
    });
    this.stopListening = options.ring.onChange((table) => this.onRing(table));
    const initial = options.ring.current();
    if (initial !== undefined) this.onRing(initial);

    if (this.mode === 'wall-clock') {
      this.ticker = setInterval(() => this.tick(), options.clockTickMs ?? 1000);
    } else {
      const heartbeatMs = options.heartbeatMs ?? 2000;
      this.ticker = setInterval(() => this.beat(heartbeatMs), heartbeatMs);
    }
    this.ticker.unref();
  }

  /** Restores the router's position from `router.json`, if there is one, and starts. */
  static async open(options: IngestRouterOptions): Promise<IngestRouter> {
    const mode = options.watermark ?? 'wall-clock';
    const router = new EventRouter({
      partitions: options.partitions,
      allowedLatenessMs: options.allowedLatenessMs,
      restatementHorizonMs: options.restatementHorizonMs,
      maxFutureSkewMs: options.maxFutureSkewMs,
      maxOutOfOrdernessMs: options.maxOutOfOrdernessMs,
      watermarkMode: eventRouterMode(mode),
      now: options.now ?? Date.now,
    });
    const restored =
      options.dataDir === undefined ? undefined : await readRouterState(options.dataDir);
    if (restored !== undefined) router.restore(restored);
    let seededWatermarkMs: number | undefined;
    if (restored === undefined && mode !== 'wall-clock' && options.watermarkFloor !== undefined) {
      seededWatermarkMs = await options.watermarkFloor();
      if (seededWatermarkMs !== undefined && Number.isFinite(seededWatermarkMs)) {
        router.restore({ watermarkMs: seededWatermarkMs, clockMs: null, maxEventMs: null });
      }
    }

    const ingest = new IngestRouter(options, router);
    options.logger.info(
      {
        mode,
        senderId: ingest.senderId,
        partitions: options.partitions,
        allowedLatenessMs: options.allowedLatenessMs,
        restatementHorizonMs: options.restatementHorizonMs,
        maxFutureSkewMs: options.maxFutureSkewMs,
        maxOutOfOrdernessMs: options.maxOutOfOrdernessMs,
        restoredWatermarkMs: restored?.watermarkMs ?? null,
        seededWatermarkMs: seededWatermarkMs ?? null,
      },
      'ingest router started',
    );

    return ingest;
  }

  /** The watermark after everything judged so far (-Infinity before the first). */
  get watermarkMs(): number {
    return this.router.watermark;
  }

  /** Whether a ring is known, so that batches can be taken. */
  get ready(): boolean {
    return this.options.ring.current() !== undefined;
  }

  /** Partition batches queued or on their way to their owners. */
  get pendingBatches(): number {
    return this.delivery.pending;
  }

  /**
   * Judges and routes one batch now, and resolves with its acknowledgement once every
   * accepted event is durable on its owner and every rejected one and every unreadable
   * record is in the dead-letter store.
   *
   * @throws IngestError 'invalid-argument' for a malformed request (nothing is routed),
   *   'unavailable' while no ring is known, while closing, or when the dead-letter store
   *   keeps failing (what was routed is still delivered; a resent batch counts once)
   */
  submit(request: EventBatchRequestWire): Promise<IngestAckWire> {
    let ack: Promise<IngestAckWire>;
    try {
      ack = this.acknowledge(request, this.route(request));
    } catch (err) {
      ack = Promise.reject(err);
    }
    const metrics = this.options.metrics;
    if (metrics === undefined) return ack;

    return ack.catch((err: unknown) => {
      metrics.noteRefused(asIngestError(err).kind);
      throw err;
    });
  }

  /**
   * Moves the watermark past the end of the ISO week of everything routed, plus the
   * allowed lateness, and resolves with it once every partition's owner has it durably;
   * undefined when nothing was routed yet.
   *
   * In `wall-clock` mode the watermark follows the wall clock alone: a Finish (a backfill
   * with `replay --target` into a live node) closes nothing the clock has not passed, or
   * it would publish the current hour, day and week as final before they end and restate
   * them with every live event until the clock caught up. It resolves with the watermark
   * once every partition's owner has it and everything routed before.
   */
  async finish(): Promise<number | undefined> {
    this.assertTaking();
    if (this.mode === 'wall-clock') {
      this.tick();
      const watermarkMs = this.router.watermark;
      if (!Number.isFinite(watermarkMs)) return undefined;
      await this.deliver(watermarkBatches(allPartitions(this.options.partitions), watermarkMs));

      return watermarkMs;
    }
    const batches = this.router.finish();
    const watermarkMs = this.router.watermark;
    await this.deliver(batches);
    // Done: fall silent, so that the partitions stop counting this router's mark.
    this.lastInputAtMs = Number.NEGATIVE_INFINITY;

    return Number.isFinite(watermarkMs) ? watermarkMs : undefined;
  }

  /**
   * Stops taking batches and the clock, gives up deliveries still pending (their calls
   * fail as unavailable; nothing acknowledged is affected) and writes the position that
   * was delivered. Safe to call twice.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();

    return this.closing;
  }

  // --- routing ----------------------------------------------------------------------------

  /** The synchronous part: check, judge and queue. */
  private route(request: EventBatchRequestWire): Routed {
    this.assertTaking();
    this.lastInputAtMs = Date.now();
    const receiveNowMs = this.mode === 'receive-time' ? undefined : this.now();
    const checked = checkRequest(request, receiveNowMs);

    const routed = this.router.route(checked.batch);
    const batches = routed.batches;
    const clockMs = request.clock_ms;
    if (this.mode === 'receive-time' && clockMs !== undefined) {
      // A sender clock ahead of ours must not drag the watermark, as for receive times.
      if (clockMs <= this.now() + this.options.maxFutureSkewMs) {
        batches.push(...this.router.advanceClock(clockMs));
      }
    }

    const rejected = [...checked.rejected, ...routed.rejects.map(indexedRouterReject)];
    const letters = [...rejected.map((r) => eventDeadLetter(request, r)), ...checked.unreadable];
    const delivered = this.deliver(batches);

    return {
      delivered,
      letters,
      accepted: routed.accepted,
      rejected,
      unreadable: checked.unreadable,
    };
  }

  private async acknowledge(
    request: EventBatchRequestWire,
    routed: Routed,
  ): Promise<IngestAckWire> {
    await Promise.all([routed.delivered, this.storeDeadLetters(routed.letters)]);
    this.options.metrics?.noteAcknowledged(routed);

    return {
      batch_id: request.batch_id,
      accepted: routed.accepted,
      rejected: rejectionsToWire(routed.rejected),
    };
  }

  private assertTaking(): void {
    if (this.closing !== undefined) {
      throw new IngestError(
        'unavailable',
        'this node is shutting down; send the batch to another node or later',
      );
    }
    if (!this.ready) {
      throw new IngestError(
        'unavailable',
        'this node has no ring yet; send the batch again shortly',
      );
    }
  }

  /** Queues the batches of one routing; notes the router's position once they are durable. */
  private deliver(batches: readonly PartitionBatch[]): Promise<void> {
    const nowMs = Date.now();
    for (const batch of batches) this.lastSentAtMs[batch.partition] = nowMs;
    const entry: InFlight = { state: this.router.state, done: false };
    this.inFlight.push(entry);
    const all = Promise.all(batches.map((b) => this.delivery.send(b)));
    const settle = (): void => {
      entry.done = true;
      this.noteDelivered();
    };
    all.then(settle, () => undefined);

    return all.then(() => undefined);
  }

  /** The wall clock moves the watermark while input is idle (`wall-clock` mode). */
  private tick(): void {
    if (this.closing !== undefined || !this.ready) return;
    const batches = this.router.advanceClock(this.now());
    if (batches.length === 0) return;
    this.deliver(batches).catch(() => undefined);
  }

  /**
   * Repeats the mark (`event-time`, `receive-time`) to each partition that nothing went
   * out to for a heartbeat, while the router has had input lately.
   */
  private beat(heartbeatMs: number): void {
    if (this.closing !== undefined || !this.ready) return;
    const nowMs = Date.now();
    if (nowMs - this.lastInputAtMs >= ACTIVE_AFTER_INPUT_MS) return;
    const watermarkMs = this.router.watermark;
    if (!Number.isFinite(watermarkMs)) return;
    const quiet: number[] = [];
    this.lastSentAtMs.forEach((sentAtMs, partition) => {
      if (nowMs - sentAtMs >= heartbeatMs) quiet.push(partition);
    });
    if (quiet.length === 0) return;

    this.deliver(watermarkBatches(quiet, watermarkMs)).catch(() => undefined);
  }

  private async storeDeadLetters(rows: readonly DeadLetterWrite[]): Promise<void> {
    if (rows.length === 0) return;

    for (let attempt = 1; ; attempt++) {
      try {
        await this.options.deadLetters.recordRejects(rows);
        if (this.deadLettersFailing) {
          this.deadLettersFailing = false;
          this.options.logger.info('dead-letter store recovered');
        }
        return;
      } catch (err) {
        if (!this.deadLettersFailing) {
          this.deadLettersFailing = true;
          this.options.logger.warn({ err }, 'dead-letter store failed; acknowledgements wait');
        }
        if (attempt >= DEAD_LETTER_ATTEMPTS || this.closing !== undefined) {
          const text = err instanceof Error ? err.message : String(err);
          throw new IngestError('unavailable', `the dead-letter store failed: ${text}`, {
            cause: err,
          });
        }
        await sleep(200 * attempt);
      }
    }
  }

  private onRing(table: RoutingTable): void {
    const ring = table.ring;
    if (ring.epoch === this.seenEpoch) return;
    this.seenEpoch = ring.epoch;

    if (ring.partitions !== this.options.partitions) {
      this.options.logger.error(
        {
          ringEpoch: ring.epoch,
          ringPartitions: ring.partitions,
          partitions: this.options.partitions,
        },
        'ring has another partition count; batches wait',
      );
      return;
    }
    this.options.logger.info({ ringEpoch: ring.epoch }, 'ingest router sees ring');
  }

  // --- the router's position on disk ------------------------------------------------------

  /** Takes the position of the newest routing whose batches, and all before, are durable. */
  private noteDelivered(): void {
    let advanced = false;
    while (this.inFlight[0]?.done === true) {
      this.durableState = (this.inFlight.shift() as InFlight).state;
      advanced = true;
    }
    if (advanced) this.scheduleStateWrite();
  }

  private scheduleStateWrite(): void {
    if (this.options.dataDir === undefined || this.stateTimer !== undefined) return;
    if (this.closing !== undefined) return;

    const interval = this.options.stateWriteIntervalMs ?? 1000;
    const wait = Math.max(0, this.lastStateWriteMs + interval - Date.now());
    this.stateTimer = setTimeout(() => {
      this.stateTimer = undefined;
      this.stateWrite = this.stateWrite.then(() => this.writeState());
    }, wait);
    this.stateTimer.unref();
  }

  private async writeState(): Promise<void> {
    const dataDir = this.options.dataDir;
    const state = this.durableState;
    if (dataDir === undefined || state === this.writtenState) return;

    this.lastStateWriteMs = Date.now();
    try {
      await writeRouterState(dataDir, this.mode, state);
      this.writtenState = state;
    } catch (err) {
      this.options.logger.warn({ err, dataDir }, 'writing the router state failed; retrying');
      this.scheduleStateWrite();
    }
  }

  private async shutdown(): Promise<void> {
    if (this.ticker !== undefined) clearInterval(this.ticker);
    if (this.stateTimer !== undefined) clearTimeout(this.stateTimer);
    this.stateTimer = undefined;
    this.stopListening();
    const pending = this.delivery.pending;
    this.delivery.close();

    await this.stateWrite;
    await this.writeState();
    this.options.logger.info(
      {
        senderId: this.senderId,
        abandonedBatches: pending,
        watermarkMs: this.durableState.watermarkMs,
      },
      'ingest router stopped',
    );
  }
}

/** 0 .. P - 1. */
function allPartitions(partitions: number): number[] {
  return Array.from({ length: partitions }, (_, partition) => partition);
}

/**
 * A mark of `watermarkMs` and no event for each of the partitions: behind everything
 * queued before it in each partition's FIFO, so that its delivery means theirs too.
 */
function watermarkBatches(partitions: readonly number[], watermarkMs: number): PartitionBatch[] {
  return partitions.map((partition) => ({
    partition,
    length: 0,
    userIds: [],
    slotHashes: new Uint32Array(0),
    eventTimeMs: new Float64Array(0),
    marks: [{ before: 0, watermarkMs }],
  }));
}

function eventRouterMode(mode: IngestWatermarkMode): WatermarkMode {
  return mode === 'event-time' ? 'event-time' : 'clock';
}
