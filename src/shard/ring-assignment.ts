/**
 * How a shard follows the ring: it holds the partitions the ring assigns to it, under
 * the ring's epoch, and reopens its host from the same store whenever a newer ring
 * arrives. On open the host deletes the state of the partitions it no longer holds (they
 * moved away with a handoff, or a copy's move was aborted), so stale copies never linger.
 */
import type { Logger } from '../observability/index.js';
import { partitionsOf, type Ring } from '../ring/index.js';
import type { PartitionHost } from './partition-host.js';

/** Where the host is served from: calls go to `host`, and `replaceHost` swaps it. */
export interface HostSlot {
  readonly host: PartitionHost;
  /** Sends every call from now on to `next`; returns the host it replaces. */
  replaceHost(next: PartitionHost): PartitionHost;
}

export interface RingAssignmentOptions {
  readonly shardId: string;
  /** P, as this shard was started with. */
  readonly partitionCount: number;
  readonly slot: HostSlot;
  /** Opens the host of `partitions` under `ringEpoch`, dropping the others' state. */
  readonly open: (partitions: number[], ringEpoch: number) => Promise<PartitionHost>;
  readonly logger: Logger;
}

/** The ring epoch and partitions a shard holds. */
export interface Assignment {
  readonly epoch: number;
  readonly partitions: readonly number[];
}

/** One shard's assignment, as rings arrive; rings must be applied one at a time, in order. */
export class RingAssignment {
  private held: Assignment | undefined;

  constructor(private readonly options: RingAssignmentOptions) {}

  /** What the shard holds, once a ring has assigned it partitions. */
  get assigned(): Assignment | undefined {
    return this.held;
  }

  /**
   * Takes a ring from the watch. Resolves with the host now serving when it reopened,
   * undefined when nothing changed (an older ring, or no partitions yet). Rejects when
   * the ring has another partition count than the shard.
   */
  async apply(ring: Ring): Promise<PartitionHost | undefined> {
    const { shardId, partitionCount, logger } = this.options;
    if (ring.partitions !== partitionCount) {
      throw new Error(
        `[SL-CONFIG-001] the ring in etcd has ${ring.partitions} partitions; this shard was started with --partitions ${partitionCount}`,
      );
    }
    const mine = partitionsOf(ring, shardId);
    const held = this.held;

    if (held === undefined && mine.length === 0) {
      logger.info(
        { shardId, ringEpoch: ring.epoch },
        'ring assigns no partitions to this shard yet',
      );
      await this.options.slot.host.dropUnheld(ring.epoch);
      return undefined;
    }
    if (held !== undefined && ring.epoch <= held.epoch) return undefined;

    if (held !== undefined) {
      logger.info(
        {
          shardId,
          ringEpoch: ring.epoch,
          previousEpoch: held.epoch,
          gained: mine.filter((p) => !held.partitions.includes(p)),
          lost: held.partitions.filter((p) => !mine.includes(p)),
        },
        'ring changed',
      );
    }

    return this.reopen(mine, ring.epoch);
  }

  /** Checkpoints and closes the serving host, then serves `partitions` under `epoch`. */
  private async reopen(partitions: number[], epoch: number): Promise<PartitionHost> {
    const old = this.options.slot.host;
    await old.checkpoint().catch((err: unknown) => {
      this.options.logger.warn({ err }, 'checkpoint before reopen failed');
    });
    await old.close();

    const next = await this.options.open(partitions, epoch);
    this.options.slot.replaceHost(next);
    this.held = { epoch, partitions: next.partitions };

    return next;
  }
}
