/**
 * Partition handoff as the elected coordinator runs it ("pause and copy", see
 * docs/cluster.md): when a registered shard owns nothing (scale-out) or a shard marked
 * as leaving owns partitions (scale-in), and every ring owner is registered, the leader
 * moves whole partitions with their state, to the joiner or off the leaver.
 *
 * 1. Plan: `next = computeRing(P, registered, ring)` (epoch E+1) is stored in etcd as the
 *    pending ring, over ring E and under the leader's guard.
 * 2. Copy: for each partition that moves A -> B, B is asked to adopt it from A under E;
 *    A releases it (and refuses it from then on, retryably) and streams its state.
 * 3. Switch: once every copy is durable, ring E+1 = next is written (which ends the
 *    pending ring); shards reopen under it, and A drops what moved away.
 * 4. Abort: if a copy fails, or a new leader finds a move pending, ring E+1 is written
 *    with the old owners: releases are per epoch, so A serves its partitions again, and B
 *    drops its copies. The move is planned again after a backoff.
 *
 * Counts never change across a move: the state moves whole, and the coordinator sums
 * partitions. Rounds find the moving partitions missing and hold back meanwhile.
 */
import type { Logger } from '../observability/index.js';
import {
  computeRing,
  diffRings,
  isRingError,
  shardsOf,
  type CoordinationStore,
  type Leadership,
  type PartitionMove,
  type Ring,
  type ShardInfo,
} from '../ring/index.js';
import type { AdoptOutcome } from '../shard/partition-copy.js';
import { ShardRpcClient, type ShardRpcClientOptions } from '../transport/shard-client.js';

export interface PartitionHandoffOptions {
  readonly store: CoordinationStore;
  /** The term's leadership: every ring write is guarded by it. */
  readonly leadership: Leadership;
  readonly logger: Logger;
  /** Deadline of one partition's copy (one Adopt call). @default 600000 */
  readonly adoptDeadlineMs?: number;
  /** How many partitions are copied at once. @default 2 */
  readonly concurrency?: number;
  /** Wait after an aborted move before the next plan; doubles up to ten times. @default 5000 */
  readonly retryBackoffMs?: number;
  /** How the adopting shards are reached. */
  readonly client?: ShardRpcClientOptions;
}

/**
 * The ring a move goes to from `ring`: every registered shard that is not leaving in
 * it, the fewest partitions moved. Undefined unless every owner of `ring` is registered
 * (a shard that is down cannot hand its partitions over), some shard may own partitions,
 * and either one of them owns nothing (it joined) or a leaving shard owns some.
 */
export function planMove(
  ring: Ring,
  shards: readonly ShardInfo[],
  leaving: readonly string[] = [],
): Ring | undefined {
  const registered = shards.map((s) => s.shardId);
  const owners = shardsOf(ring);
  if (owners.some((owner) => !registered.includes(owner))) return undefined;

  const staying = registered.filter((id) => !leaving.includes(id));
  if (staying.length === 0) return undefined;
  const joined = staying.some((id) => !owners.includes(id));
  const leaves = owners.some((id) => leaving.includes(id));
  if (!joined && !leaves) return undefined;

  const next = computeRing(ring.partitions, staying, ring);

  return diffRings(ring, next).length > 0 ? next : undefined;
}

/** The handoff of one leader's term. */
export class PartitionHandoff {
  private readonly logger: Logger;
  private readonly initialBackoffMs: number;
  private backoffMs: number;
  private notBeforeMs = 0;
  /** A move failed and its abort could not be written yet. */
  private mustAbort = false;

  constructor(private readonly options: PartitionHandoffOptions) {
    this.logger = options.logger;
    this.initialBackoffMs = options.retryBackoffMs ?? 5000;
    this.backoffMs = this.initialBackoffMs;
  }

  /**
   * On taking office: a move that an earlier leader left pending over `ring` is aborted.
   * Resolves with the ring in etcd afterwards.
   */
  async recover(ring: Ring | undefined): Promise<Ring | undefined> {
    const pending = await this.options.store.readPendingRing();
    if (pending === undefined || ring === undefined) return ring;

    return this.abort(ring, `a move to ring epoch ${pending.epoch} was left pending`);
  }

  /**
   * Runs a move when one is due over `ring` and the registered `shards`, or retries an
   * abort that could not be written. Resolves with the ring in etcd afterwards (`ring`
   * itself when nothing was written). Rejects when a ring write fails: with 'not-leader'
   * the term is over; otherwise the next step tries again.
   */
  async step(
    ring: Ring,
    shards: readonly ShardInfo[],
    leaving: readonly string[],
    signal: AbortSignal,
  ): Promise<Ring> {
    if (this.mustAbort) return this.abort(ring, 'retrying the abort of a failed move');
    if (Date.now() < this.notBeforeMs) return ring;

    const next = planMove(ring, shards, leaving);
    if (next === undefined) return ring;

    return this.move(ring, next, shards, signal);
  }

  private async move(
    ring: Ring,
    next: Ring,
    shards: readonly ShardInfo[],
    signal: AbortSignal,
  ): Promise<Ring> {
    const { store, leadership } = this.options;
    const moves = diffRings(ring, next);
    const startedMs = Date.now();

    // Plan.
    await store.writePendingRing(next, { expectEpoch: ring.epoch, leadership });
    const leaving = shardsOf(ring).filter((id) => !next.owners.includes(id));
    this.logger.info(
      {
        ringEpoch: ring.epoch,
        nextEpoch: next.epoch,
        moves: moves.map(describeMove),
        ...(leaving.length > 0 ? { leaving } : {}),
      },
      'partition move planned',
    );

    // Copy, then switch; any failure before the switch aborts the move.
    let copied: AdoptOutcome[];
    try {
      copied = await this.copyAll(ring, moves, shards, signal);
      signal.throwIfAborted();
      await store.writeRing(next, { expectEpoch: ring.epoch, leadership });
    } catch (err) {
      // A term that ended leaves the move pending: the next leader aborts it.
      if (signal.aborted || isRingError(err, 'not-leader')) throw err;

      this.logger.warn(
        { err, ringEpoch: ring.epoch, retryInMs: this.backoffMs },
        'partition move failed; aborting it',
      );
      this.notBeforeMs = Date.now() + this.backoffMs;
      this.backoffMs = Math.min(this.backoffMs * 2, this.initialBackoffMs * 1024);
      this.mustAbort = true;

      return this.abort(ring, 'a copy failed');
    }

    this.backoffMs = this.initialBackoffMs;
    this.logger.info(
      {
        ringEpoch: next.epoch,
        partitions: moves.length,
        entries: copied.reduce((n, c) => n + c.entries, 0),
        bytes: copied.reduce((n, c) => n + c.bytes, 0),
        durationMs: Date.now() - startedMs,
      },
      'partition move switched',
    );

    return next;
  }

  /** Writes the old owners under the next epoch. Resolves with the ring in etcd then. */
  private async abort(ring: Ring, reason: string): Promise<Ring> {
    const back: Ring = { epoch: ring.epoch + 1, partitions: ring.partitions, owners: ring.owners };
    this.mustAbort = true;

    try {
      await this.options.store.writeRing(back, {
        expectEpoch: ring.epoch,
        leadership: this.options.leadership,
      });
    } catch (err) {
      if (!isRingError(err, 'stale-epoch')) throw err;

      // The ring moved on (the switch landed after all): nothing is pending any more.
      this.mustAbort = false;
      return (await this.options.store.readRing()) ?? ring;
    }

    this.mustAbort = false;
    this.logger.warn(
      { ringEpoch: back.epoch, reason },
      'partition move aborted: the old owners serve every partition under a new ring epoch',
    );

    return back;
  }

  /** Copies every move, a few at a time; the first failure cancels the others and throws. */
  private async copyAll(
    ring: Ring,
    moves: readonly PartitionMove[],
    shards: readonly ShardInfo[],
    signal: AbortSignal,
  ): Promise<AdoptOutcome[]> {
    const addressOf = new Map(shards.map((s) => [s.shardId, s.address]));
    const queue = [...moves];
    const copied: AdoptOutcome[] = [];
    const stop = new AbortController();
    const cancelled = AbortSignal.any([signal, stop.signal]);
    let failure: { error: unknown } | undefined;

    const worker = async (): Promise<void> => {
      for (let move = queue.shift(); move !== undefined; move = queue.shift()) {
        if (cancelled.aborted) return;
        try {
          copied.push(await this.copy(ring, move, addressOf, cancelled));
        } catch (error) {
          failure ??= { error };
          stop.abort();
        }
      }
    };
    const workers = Math.min(this.options.concurrency ?? 2, moves.length);
    await Promise.all(Array.from({ length: workers }, worker));

    if (failure !== undefined) throw failure.error;

    return copied;
  }

  private async copy(
    ring: Ring,
    move: PartitionMove,
    addressOf: ReadonlyMap<string, string>,
    signal: AbortSignal,
  ): Promise<AdoptOutcome> {
    const from = addressOf.get(move.from);
    const to = addressOf.get(move.to);
    if (from === undefined || to === undefined) {
      throw new Error(
        `partition ${move.partition} cannot move from ${move.from} to ${move.to}: one of them is not registered`,
      );
    }

    const client = new ShardRpcClient(to, this.options.client);
    try {
      const call = { ringEpoch: ring.epoch, partition: move.partition, from, to };
      const outcome = await client.adopt(call, this.options.adoptDeadlineMs ?? 600_000, signal);
      this.logger.debug({ ...outcome, from: move.from, to: move.to }, 'partition copied');

      return outcome;
    } finally {
      client.close();
    }
  }
}

function describeMove(move: PartitionMove): string {
  return `${move.partition}: ${move.from} -> ${move.to}`;
}
