/**
 * The pending ring in etcd: the ring the leader is moving partitions to, recorded before
 * the first partition moves, so that a leader elected after a crash knows a move was
 * under way (and aborts it). It sits beside the ring key, with the ring's encoding, and
 * a ring write ends it: `EtcdCoordinationStore.writeRing` deletes it in the same
 * transaction.
 */
import { randomUUID } from 'node:crypto';

import { RingError } from './errors.js';
import {
  PENDING_RING_KEY,
  RING_KEY,
  encodeRing,
  parseStoredRing,
  type StoredRing,
} from './etcd-keys.js';
import { fromEtcdError, revisionNumber, type EtcdContext } from './etcd-support.js';
import type { Ring } from './ring.js';

/** The election key a write is guarded by: it must still exist with this creation revision. */
export interface LeaderGuard {
  readonly key: string;
  readonly fencingToken: number;
}

/** Reads and writes the pending ring; the store checks the arguments and the guard. */
export class EtcdPendingRing {
  constructor(
    private readonly ctx: EtcdContext,
    private readonly readRing: () => Promise<StoredRing | undefined>,
  ) {}

  async read(): Promise<StoredRing | undefined> {
    const result = await this.ctx.ns
      .get(PENDING_RING_KEY)
      .exec()
      .catch((err: unknown) => {
        throw fromEtcdError('reading the pending ring', err);
      });

    const kv = result.kvs[0];
    if (kv === undefined) return undefined;

    return parseStoredRing(kv.value.toString(), String(kv.mod_revision));
  }

  /**
   * Stores `next` as the pending ring while the ring is still at epoch `next.epoch - 1`,
   * no ring is pending, and the guard's election key exists, all in one transaction.
   */
  async write(next: Ring, guard: LeaderGuard | undefined): Promise<void> {
    const expectEpoch = next.epoch - 1;

    // Gather: the ring the move starts from, as read now.
    const current = await this.readRing();
    const currentEpoch = current?.ring.epoch ?? 0;
    if (current === undefined || currentEpoch !== expectEpoch) {
      throw staleRing(expectEpoch, currentEpoch);
    }
    if (current.ring.partitions !== next.partitions) {
      throw new RingError(
        'invalid-argument',
        `the partition count never changes: etcd holds ${current.ring.partitions}, the pending ring has ${next.partitions}`,
      );
    }

    // Act: only over that ring, with no other move pending, while the leader leads.
    const ns = this.ctx.ns;
    const writeId = randomUUID();
    const txn = ns
      .if(PENDING_RING_KEY, 'Create', '==', 0)
      .and(RING_KEY, 'Mod', '==', current.modRevision);
    if (guard !== undefined) txn.and(guard.key, 'Create', '==', guard.fencingToken);
    txn.then(ns.put(PENDING_RING_KEY).value(encodeRing(next, writeId)));

    const committed = await txn.commit().then(
      (result) => result.succeeded,
      async (err: unknown) => {
        if ((await this.read().catch(() => undefined))?.writeId === writeId) return true;
        throw fromEtcdError(`writing pending ring epoch ${next.epoch}`, err);
      },
    );
    if (!committed) await this.explainRefusal(writeId, expectEpoch, guard);

    this.ctx.logger.info({ epoch: next.epoch }, 'pending ring written');
  }

  /** A refused write: ours after all, a lost leadership, a newer ring, or another move. */
  private async explainRefusal(
    writeId: string,
    expectEpoch: number,
    guard: LeaderGuard | undefined,
  ): Promise<void> {
    const pending = await this.read();
    if (pending?.writeId === writeId) return;

    if (guard !== undefined) {
      const leaderKey = await this.ctx.ns
        .get(guard.key)
        .exec()
        .catch((err: unknown) => {
          throw fromEtcdError('checking the leadership of a refused pending ring write', err);
        });
      const created = leaderKey.kvs[0]?.create_revision;
      if (created === undefined || revisionNumber(created) !== guard.fencingToken) {
        throw new RingError('not-leader', 'the leadership guarding the pending ring has ended');
      }
    }

    const ring = await this.readRing();
    if (ring?.ring.epoch !== expectEpoch) throw staleRing(expectEpoch, ring?.ring.epoch ?? 0);

    throw new RingError(
      'stale-epoch',
      `a move to ring epoch ${pending?.ring.epoch ?? '?'} is pending already: end it with a ring write first`,
      { currentEpoch: expectEpoch },
    );
  }
}

function staleRing(expectEpoch: number, currentEpoch: number): RingError {
  return new RingError(
    'stale-epoch',
    `the ring in etcd is at epoch ${currentEpoch}, not ${expectEpoch}: re-read it and plan again`,
    { currentEpoch },
  );
}
