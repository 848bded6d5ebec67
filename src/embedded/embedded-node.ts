import roaring from 'roaring';

import {
  Coordinator,
  type PartitionAck,
  type PartitionsPort,
  type RoundResult,
  type RowSink,
} from '../coordinator/coordinator.js';
import { EventRouter, type RouterState, type WatermarkMode } from '../ingest/event-router.js';
import type { EventBatch } from '../ingest/types.js';
import type { Logger } from '../observability/index.js';
import { LevelStateStore, jsonPut } from '../shard/level-state-store.js';
import { PartitionActor } from '../shard/partition-actor.js';
import type { PartitionBatch, PartitionReport, StorageOp } from '../shard/types.js';
import type { DeadLetterWrite, WriterFence } from '../sink/types.js';

const NODE_META_KEY = 'node/meta';
const ROUTER_KEY = 'node/router';

/** Settings of the counting engine, shared by every mode. */
export interface EngineSettings {
  /** Number of partitions P; fixed when a data directory is created. */
  readonly partitions: number;
  readonly allowedLatenessMs: number;
  readonly restatementHorizonMs: number;
  readonly maxFutureSkewMs: number;
  readonly maxOutOfOrdernessMs: number;
  readonly watermarkMode: WatermarkMode;
  /** Memory for sets and dictionaries before closed periods' sets spill to disk only. */
  readonly memoryBudgetBytes: number;
}

/** What the engine writes to: published rows, rejected events, the writer fence. */
export interface EngineSink extends RowSink {
  claimFence(fence: WriterFence): Promise<void>;
  recordRejects(rows: readonly DeadLetterWrite[]): Promise<void>;
}

export interface EmbeddedNodeOptions extends EngineSettings {
  /** Where the LevelDB state lives. */
  readonly stateDir: string;
  readonly warehouse: EngineSink;
  readonly logger: Logger;
  /** The wall clock. @default Date.now */
  readonly now?: () => number;
}

/** What one ingest call did. */
export interface IngestResult {
  readonly accepted: number;
  readonly rejects: readonly DeadLetterWrite[];
}

/**
 * The single process: the router, every partition actor and the coordinator
 * over an in-process transport, LevelDB state and the warehouse. The cluster
 * runs the same actors and coordinator over gRPC.
 */
export class EmbeddedNode {
  private pendingRejects: DeadLetterWrite[] = [];
  private closed = false;

  private constructor(
    private readonly options: EmbeddedNodeOptions,
    private readonly store: LevelStateStore,
    private readonly actors: PartitionActor[],
    private readonly router: EventRouter,
    private readonly coordinator: Coordinator,
  ) {}

  static async open(options: EmbeddedNodeOptions): Promise<EmbeddedNode> {
    const store = await LevelStateStore.open(options.stateDir);
    try {
      await checkPartitionCount(store, options.partitions);
      const actors: PartitionActor[] = [];
      for (let p = 0; p < options.partitions; p++) {
        actors.push(
          await PartitionActor.open(
            { partition: p, allowedLatenessMs: options.allowedLatenessMs },
            store,
          ),
        );
      }

      const router = new EventRouter({ ...options, now: options.now ?? Date.now });
      const routerState = await store.getJson<RouterState>(ROUTER_KEY);
      if (routerState !== undefined) router.restore(routerState);

      const fence: WriterFence = { ringEpoch: 0, fencingToken: 1 };
      await options.warehouse.claimFence(fence);
      const coordinator = new Coordinator(new InProcessPartitions(actors), options.warehouse, {
        allowedLatenessMs: options.allowedLatenessMs,
        fence,
        logger: options.logger.child({ component: 'coordinator' }),
      });
      await coordinator.resume();

      return new EmbeddedNode(options, store, actors, router, coordinator);
    } catch (err) {
      await store.close();
      throw err;
    }
  }

  get watermark(): number {
    return this.router.watermark;
  }

  get knownUsers(): number {
    return this.actors.reduce((n, a) => n + a.knownUsers, 0);
  }

  /** Resident dictionary bytes, hours on disk only, and hours read back, over all partitions. */
  get stats(): {
    knownUsers: number;
    dictionaryBytes: number;
    evictedHours: number;
    hourLoads: number;
  } {
    let dictionaryBytes = 0;
    let evictedHours = 0;
    let hourLoads = 0;
    for (const actor of this.actors) {
      dictionaryBytes += actor.dictionaryBytes;
      evictedHours += actor.spillStats.evictedHours;
      hourLoads += actor.spillStats.hourLoads;
    }

    return { knownUsers: this.knownUsers, dictionaryBytes, evictedHours, hourLoads };
  }

  /** Routes and applies one batch of parsed events; its record rejects are kept too. */
  async ingest(batch: EventBatch): Promise<IngestResult> {
    const routed = this.router.route(batch);
    await this.applyAll(routed.batches);

    const rejects = [
      ...batch.rejects.map(({ source, line, reason, detail, raw }) => ({
        source,
        line,
        reason,
        detail,
        raw,
      })),
      ...routed.rejects,
    ];
    this.pendingRejects.push(...rejects);

    return { accepted: routed.accepted, rejects };
  }

  /** Moves the clock (clock mode) with no input, so that idle time closes periods. */
  async advanceClock(nowMs: number): Promise<void> {
    await this.applyAll(this.router.advanceClock(nowMs));
  }

  /** Moves the watermark past everything seen, so that every period closes. */
  async finish(): Promise<void> {
    await this.applyAll(this.router.finish());
  }

  /**
   * Makes everything applied so far durable: rejects into the dead-letter
   * table, then one atomic LevelDB batch with every partition's state, the
   * router's position and the caller's `extra` records (e.g. replay progress).
   */
  async checkpoint(extra: readonly StorageOp[] = []): Promise<void> {
    if (this.pendingRejects.length > 0) {
      await this.options.warehouse.recordRejects(this.pendingRejects);
      this.pendingRejects = [];
    }

    const ops: StorageOp[] = [...extra, jsonPut(ROUTER_KEY, this.router.state)];
    for (const actor of this.actors) actor.collectWrites(ops);
    await this.store.write(ops);
    for (const actor of this.actors) actor.markPersisted();

    this.spillToBudget();
  }

  /** Checkpoints, then lets the coordinator close, restate and refresh periods. */
  async round(extra: readonly StorageOp[] = []): Promise<RoundResult> {
    await this.checkpoint(extra);

    return this.coordinator.round();
  }

  /** Reads a node-level record written through `extra`. */
  getRecord<T>(key: string): Promise<T | undefined> {
    return this.store.getJson<T>(key);
  }

  /** Closes the state store without a checkpoint: what was not checkpointed is lost, as in a crash. */
  async abandon(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.store.close();
  }

  /** Checkpoints, runs a last round and closes. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.round();
    this.closed = true;
    await this.store.close();
  }

  private async applyAll(batches: readonly PartitionBatch[]): Promise<void> {
    for (const batch of batches)
      await (this.actors[batch.partition] as PartitionActor).apply(batch);
  }

  private spillToBudget(): void {
    const dictBytes = this.actors.reduce((n, a) => n + a.dictionaryBytes, 0);
    const used = roaring.getRoaringUsedMemory() + dictBytes;
    const excess = used - this.options.memoryBudgetBytes;
    if (excess <= 0) return;

    // Free a little more than the excess so that spilling does not run on every checkpoint.
    const share = (excess + this.options.memoryBudgetBytes * 0.1) / this.actors.length;
    let freed = 0;
    for (const actor of this.actors) freed += actor.evict(share);
    this.options.logger.debug(
      { usedBytes: used, freedBytes: freed },
      'spilled closed periods to disk',
    );
  }
}

/** The coordinator's view of in-process partitions. */
class InProcessPartitions implements PartitionsPort {
  constructor(private readonly actors: readonly PartitionActor[]) {}

  get partitionCount(): number {
    return this.actors.length;
  }

  async reports(): Promise<PartitionReport[]> {
    return this.actors.map((a) => a.report());
  }

  async counts(keys: readonly string[]): Promise<Map<string, number>[]> {
    const out: Map<string, number>[] = [];
    for (const actor of this.actors) out.push(await actor.counts(keys));

    return out;
  }

  async acknowledge(acks: readonly PartitionAck[]): Promise<void> {
    for (const ack of acks) this.actors[ack.partition]?.acknowledge(ack.seals, ack.changes);
  }
}

async function checkPartitionCount(store: LevelStateStore, partitions: number): Promise<void> {
  const meta = await store.getJson<{ partitions: number }>(NODE_META_KEY);
  if (meta === undefined) {
    await store.write([jsonPut(NODE_META_KEY, { partitions })]);
    return;
  }
  if (meta.partitions !== partitions) {
    throw new Error(
      `[SL-CONFIG-001] this data directory was created with ${meta.partitions} partitions; ` +
        `it cannot be opened with ${partitions} (the partition count never changes)`,
    );
  }
}
