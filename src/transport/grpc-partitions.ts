/**
 * The coordinator's view of partitions held by shard processes, over gRPC: the same
 * port the embedded node implements in process, so that one Coordinator runs in both.
 */
import type { PartitionAck, PartitionsPort } from '../coordinator/coordinator.js';
import type { Logger } from '../observability/index.js';
import { ShardError } from '../shard/errors.js';
import type { PartitionReport } from '../shard/types.js';
import type { WriterFence } from '../sink/types.js';
import { ShardRpcClient, type ShardRpcClientOptions } from './shard-client.js';

export interface GrpcPartitionsPortOptions {
  /**
   * Where each partition's shard listens, e.g. `10.0.3.7:7400`: index = partition, so
   * there are P entries. Fixed for the port's lifetime; the ring will feed it later.
   */
  readonly addresses: readonly string[];
  /**
   * The coordinator's term: the ring epoch its counts are gathered under and its fencing
   * token. The token must be higher than that of every earlier coordinator, or the
   * shards refuse its acknowledgements (a lower token) or take them as repeats (the same).
   */
  readonly fence: WriterFence;
  readonly logger: Logger;
  /** How long a shard has to report before its partitions count as missing. @default 2000 */
  readonly reportDeadlineMs?: number;
  /** Deadline of counts and acknowledgements, which must succeed. @default 10000 */
  readonly callDeadlineMs?: number;
  /** How the shards are reached. */
  readonly client?: ShardRpcClientOptions;
}

interface Shard {
  readonly client: ShardRpcClient;
  /** The partitions it is asked about, ascending. */
  readonly partitions: readonly number[];
}

/**
 * Partitions reached over gRPC through a static partition → address map.
 *
 * - {@link reports} asks every shard at once; a shard that fails or does not answer
 *   within the report deadline is left out, so its partitions are missing and the
 *   coordinator publishes nothing that needs them.
 * - {@link counts} needs every partition: any shard's failure fails the call.
 * - {@link acknowledge} numbers the coordinator's rounds under its fencing token with
 *   increasing numbers taken from the wall clock (milliseconds), one per call; a retry of the same call resends the same round, so a shard applies
 *   it once.
 */
export class GrpcPartitionsPort implements PartitionsPort {
  readonly partitionCount: number;
  private readonly shards: Shard[] = [];
  private readonly shardOf: Shard[] = [];
  private readonly reportDeadlineMs: number;
  private readonly callDeadlineMs: number;
  private round = 0;
  private readonly reportFailures = new Map<string, unknown>();

  constructor(private readonly options: GrpcPartitionsPortOptions) {
    checkOptions(options);
    this.partitionCount = options.addresses.length;
    this.reportDeadlineMs = options.reportDeadlineMs ?? 2000;
    this.callDeadlineMs = options.callDeadlineMs ?? 10_000;

    const byAddress = new Map<string, number[]>();
    options.addresses.forEach((address, partition) => {
      const partitions = byAddress.get(address) ?? [];
      partitions.push(partition);
      byAddress.set(address, partitions);
    });
    for (const [address, partitions] of byAddress) {
      const shard = { client: new ShardRpcClient(address, options.client), partitions };
      this.shards.push(shard);
      for (const p of partitions) this.shardOf[p] = shard;
    }
  }

  /** One report per partition whose shard answered in time, by partition. */
  async reports(): Promise<PartitionReport[]> {
    this.reportFailures.clear();
    const perShard = await Promise.all(this.shards.map((shard) => this.reportsOf(shard)));

    return perShard.flat().sort((a, b) => a.partition - b.partition);
  }

  /** Current counts of the periods, one map per partition, by partition. */
  async counts(keys: readonly string[]): Promise<Map<string, number>[]> {
    const epoch = this.options.fence.ringEpoch;
    const perShard = await Promise.all(
      this.shards.map(async (shard) => ({
        shard,
        counts: await shard.client.counts(epoch, keys, shard.partitions, this.callDeadlineMs),
      })),
    );

    const byPartition = new Map<number, Map<string, number>>();
    for (const { shard, counts } of perShard) {
      for (const c of counts) {
        if (this.shardOf[c.partition] === shard) byPartition.set(c.partition, c.counts);
      }
    }

    return Array.from({ length: this.partitionCount }, (_, p) => {
      const counts = byPartition.get(p);
      if (counts === undefined) {
        const address = this.shardOf[p]?.client.address;
        throw new ShardError(
          'internal',
          `shard ${address} answered counts without partition ${p}`,
          {
            partition: p,
          },
        );
      }

      return counts;
    });
  }

  /**
   * Sends each shard the acknowledgements of its partitions, all shards at once. When a
   * shard fails, the others are still acknowledged and the first failure is thrown; what
   * it did not take is reported again and acknowledged in a later round.
   */
  async acknowledge(acks: readonly PartitionAck[]): Promise<void> {
    // Round numbers only grow, also across ports built under the same fencing token (a
    // leader that rebuilds its port when the ring changes): they follow the wall clock.
    this.round = Math.max(this.round + 1, Date.now());
    const round = this.round;
    const byShard = new Map<Shard, PartitionAck[]>();
    for (const ack of acks) {
      if (ack.seals.length === 0 && ack.changes.length === 0) continue;
      const shard = this.shardFor(ack.partition);
      byShard.set(shard, [...(byShard.get(shard) ?? []), ack]);
    }

    const results = await Promise.allSettled(
      [...byShard].map(([shard, shardAcks]) =>
        shard.client.acknowledge(this.options.fence, round, shardAcks, this.callDeadlineMs),
      ),
    );
    const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    if (failures.length === 0) return;

    this.options.logger.warn(
      { round, failedShards: failures.length, err: failures[0] },
      'acknowledgements not taken by every shard',
    );
    throw failures[0];
  }

  /** Why each shard that did not report in the last {@link reports} call failed, by address. */
  lastReportFailures(): ReadonlyMap<string, unknown> {
    return this.reportFailures;
  }

  /** Closes the channels to the shards. Safe to call twice. */
  close(): void {
    for (const shard of this.shards) shard.client.close();
  }

  private async reportsOf(shard: Shard): Promise<PartitionReport[]> {
    const epoch = this.options.fence.ringEpoch;

    try {
      const reports = await shard.client.reports(epoch, shard.partitions, this.reportDeadlineMs);
      // Only what was asked, once each: a report for another partition is not this shard's.
      const wanted = new Set(shard.partitions);

      return reports.filter((r) => wanted.delete(r.partition));
    } catch (err) {
      // Every round while it stays down: the coordinator service logs when it goes and
      // comes back, with the reason kept here.
      this.reportFailures.set(shard.client.address, err);
      this.options.logger.debug(
        { shard: shard.client.address, partitions: shard.partitions, err },
        'shard did not report; its partitions are missing',
      );
      return [];
    }
  }

  private shardFor(partition: number): Shard {
    const shard = this.shardOf[partition];
    if (shard === undefined) {
      throw new ShardError(
        'invalid-argument',
        `partition ${partition} is outside 0..${this.partitionCount - 1}`,
        { partition },
      );
    }

    return shard;
  }
}

function checkOptions(options: GrpcPartitionsPortOptions): void {
  if (options.addresses.length === 0) {
    throw new ShardError(
      'invalid-argument',
      'a partitions port needs the address of every partition',
    );
  }

  const blank = options.addresses.findIndex((a) => typeof a !== 'string' || a === '');
  if (blank >= 0) {
    throw new ShardError('invalid-argument', `partition ${blank} has no shard address`, {
      partition: blank,
    });
  }

  const { fencingToken } = options.fence;
  if (!Number.isSafeInteger(fencingToken) || fencingToken < 1) {
    throw new ShardError(
      'invalid-argument',
      `fencing token ${fencingToken} is not a positive integer`,
    );
  }
}
