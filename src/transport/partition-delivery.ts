/**
 * Delivery of routed partition batches to the owners of their partitions, exactly once
 * and in order. Each partition has one FIFO; its batches leave one at a time, numbered
 * per (sender, partition) from 1 with no gaps, so that the owner's ledger applies each
 * once (a resent sequence is acknowledged as a duplicate). A batch is retried with
 * backoff for as long as the node runs, under the newest ring each time: an owner that
 * is down, restarting, or on another ring epoch delays delivery and loses nothing.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import type { Logger } from '../observability/index.js';
import { ownerOf } from '../ring/index.js';
import { ShardError, isShardError } from '../shard/errors.js';
import type { PartitionHost, RouteOutcome } from '../shard/partition-host.js';
import type { RouteStamp } from '../shard/partition-ledger.js';
import type { PartitionBatch, WatermarkMark } from '../shard/types.js';
import { WireFormatError } from './proto.js';
import type { RingSource, RoutingTable } from './routing-table.js';
import { ShardRpcClient, type ShardRpcClientOptions } from './shard-client.js';
import type { ShardMetrics } from './shard-metrics.js';

export interface PartitionDeliveryOptions {
  /** This node's shard id: partitions the ring gives it go to {@link localHost}. */
  readonly nodeId: string;
  /** Names this incarnation's streams; a restarted node must take a new one. */
  readonly senderId: string;
  /** P. */
  readonly partitions: number;
  readonly ring: RingSource;
  /** The partition host of this node now, if it has one (it is replaced on ring changes). */
  readonly localHost: () => PartitionHost | undefined;
  readonly logger: Logger;
  /** Deadline of one Route call. @default 30000 */
  readonly routeDeadlineMs?: number;
  /**
   * Queued batches of one partition are sent as one Route while they hold at most this
   * many events. @default 100000
   */
  readonly maxCoalescedEvents?: number;
  /**
   * ... and while their estimated size on the wire stays under this, far below the 64 MiB
   * a shard takes in one message. @default 16 MiB
   */
  readonly maxCoalescedBytes?: number;
  /** First retry delay; doubles up to {@link maxBackoffMs}. @default 100 */
  readonly initialBackoffMs?: number;
  /** @default 5000 */
  readonly maxBackoffMs?: number;
  /** How remote owners are reached. */
  readonly client?: ShardRpcClientOptions;
  /** Where deliveries, retries and the queue are counted. @default not counted */
  readonly metrics?: ShardMetrics;
}

interface Queued {
  readonly batch: PartitionBatch;
  /** Estimated size on the wire. */
  readonly bytes: number;
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

interface Outbox {
  readonly partition: number;
  readonly queue: Queued[];
  /** The last sequence handed out in this partition's stream. */
  sequence: number;
  running: boolean;
}

/** How an owner has been answering, so that each change is logged once. */
interface OwnerHealth {
  sinceMs: number;
  failures: number;
  /** Whether 'owner unreachable' was logged for this outage. */
  logged: boolean;
}

/**
 * How long an owner may fail before it is logged as unreachable: a shard reopening its
 * partitions under a new ring epoch refuses routes for a moment, and that is no outage.
 */
const UNREACHABLE_AFTER_MS = 1000;

/** The owner named in logs and metrics while no ring is known. */
const NO_RING = '(no ring)';

/** The FIFOs of one node's partition streams and the loops that drain them. */
export class PartitionDelivery {
  private readonly outboxes: Outbox[];
  private readonly clients = new Map<string, ShardRpcClient>();
  private readonly failing = new Map<string, OwnerHealth>();
  private readonly routeDeadlineMs: number;
  private readonly maxCoalescedEvents: number;
  private readonly maxCoalescedBytes: number;
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly stopListening: () => void;
  /** Aborted on every ring change and on close, to cut backoff sleeps short. */
  private wake = new AbortController();
  private closed = false;
  private queuedBatches = 0;

  constructor(private readonly options: PartitionDeliveryOptions) {
    this.outboxes = Array.from({ length: options.partitions }, (_, partition) => ({
      partition,
      queue: [],
      sequence: 0,
      running: false,
    }));
    this.routeDeadlineMs = options.routeDeadlineMs ?? 30_000;
    this.maxCoalescedEvents = options.maxCoalescedEvents ?? 100_000;
    this.maxCoalescedBytes = options.maxCoalescedBytes ?? 16 * 1024 * 1024;
    this.initialBackoffMs = options.initialBackoffMs ?? 100;
    this.maxBackoffMs = options.maxBackoffMs ?? 5000;
    this.stopListening = options.ring.onChange(() => this.wakeAll());
    options.metrics?.observeQueue(() => this.queuedBatches);
  }

  /** Batches queued or on their way, over all partitions. */
  get pending(): number {
    return this.queuedBatches;
  }

  /**
   * Queues `batch` behind the batches before it in its partition; resolves once it is
   * durable on the partition's owner. Rejects only when the delivery is closed first.
   */
  send(batch: PartitionBatch): Promise<void> {
    if (this.closed) return Promise.reject(closedError());
    const box = this.outboxes[batch.partition];
    if (box === undefined) {
      return Promise.reject(
        new ShardError(
          'invalid-argument',
          `partition ${batch.partition} is outside 0..${this.outboxes.length - 1}`,
        ),
      );
    }

    const done = new Promise<void>((resolve, reject) =>
      box.queue.push({ batch, bytes: wireBytes(batch), resolve, reject }),
    );
    this.queuedBatches++;
    if (!box.running) {
      box.running = true;
      void this.drain(box);
    }

    return done;
  }

  /** Stops every loop; batches not yet durable are rejected as unavailable. Safe to call twice. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopListening();
    this.wakeAll();
    for (const box of this.outboxes) this.failQueued(box);
    for (const client of this.clients.values()) client.close();
  }

  // --- one partition's loop -------------------------------------------------------------

  private async drain(box: Outbox): Promise<void> {
    while (box.queue.length > 0 && !this.closed) {
      const taken = this.takeCoalesced(box);
      // The sequence is spent from here on: every retry resends the same batch under it.
      const stamp = { senderId: this.options.senderId, sequence: ++box.sequence };
      const batch = concatPartitionBatches(taken.map((q) => q.batch));

      try {
        const owner = await this.deliver(box.partition, stamp, batch);
        this.options.metrics?.noteDelivered(owner, taken.length);
        for (const q of taken) q.resolve();
      } catch (err) {
        for (const q of taken) q.reject(err);
      } finally {
        this.queuedBatches -= taken.length;
      }
    }

    box.running = false;
    if (this.closed) this.failQueued(box);
  }

  /** The head of the queue and the batches behind it that fit with it in one Route. */
  private takeCoalesced(box: Outbox): Queued[] {
    const first = box.queue.shift() as Queued;
    const taken = [first];
    let events = first.batch.length;
    let bytes = first.bytes;
    while (box.queue.length > 0) {
      const next = box.queue[0] as Queued;
      if (events + next.batch.length > this.maxCoalescedEvents) break;
      if (bytes + next.bytes > this.maxCoalescedBytes) break;
      events += next.batch.length;
      bytes += next.bytes;
      taken.push(box.queue.shift() as Queued);
    }

    return taken;
  }

  /**
   * Sends until the owner under the current ring has made the batch durable; resolves
   * with that owner.
   */
  private async deliver(
    partition: number,
    stamp: RouteStamp,
    batch: PartitionBatch,
  ): Promise<string> {
    for (let attempt = 0; ; attempt++) {
      if (this.closed) throw closedError();
      const table = this.options.ring.current();
      let owner: string | undefined;

      try {
        if (table === undefined) throw new ShardError('unavailable', 'no ring is known yet');
        owner = ownerOf(table.ring, partition);
        await this.routeTo(owner, table, stamp, batch);
        this.noteSuccess(owner);
        return owner;
      } catch (err) {
        if (this.closed) throw closedError();
        this.noteFailure(owner ?? NO_RING, partition, table, err);
        this.options.metrics?.noteRetry(owner ?? NO_RING);
        await this.backoff(attempt);
      }
    }
  }

  private routeTo(
    owner: string,
    table: RoutingTable,
    stamp: RouteStamp,
    batch: PartitionBatch,
  ): Promise<RouteOutcome> {
    const ringEpoch = table.ring.epoch;
    if (owner === this.options.nodeId) {
      const host = this.options.localHost();
      if (host === undefined)
        throw new ShardError('unavailable', 'this node holds no partitions yet');
      if (host.ringEpoch !== ringEpoch) {
        throw new ShardError(
          'epoch-mismatch',
          `routed under ring epoch ${ringEpoch}; this node's partitions are held under ring epoch ${host.ringEpoch}`,
          { ringEpoch: host.ringEpoch, partition: batch.partition },
        );
      }
      return this.routeHere(host, stamp, batch);
    }

    const address = table.addresses.get(owner);
    if (address === undefined) {
      throw new ShardError('unavailable', `shard ${owner} is not registered`, {
        partition: batch.partition,
      });
    }

    return this.client(address).route({ ringEpoch, stamp, batch }, this.routeDeadlineMs);
  }

  /** Routes to this node's own host, whose metrics count what it applies. */
  private async routeHere(
    host: PartitionHost,
    stamp: RouteStamp,
    batch: PartitionBatch,
  ): Promise<RouteOutcome> {
    const outcome = await host.route(stamp, batch);
    this.options.metrics?.noteRouted(outcome, batch.length);

    return outcome;
  }

  private client(address: string): ShardRpcClient {
    let client = this.clients.get(address);
    if (client === undefined) {
      client = new ShardRpcClient(address, this.options.client);
      this.clients.set(address, client);
    }

    return client;
  }

  private async backoff(attempt: number): Promise<void> {
    const ceiling = Math.min(this.maxBackoffMs, this.initialBackoffMs * 2 ** Math.min(attempt, 20));
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    await sleep(delay, undefined, { signal: this.wake.signal }).catch(() => undefined);
  }

  private wakeAll(): void {
    this.wake.abort();
    this.wake = new AbortController();
  }

  private failQueued(box: Outbox): void {
    for (const q of box.queue.splice(0)) {
      q.reject(closedError());
      this.queuedBatches--;
    }
  }

  // --- what is logged ---------------------------------------------------------------------

  private noteFailure(
    owner: string,
    partition: number,
    table: RoutingTable | undefined,
    err: unknown,
  ): void {
    const now = Date.now();
    let health = this.failing.get(owner);
    if (health === undefined) {
      health = { sinceMs: now, failures: 0, logged: false };
      this.failing.set(owner, health);
    }
    health.failures++;

    // Refusals that no wait can fix are an operator's to look at at once; the batch is kept.
    const transient =
      !(err instanceof WireFormatError) &&
      (!isShardError(err) ||
        err.retryable ||
        err.kind === 'not-owner' ||
        err.kind === 'epoch-mismatch');
    if (health.logged || (transient && now - health.sinceMs < UNREACHABLE_AFTER_MS)) return;

    health.logged = true;
    const fields = { owner, partition, ringEpoch: table?.ring.epoch, err };
    if (transient) this.options.logger.warn(fields, 'owner unreachable; retrying');
    else this.options.logger.error(fields, 'owner refused a routed batch; retrying');
  }

  private noteSuccess(owner: string): void {
    const health = this.failing.get(owner);
    if (health === undefined) return;

    this.failing.delete(owner);
    if (!health.logged) return;
    this.options.logger.info(
      { owner, downMs: Date.now() - health.sinceMs, failedAttempts: health.failures },
      'owner recovered',
    );
  }
}

/** An upper bound of a batch's size on the wire: UTF-8 ids, hashes, times and marks. */
function wireBytes(batch: PartitionBatch): number {
  let bytes = 16 * batch.marks.length;
  for (const userId of batch.userIds) bytes += 3 * userId.length + 20;

  return bytes;
}

function closedError(): ShardError {
  return new ShardError('unavailable', 'the ingest router is closed');
}

/**
 * One batch of a partition's events and marks in order: the events one after another,
 * each batch's marks moved by the events before it. Two marks that fall before the same
 * event become the later one, as the router itself does.
 */
export function concatPartitionBatches(batches: readonly PartitionBatch[]): PartitionBatch {
  const [first] = batches;
  if (first === undefined) throw new Error('no partition batch to concatenate');
  if (batches.length === 1) return first;

  const length = batches.reduce((n, b) => n + b.length, 0);
  const userIds: string[] = [];
  const slotHashes = new Uint32Array(length);
  const eventTimeMs = new Float64Array(length);
  const marks: WatermarkMark[] = [];
  let offset = 0;

  for (const batch of batches) {
    for (const userId of batch.userIds) userIds.push(userId);
    slotHashes.set(batch.slotHashes.subarray(0, batch.length), offset);
    eventTimeMs.set(batch.eventTimeMs.subarray(0, batch.length), offset);
    for (const mark of batch.marks) {
      const before = mark.before + offset;
      const last = marks[marks.length - 1];
      if (last !== undefined && last.before === before) {
        marks[marks.length - 1] = {
          before,
          watermarkMs: Math.max(last.watermarkMs, mark.watermarkMs),
        };
      } else {
        marks.push({ before, watermarkMs: mark.watermarkMs });
      }
    }
    offset += batch.length;
  }

  return { partition: first.partition, length, userIds, slotHashes, eventTimeMs, marks };
}
