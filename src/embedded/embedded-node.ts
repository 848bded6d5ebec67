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
import { jsonPut } from '../shard/level-state-store.js';
import { PartitionHost } from '../shard/partition-host.js';
import type { PartitionReport, StorageOp } from '../shard/types.js';
import { StaleFenceError } from '../sink/errors.js';
import type { DeadLetterWrite, WriterFence } from '../sink/types.js';

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
    private readonly host: PartitionHost,
    private readonly router: EventRouter,
    private readonly coordinator: Coordinator,
  ) {}

  static async open(options: EmbeddedNodeOptions): Promise<EmbeddedNode> {
    const host = await PartitionHost.open({
      stateDir: options.stateDir,
      partitionCount: options.partitions,
      allowedLatenessMs: options.allowedLatenessMs,
      memoryBudgetBytes: options.memoryBudgetBytes,
      logger: options.logger,
    });
    try {
      const router = new EventRouter({ ...options, now: options.now ?? Date.now });
      const routerState = await host.getRecord<RouterState>(ROUTER_KEY);
      if (routerState !== undefined) router.restore(routerState);

      const fence: WriterFence = { ringEpoch: 0, fencingToken: 1 };
      await options.warehouse.claimFence(fence).catch((err: unknown) => {
        if (!(err instanceof StaleFenceError)) throw err;
        throw new StaleFenceError(
          fence.fencingToken,
          err.heldToken,
          "a cluster's coordinator has written to this database, and the single process cannot publish beside it: give it a database, schema or data directory of its own",
        );
      });
      const coordinator = new Coordinator(new InProcessPartitions(host), options.warehouse, {
        allowedLatenessMs: options.allowedLatenessMs,
        fence,
        logger: options.logger.child({ component: 'coordinator' }),
      });
      await coordinator.resume();

      return new EmbeddedNode(options, host, router, coordinator);
    } catch (err) {
      await host.close();
      throw err;
    }
  }

  get watermark(): number {
    return this.router.watermark;
  }

  get knownUsers(): number {
    return this.host.knownUsers;
  }

  /** Resident dictionary bytes, hours on disk only, and hours read back, over all partitions. */
  get stats(): {
    knownUsers: number;
    dictionaryBytes: number;
    evictedHours: number;
    hourLoads: number;
  } {
    return { ...this.host.stats };
  }

  /** Routes and applies one batch of parsed events; its record rejects are kept too. */
  async ingest(batch: EventBatch): Promise<IngestResult> {
    const routed = this.router.route(batch);
    await this.host.apply(routed.batches);

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
    await this.host.apply(this.router.advanceClock(nowMs));
  }

  /** Moves the watermark past everything seen, so that every period closes. */
  async finish(): Promise<void> {
    await this.host.apply(this.router.finish());
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

    await this.host.checkpoint([...extra, jsonPut(ROUTER_KEY, this.router.state)]);
  }

  /** Checkpoints, then lets the coordinator close, restate and refresh periods. */
  async round(extra: readonly StorageOp[] = []): Promise<RoundResult> {
    await this.checkpoint(extra);

    return this.coordinator.round();
  }

  /** Reads a node-level record written through `extra`. */
  getRecord<T>(key: string): Promise<T | undefined> {
    return this.host.getRecord<T>(key);
  }

  /** Closes the state store without a checkpoint: what was not checkpointed is lost, as in a crash. */
  async abandon(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.host.close();
  }

  /** Checkpoints, runs a last round and closes. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.round();
    this.closed = true;
    await this.host.close();
  }
}

/** The coordinator's view of in-process partitions: one host that holds them all. */
class InProcessPartitions implements PartitionsPort {
  constructor(private readonly host: PartitionHost) {}

  get partitionCount(): number {
    return this.host.partitionCount;
  }

  reports(): Promise<PartitionReport[]> {
    return this.host.reports();
  }

  async counts(keys: readonly string[]): Promise<Map<string, number>[]> {
    const perPartition = await this.host.counts(keys);

    return perPartition.map((p) => p.counts);
  }

  acknowledge(acks: readonly PartitionAck[]): Promise<void> {
    return this.host.acknowledge(acks);
  }
}
