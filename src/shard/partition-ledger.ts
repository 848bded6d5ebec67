/**
 * What a partition has taken from whom: the last sequence applied from each sender and
 * the last acknowledgement applied. The ledger is written in the same atomic batch as
 * the partition's state and inside the partition's key range, so that it never says
 * more or less than the state holds, and moves with the partition.
 */
import { ShardError } from './errors.js';
import { jsonPut, type LevelStateStore } from './level-state-store.js';
import { partitionPrefix } from './partition-keys.js';
import type { StorageOp } from './types.js';

const ledgerKey = (partition: number): string => `${partitionPrefix(partition)}ledger`;

/**
 * Names a routed batch: its place in one sender's ordered stream for the partition.
 * A sender that restarts without its last sequences must take a new sender id: under a
 * reused id, its restarted sequences would be taken as repeats and not applied.
 */
export interface RouteStamp {
  /** The node that routed the batch (one incarnation of it, unless it keeps its sequences). */
  readonly senderId: string;
  /** From 1, with no gaps, per sender and partition. */
  readonly sequence: number;
}

/** Names an acknowledgement: the coordinator's fencing token and its round under it. */
export interface AckStamp {
  readonly fencingToken: number;
  readonly round: number;
}

/** The ledger as stored: JSON, with the sequences as [sender, sequence] pairs. */
interface StoredLedger {
  readonly sequences: [string, number][];
  readonly ack: AckStamp | null;
}

/** The ledger of one partition. */
export class PartitionLedger {
  private readonly sequences: Map<string, number>;
  private ack: AckStamp | null;
  private dirty = false;

  private constructor(
    readonly partition: number,
    stored: StoredLedger | undefined,
  ) {
    this.sequences = new Map(stored?.sequences ?? []);
    this.ack = stored?.ack ?? null;
  }

  static async load(store: LevelStateStore, partition: number): Promise<PartitionLedger> {
    return new PartitionLedger(partition, await store.getJson<StoredLedger>(ledgerKey(partition)));
  }

  /** The last sequence applied from `senderId`; 0 before its first batch. */
  lastSequence(senderId: string): number {
    return this.sequences.get(senderId) ?? 0;
  }

  noteSequence(stamp: RouteStamp): void {
    this.sequences.set(stamp.senderId, stamp.sequence);
    this.dirty = true;
  }

  /** The fencing token of the last acknowledgement applied; 0 before the first. */
  get fencingToken(): number {
    return this.ack?.fencingToken ?? 0;
  }

  /** Whether an acknowledgement with this stamp was applied before. */
  hasApplied(stamp: AckStamp): boolean {
    const last = this.ack;

    return last !== null && last.fencingToken === stamp.fencingToken && stamp.round <= last.round;
  }

  noteAck(stamp: AckStamp): void {
    this.ack = { fencingToken: stamp.fencingToken, round: stamp.round };
    this.dirty = true;
  }

  /** Appends the ledger to `ops` if it changed since the last durable write. */
  collectWrites(ops: StorageOp[]): void {
    if (!this.dirty) return;

    const stored: StoredLedger = { sequences: [...this.sequences], ack: this.ack };
    ops.push(jsonPut(ledgerKey(this.partition), stored));
  }

  /** The writes from {@link collectWrites} are durable. */
  markPersisted(): void {
    this.dirty = false;
  }
}

export function checkRouteStamp(stamp: RouteStamp): void {
  if (stamp.senderId === '') {
    throw new ShardError('invalid-argument', 'a routed batch must name its sender');
  }
  if (!Number.isSafeInteger(stamp.sequence) || stamp.sequence < 1) {
    throw new ShardError(
      'invalid-argument',
      `sequence ${stamp.sequence} of sender ${stamp.senderId} is not a positive integer`,
    );
  }
}

export function checkAckStamp(stamp: AckStamp): void {
  const valid = (n: number): boolean => Number.isSafeInteger(n) && n >= 1;
  if (!valid(stamp.fencingToken) || !valid(stamp.round)) {
    throw new ShardError(
      'invalid-argument',
      `acknowledgement stamp (fencing token ${stamp.fencingToken}, round ${stamp.round}) must hold positive integers`,
    );
  }
}
