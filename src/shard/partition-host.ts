/**
 * The partitions one process holds: their actors, the LevelDB they live in, and the
 * bookkeeping that makes routed batches and acknowledgements apply exactly once. The
 * embedded node holds every partition in one host; a shard process holds the partitions
 * the ring assigns to it, and serves them over gRPC.
 */
import { EventEmitter } from 'node:events';

import roaring from 'roaring';

import type { PartitionAck } from '../coordinator/coordinator.js';
import type { Logger } from '../observability/index.js';
import { ShardError } from './errors.js';
import {
  dropUnheldPartitions,
  releaseMarkPut,
  settleHeldMarks,
  type ReleaseMark,
} from './handoff-marks.js';
import { checkFixedSettings, checkPartitions } from './host-settings.js';
import { LevelStateStore } from './level-state-store.js';
import { PartitionActor } from './partition-actor.js';
import {
  partitionChunks,
  writeAdoptedCopy,
  type AdoptOutcome,
  type PartitionChunk,
} from './partition-copy.js';
import {
  PartitionLedger,
  checkAckStamp,
  checkRouteStamp,
  type AckStamp,
  type RouteStamp,
} from './partition-ledger.js';
import type { PartitionBatch, PartitionReport, StorageOp } from './types.js';

export interface PartitionHostOptions {
  /** Where the LevelDB state lives. */
  readonly stateDir: string;
  /** P, fixed when the data directory is created. */
  readonly partitionCount: number;
  /** The partitions this host holds. @default every partition, 0 .. P-1 */
  readonly partitions?: readonly number[];
  /** The ring epoch under which the host holds them. @default 0 */
  readonly ringEpoch?: number;
  /**
   * Deletes, on open, the state of every partition not held (a shard opening under a
   * ring: a partition that moved away, or a copy whose move was aborted), except a copy
   * adopted for a ring after {@link ringEpoch}. A shard still waiting for its first ring
   * and the embedded node leave it off. @default false
   */
  readonly dropUnheld?: boolean;
  /** How long after a period ends it stays open before it is sealed. */
  readonly allowedLatenessMs: number;
  /**
   * A sender of routed batches not heard from for this long stops holding the partitions'
   * watermarks back (a router that finished, went idle or died); checked every second.
   * @default never (one sender, as in the embedded node)
   */
  readonly senderSilenceMs?: number;
  /** Memory for sets and dictionaries before closed periods' sets spill to disk only. */
  readonly memoryBudgetBytes: number;
  readonly logger: Logger;
}

function listFor<K, V>(map: Map<K, V[]>, key: K): V[] {
  let list = map.get(key);
  if (list === undefined) {
    list = [];
    map.set(key, list);
  }

  return list;
}

/** How often silent senders are looked for, when they are. */
const SILENCE_CHECK_MS = 1_000;

/** What a routed batch did; returned once it is durable. */
export interface RouteOutcome {
  readonly partition: number;
  /** The highest sequence of the sender's stream that is durable. */
  readonly sequence: number;
  /** True when the batch had been applied before and this was a repeat. */
  readonly duplicate: boolean;
  /** The partition's watermark after the batch (-Infinity while it has none). */
  readonly watermarkMs: number;
}

/** One partition's current counts, keyed by period key. */
export interface PartitionCounts {
  readonly partition: number;
  readonly counts: Map<string, number>;
}

export interface PartitionHostStats {
  readonly knownUsers: number;
  readonly dictionaryBytes: number;
  /** Hours on disk only. */
  readonly evictedHours: number;
  /** Hours read back from disk. */
  readonly hourLoads: number;
}

export interface PartitionHostEvents {
  /** Applying or writing state failed; emitted once. The host refuses every call after it. */
  failed: [error: ShardError];
}

interface Hosted {
  readonly actor: PartitionActor;
  readonly ledger: PartitionLedger;
  /** Set once the partition is released under this ring epoch: it is refused from then on. */
  released: ReleaseMark | undefined;
}

/**
 * The partitions of one process. Every call runs alone, in arrival order, so that a
 * checkpoint never sees half a batch and never marks as durable what was applied while
 * it wrote.
 *
 * Two paths change state:
 *
 * - {@link apply} and {@link acknowledge} without a stamp change memory only; the
 *   caller makes it durable with {@link checkpoint} (the embedded node, before each
 *   round);
 * - {@link route} and {@link acknowledge} with a stamp apply at most once per stamp and
 *   are durable when they resolve (the shard server).
 *
 * If applying or writing fails, memory may be ahead of disk: the host then refuses every
 * call with 'store-failed' until it is reopened from its store.
 */
export class PartitionHost extends EventEmitter<PartitionHostEvents> {
  readonly partitionCount: number;
  readonly ringEpoch: number;
  private tail: Promise<void> = Promise.resolve();
  private failure: ShardError | undefined;
  private closed = false;
  /** Partitions whose copy is being written here. */
  private readonly adopting = new Set<number>();
  private readonly silenceCheck: NodeJS.Timeout | undefined;

  private constructor(
    private readonly options: PartitionHostOptions,
    private readonly store: LevelStateStore,
    private readonly hosted: ReadonlyMap<number, Hosted>,
  ) {
    super();
    this.partitionCount = options.partitionCount;
    this.ringEpoch = options.ringEpoch ?? 0;
    if (options.senderSilenceMs !== undefined) {
      this.silenceCheck = setInterval(() => this.checkSilentSenders(), SILENCE_CHECK_MS);
      this.silenceCheck.unref();
    }
  }

  /** Opens the store and the actor of every partition held, from their durable state. */
  static async open(options: PartitionHostOptions): Promise<PartitionHost> {
    const partitions = checkPartitions(options);
    const store = await LevelStateStore.open(options.stateDir);

    try {
      await checkFixedSettings(store, options.partitionCount, options.allowedLatenessMs);
      const ringEpoch = options.ringEpoch ?? 0;
      const released = await settleHeldMarks(store, partitions, ringEpoch);
      if (options.dropUnheld === true) {
        const held = new Set(partitions);
        const { partitionCount, logger } = options;
        await dropUnheldPartitions(store, { partitionCount, held, ringEpoch, logger });
      }

      const hosted = new Map<number, Hosted>();
      for (const partition of partitions) {
        const actor = await PartitionActor.open(
          {
            partition,
            allowedLatenessMs: options.allowedLatenessMs,
            ...(options.senderSilenceMs === undefined
              ? {}
              : { senderSilenceMs: options.senderSilenceMs }),
          },
          store,
        );
        const ledger = await PartitionLedger.load(store, partition);
        hosted.set(partition, { actor, ledger, released: released.get(partition) });
      }

      return new PartitionHost(options, store, hosted);
    } catch (err) {
      await store.close();
      throw err;
    }
  }

  /** The partitions held, ascending. */
  get partitions(): number[] {
    return [...this.hosted.keys()];
  }

  holds(partition: number): boolean {
    return this.hosted.has(partition);
  }

  get knownUsers(): number {
    let n = 0;
    for (const { actor } of this.hosted.values()) n += actor.knownUsers;

    return n;
  }

  get stats(): PartitionHostStats {
    let dictionaryBytes = 0;
    let evictedHours = 0;
    let hourLoads = 0;
    for (const { actor } of this.hosted.values()) {
      dictionaryBytes += actor.dictionaryBytes;
      evictedHours += actor.spillStats.evictedHours;
      hourLoads += actor.spillStats.hourLoads;
    }

    return { knownUsers: this.knownUsers, dictionaryBytes, evictedHours, hourLoads };
  }

  /** Applies batches in order, in memory; {@link checkpoint} makes them durable. */
  apply(batches: readonly PartitionBatch[]): Promise<void> {
    return this.serially(async () => {
      const targets = batches.map((batch) => ({ batch, actor: this.held(batch.partition).actor }));
      for (const { batch, actor } of targets) await this.changing(() => actor.apply(batch));
    });
  }

  /**
   * Applies one batch of a sender's stream and checkpoints before it resolves. A batch
   * whose sequence was applied before is not applied again; one that skips a sequence is
   * refused with 'sequence-gap'.
   */
  async route(stamp: RouteStamp, batch: PartitionBatch): Promise<RouteOutcome> {
    checkRouteStamp(stamp);

    return this.serially(async () => {
      const hosted = this.held(batch.partition);
      const last = hosted.ledger.lastSequence(stamp.senderId);

      if (stamp.sequence <= last) {
        return this.outcome(hosted, last, true);
      }
      if (stamp.sequence > last + 1) {
        throw new ShardError(
          'sequence-gap',
          `partition ${batch.partition} got sequence ${stamp.sequence} from ${stamp.senderId}, which has applied up to ${last}`,
          { partition: batch.partition },
        );
      }

      await this.changing(() => hosted.actor.apply(batch, stamp.senderId));
      hosted.ledger.noteSequence(stamp);
      await this.persist([]);

      return this.outcome(hosted, stamp.sequence, false);
    });
  }

  /** The unacknowledged seals and changes of the partitions asked for (empty: all held). */
  reports(partitions?: readonly number[]): Promise<PartitionReport[]> {
    return this.serially(async () => this.select(partitions).map(({ actor }) => actor.report()));
  }

  /**
   * The routers this host's partitions know, by whether they count (hold at least one
   * partition's watermark) or are silent everywhere. Read without waiting for calls in
   * flight, for metrics.
   */
  routerStates(nowMs = Date.now()): { counting: number; silent: number } {
    const counting = new Set<string>();
    const known = new Set<string>();
    for (const { actor } of this.hosted.values()) {
      for (const { sender, markMs, counts } of actor.senderMarks(nowMs)) {
        if (!Number.isFinite(markMs)) continue;
        known.add(sender);
        if (counts) counting.add(sender);
      }
    }

    return { counting: counting.size, silent: known.size - counting.size };
  }

  /** Each sender's mark in `partition`, lowest first, and whether it holds the partition back. */
  senderMarks(partition: number): Promise<ReturnType<PartitionActor['senderMarks']>> {
    return this.serially(async () => this.held(partition).actor.senderMarks());
  }

  /** Current exact counts of the periods in the partitions asked for (empty: all held). */
  counts(keys: readonly string[], partitions?: readonly number[]): Promise<PartitionCounts[]> {
    return this.serially(async () => {
      const out: PartitionCounts[] = [];
      for (const { actor } of this.select(partitions)) {
        out.push({ partition: actor.partition, counts: await actor.counts(keys) });
      }

      return out;
    });
  }

  /**
   * The coordinator has published these seals and changes: the partitions forget them.
   *
   * With a stamp, each partition applies an acknowledgement once: a stamp it has applied
   * before (same fencing token, same or lower round) is a no-op, and the host is
   * checkpointed before this resolves. A fencing token lower than one the host has seen
   * comes from a deposed coordinator and is refused with 'stale-fencing-token'.
   */
  async acknowledge(acks: readonly PartitionAck[], stamp?: AckStamp): Promise<void> {
    if (stamp !== undefined) checkAckStamp(stamp);

    return this.serially(async () => {
      const targets = acks.map((ack) => ({ ack, hosted: this.held(ack.partition) }));
      if (stamp === undefined) {
        for (const { ack, hosted } of targets) hosted.actor.acknowledge(ack.seals, ack.changes);
        return;
      }

      this.checkFencingToken(stamp);
      let changed = false;
      for (const { ack, hosted } of targets) {
        if (hosted.ledger.hasApplied(stamp)) continue;
        hosted.actor.acknowledge(ack.seals, ack.changes);
        hosted.ledger.noteAck(stamp);
        changed = true;
      }

      if (changed) await this.persist([]);
    });
  }

  /**
   * Makes everything applied so far durable in one atomic batch: the caller's `extra`
   * records, then every partition's state and ledger. Then spills closed periods' sets
   * to disk only while memory is over budget.
   */
  checkpoint(extra: readonly StorageOp[] = []): Promise<void> {
    return this.serially(() => this.persist(extra));
  }

  // --- handoff -----------------------------------------------------------------------------

  /**
   * Stops serving `partition` under this host's ring epoch, for good: the release mark is
   * written in one atomic batch with a checkpoint of everything applied so far. From then
   * on every call that names the partition (or all partitions) is refused with
   * 'partition-moving', naming `newOwner`, also after a restart under the same epoch.
   * Releasing a released partition does nothing.
   */
  release(partition: number, newOwner: string): Promise<void> {
    return this.serially(async () => {
      const hosted = this.hostedOrRefuse(partition);
      if (hosted.released !== undefined) return;

      const mark: ReleaseMark = { ringEpoch: this.ringEpoch, newOwner };
      await this.persist([releaseMarkPut(partition, mark)]);
      hosted.released = mark;
      this.options.logger.info(
        { partition, ringEpoch: this.ringEpoch, newOwner },
        'partition released',
      );
    });
  }

  /**
   * The durable state of a released partition as chunks in key order, the last one with
   * the totals. Nothing changes a released partition, so the chunks are its whole state.
   */
  async *releasedChunks(partition: number): AsyncGenerator<PartitionChunk> {
    this.assertUsable();
    const hosted = this.hostedOrRefuse(partition);
    if (hosted.released === undefined) {
      throw new ShardError(
        'invalid-argument',
        `partition ${partition} is served here under ring epoch ${this.ringEpoch}; release it before reading it out`,
        { partition },
      );
    }

    yield* partitionChunks(this.store, partition);
  }

  /**
   * Replaces whatever this store holds under `partition` with the copy that its owner
   * under `ringEpoch` sends, and marks the copy complete: it is kept until a ring after
   * `ringEpoch` either gives the partition to this host's shard or not. The host keeps
   * serving its own partitions meanwhile. Refused for a partition held here, while a copy
   * of it is being written, and when this host is on a later ring.
   */
  async adopt(
    partition: number,
    ringEpoch: number,
    chunks: AsyncIterable<PartitionChunk>,
  ): Promise<AdoptOutcome> {
    this.checkAdoption(partition, ringEpoch);

    this.adopting.add(partition);
    try {
      const serially = <T>(task: () => Promise<T>): Promise<T> => this.serially(task);
      const outcome = await writeAdoptedCopy(serially, this.store, partition, ringEpoch, chunks);
      this.options.logger.info({ ...outcome, ringEpoch }, 'partition adopted');

      return outcome;
    } finally {
      this.adopting.delete(partition);
    }
  }

  /**
   * Deletes the state of every partition not held here, except copies adopted under
   * `ringEpoch` or later (see {@link PartitionHostOptions.dropUnheld}). For a shard that
   * a ring gives no partition. Resolves with the partitions whose state was deleted.
   */
  dropUnheld(ringEpoch: number): Promise<number[]> {
    return this.serially(() =>
      dropUnheldPartitions(this.store, {
        partitionCount: this.partitionCount,
        held: new Set(this.hosted.keys()),
        ringEpoch,
        logger: this.options.logger,
      }),
    );
  }

  /** Reads a node-level record written through a checkpoint's `extra`. */
  getRecord<T>(key: string): Promise<T | undefined> {
    return this.store.getJson<T>(key);
  }

  /**
   * Waits for the call in progress, then closes the store without a checkpoint: what was
   * applied and not checkpointed is lost, as in a crash. Safe to call twice.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.silenceCheck);

    await this.tail;
    await this.store.close();
  }

  /**
   * Lets silent senders stop holding watermarks back; a watermark that moves seals what
   * it passed, and that is made durable at once, as after a routed batch.
   */
  private checkSilentSenders(): void {
    if (this.closed || this.failure !== undefined) return;

    this.serially(async () => {
      let changed = false;
      const nowMs = Date.now();
      const silenced = new Map<string, number[]>();
      const resumed = new Map<string, number[]>();
      for (const { actor, released } of this.hosted.values()) {
        if (released !== undefined) continue;
        const review = actor.reconsiderSenders(nowMs);
        if (review.changed) changed = true;
        for (const sender of review.silenced) listFor(silenced, sender).push(actor.partition);
        for (const sender of review.resumed) listFor(resumed, sender).push(actor.partition);
      }
      // One line per router and change, with the partitions it concerns.
      const silenceMs = this.options.senderSilenceMs;
      for (const [router, partitions] of silenced) {
        this.options.logger.info(
          { router, partitions, silenceMs },
          'router silent; its partitions no longer wait for its watermark',
        );
      }
      for (const [router, partitions] of resumed) {
        this.options.logger.info(
          { router, partitions },
          'router heard again; its watermark counts',
        );
      }
      if (changed) await this.persist([]);
    }).catch((err: unknown) => {
      // A failed write already failed the host ('failed' is emitted); a closed host is done.
      if (!this.closed && this.failure === undefined) {
        this.options.logger.warn({ err }, 'checking silent senders failed');
      }
    });
  }

  // --- running calls ---------------------------------------------------------------------

  /** Runs `task` after every call before it, unless the host is closed or failed. */
  private serially<T>(task: () => Promise<T>): Promise<T> {
    const run = this.tail.then(() => {
      this.assertUsable();
      return task();
    });
    this.tail = run.then(
      () => undefined,
      () => undefined,
    );

    return run;
  }

  private assertUsable(): void {
    if (this.failure !== undefined) throw this.failure;
    if (this.closed) throw new ShardError('unavailable', 'the partition host is closed');
  }

  /**
   * Runs a change to partition state. If it fails, memory may be ahead of disk: the host
   * fails for good, and the change throws 'store-failed' with the failure as its cause.
   */
  private async changing(change: () => Promise<void>): Promise<void> {
    try {
      await change();
    } catch (err) {
      const text = err instanceof Error ? err.message : String(err);
      this.failure = new ShardError(
        'store-failed',
        `applying or writing partition state failed, so memory may be ahead of the store (${text}); the shard must restart and recover from its store`,
        { cause: err },
      );
      this.emit('failed', this.failure);

      throw this.failure;
    }
  }

  private async persist(extra: readonly StorageOp[]): Promise<void> {
    const ops: StorageOp[] = [...extra];
    for (const { actor, ledger } of this.hosted.values()) {
      actor.collectWrites(ops);
      ledger.collectWrites(ops);
    }

    await this.changing(() => this.store.write(ops));
    for (const { actor, ledger } of this.hosted.values()) {
      actor.markPersisted();
      ledger.markPersisted();
    }

    this.spillToBudget();
  }

  // --- partitions --------------------------------------------------------------------------

  /** The partition, unless it is outside 0..P-1, not held here, or released. */
  private held(partition: number): Hosted {
    const hosted = this.hostedOrRefuse(partition);
    const released = hosted.released;
    if (released !== undefined) {
      throw new ShardError(
        'partition-moving',
        `partition ${partition} was released under ring epoch ${released.ringEpoch} and is moving to ${released.newOwner}; retry once the next ring names its owner`,
        { partition, ringEpoch: this.ringEpoch, ownerHint: released.newOwner },
      );
    }

    return hosted;
  }

  /** The partition, released or not, unless it is outside 0..P-1 or not held here. */
  private hostedOrRefuse(partition: number): Hosted {
    this.checkPartition(partition);

    const hosted = this.hosted.get(partition);
    if (hosted === undefined) {
      throw new ShardError(
        'not-owner',
        `partition ${partition} is not held here under ring epoch ${this.ringEpoch}`,
        { partition, ringEpoch: this.ringEpoch },
      );
    }

    return hosted;
  }

  private select(partitions: readonly number[] | undefined): Hosted[] {
    const asked =
      partitions === undefined || partitions.length === 0 ? this.partitions : partitions;

    return [...new Set(asked)].map((p) => this.held(p));
  }

  private checkPartition(partition: number): void {
    if (Number.isInteger(partition) && partition >= 0 && partition < this.partitionCount) return;

    throw new ShardError(
      'invalid-argument',
      `partition ${partition} is outside 0..${this.partitionCount - 1}`,
      { partition },
    );
  }

  private checkAdoption(partition: number, ringEpoch: number): void {
    this.checkPartition(partition);
    if (this.hosted.has(partition)) {
      throw new ShardError(
        'invalid-argument',
        `partition ${partition} is held here under ring epoch ${this.ringEpoch}; a shard cannot adopt its own partition`,
        { partition },
      );
    }
    if (this.ringEpoch > ringEpoch) {
      throw new ShardError(
        'epoch-mismatch',
        `a move from ring epoch ${ringEpoch} is stale: this shard holds ring epoch ${this.ringEpoch}`,
        { partition, ringEpoch: this.ringEpoch },
      );
    }
    if (this.adopting.has(partition)) {
      throw new ShardError('unavailable', `partition ${partition} is being adopted already`, {
        partition,
      });
    }
  }

  private checkFencingToken(stamp: AckStamp): void {
    let highest = 0;
    for (const { ledger } of this.hosted.values()) highest = Math.max(highest, ledger.fencingToken);

    if (stamp.fencingToken < highest) {
      throw new ShardError(
        'stale-fencing-token',
        `acknowledgement with fencing token ${stamp.fencingToken} refused: a coordinator with token ${highest} has acknowledged here`,
      );
    }
  }

  private outcome(hosted: Hosted, sequence: number, duplicate: boolean): RouteOutcome {
    return {
      partition: hosted.actor.partition,
      sequence,
      duplicate,
      watermarkMs: hosted.actor.watermark,
    };
  }

  private spillToBudget(): void {
    const actors = [...this.hosted.values()].map((h) => h.actor);
    const dictBytes = actors.reduce((n, a) => n + a.dictionaryBytes, 0);
    const used = roaring.getRoaringUsedMemory() + dictBytes;
    const budget = this.options.memoryBudgetBytes;
    const excess = used - budget;
    if (excess <= 0) return;

    // Free a little more than the excess so that spilling does not run on every checkpoint.
    const share = (excess + budget * 0.1) / actors.length;
    let freed = 0;
    for (const actor of actors) freed += actor.evict(share);
    this.options.logger.debug(
      { usedBytes: used, freedBytes: freed },
      'spilled closed periods to disk',
    );
  }
}
