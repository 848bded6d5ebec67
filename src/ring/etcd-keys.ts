/**
 * What the store keeps in etcd, below its prefix, and how the values are written:
 *
 * - `shards/<shardId>`: `{"shardId","address"}`, bound to the shard's lease;
 * - `ring`: `{"epoch","partitions","owners","writeId"}`; `writeId` names the write that
 *   stored it, so that a writer whose answer was lost can tell whether it landed;
 * - `pending-ring`: the ring the leader is moving partitions to, encoded as the ring is,
 *   while a move is under way (see `etcd-pending-ring.ts`); a ring write deletes it;
 * - `election/<electionName>/<leaseId>`: a candidate's id, bound to its lease;
 * - `status`: the leader's status record (see `status-record.ts`), rewritten after its
 *   rounds while the leader's election key exists;
 * - `leaving/<shardId>`: `{"sinceMs"}`, a shard being decommissioned: the leader moves
 *   its partitions to the others and gives it none; the shard deletes it when it starts.
 */
import type { ShardInfo } from './coordination-store.js';
import { RingError } from './errors.js';
import { revisionNumber } from './etcd-support.js';
import { ringProblem, type Ring } from './ring.js';

export const RING_KEY = 'ring';
export const PENDING_RING_KEY = 'pending-ring';
export const SHARDS_PREFIX = 'shards/';
export const STATUS_KEY = 'status';
export const LEAVING_PREFIX = 'leaving/';

export function shardKey(shardId: string): string {
  return `${SHARDS_PREFIX}${shardId}`;
}

/** The key prefix of an election (etcd3's and etcd's Go client's layout). */
export function electionPrefix(electionName: string): string {
  return `election/${electionName}/`;
}

/** What the ring key holds: the ring and the id of the write that stored it. */
export interface StoredRing {
  readonly ring: Ring;
  readonly writeId: string;
  readonly modRevision: string;
}

/** The ring key's value for `ring`, written by `writeId`. */
export function encodeRing(ring: Ring, writeId: string): string {
  return JSON.stringify({
    epoch: ring.epoch,
    partitions: ring.partitions,
    owners: ring.owners,
    writeId,
  });
}

export function parseStoredRing(text: string, modRevision: string): StoredRing {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new RingError('corrupt-state', 'the ring key does not hold JSON', { cause: err });
  }

  const problem = ringProblem(value);
  if (problem !== undefined) {
    throw new RingError('corrupt-state', `the ring key holds no valid ring: ${problem}`);
  }

  const { epoch, partitions, owners, writeId } = value as Ring & { writeId?: unknown };

  return {
    ring: { epoch, partitions, owners: [...owners] },
    writeId: String(writeId ?? ''),
    modRevision,
  };
}

export function parseShard(kv: {
  key: Buffer;
  value: Buffer;
  lease: unknown;
  create_revision: string;
}): ShardInfo {
  const shardId = kv.key.toString().slice(SHARDS_PREFIX.length);
  let record: unknown;
  try {
    record = JSON.parse(kv.value.toString());
  } catch (err) {
    throw new RingError('corrupt-state', `the key of shard ${shardId} does not hold JSON`, {
      cause: err,
    });
  }

  const address = (record as { address?: unknown } | null)?.address;
  if (typeof address !== 'string') {
    throw new RingError('corrupt-state', `the key of shard ${shardId} holds no address`);
  }

  return {
    shardId,
    address,
    leaseId: String(kv.lease),
    registeredRevision: revisionNumber(kv.create_revision),
  };
}
