/**
 * What a partition has taken from whom: the last sequence applied from each sender and
 * the last acknowledgement applied. The ledger is written in the same atomic batch as
 * the partition's state and inside the partition's key range, so that it never says
 * more or less than the state holds, and moves with the partition.
 *
 * A node takes a new sender id (`<node>@<incarnation>`) at every start, so the ledger
 * would keep one entry per restart for good, and it is rewritten with every batch. An
 * entry is dropped once another incarnation of the same node has sent and the entry's
 * own sender has been silent for {@link RETIRE_AFTER_MS}: a process that has been
 * replaced is not coming back. Should one come back anyway, its next batch is refused
 * with 'sequence-gap' (never applied twice), unless it is the first of its stream.
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

/** How long a replaced incarnation's entry is kept after its last batch. */
export const RETIRE_AFTER_MS = 60 * 60 * 1000;

/**
 * The ledger as stored: JSON, with the sequences as [sender, sequence, last applied at]
 * triples (the time in epoch ms of the owner's clock; absent in ledgers written before
 * it was kept, read as 0).
 */
interface StoredLedger {
  readonly sequences: ([string, number] | [string, number, number])[];
  readonly ack: AckStamp | null;
}

interface SenderEntry {
  sequence: number;
  lastAppliedMs: number;
}

/** The ledger of one partition. */
export class PartitionLedger {
  private readonly senders = new Map<string, SenderEntry>();
  private ack: AckStamp | null;
  private dirty = false;

  private constructor(
    readonly partition: number,
    stored: StoredLedger | undefined,
  ) {
    for (const [sender, sequence, lastAppliedMs] of stored?.sequences ?? []) {
      this.senders.set(sender, { sequence, lastAppliedMs: lastAppliedMs ?? 0 });
    }
    this.ack = stored?.ack ?? null;
  }

  static async load(store: LevelStateStore, partition: number): Promise<PartitionLedger> {
    return new PartitionLedger(partition, await store.getJson<StoredLedger>(ledgerKey(partition)));
  }

  /** The last sequence applied from `senderId`; 0 before its first batch. */
  lastSequence(senderId: string): number {
    return this.senders.get(senderId)?.sequence ?? 0;
  }

  /** The senders the ledger holds an entry for. */
  get senderIds(): string[] {
    return [...this.senders.keys()];
  }

  /**
   * Records the sequence applied, at `nowMs`, and drops the entries of this node's other
   * incarnations that have been silent for {@link RETIRE_AFTER_MS}.
   */
  noteSequence(stamp: RouteStamp, nowMs = Date.now()): void {
    const entry = this.senders.get(stamp.senderId);
    if (entry === undefined) {
      this.senders.set(stamp.senderId, { sequence: stamp.sequence, lastAppliedMs: nowMs });
    } else {
      entry.sequence = stamp.sequence;
      entry.lastAppliedMs = nowMs;
    }
    this.retireReplaced(stamp.senderId, nowMs);
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

    const sequences: [string, number, number][] = [];
    for (const [sender, entry] of this.senders) {
      sequences.push([sender, entry.sequence, entry.lastAppliedMs]);
    }
    const stored: StoredLedger = { sequences, ack: this.ack };
    ops.push(jsonPut(ledgerKey(this.partition), stored));
  }

  /** The writes from {@link collectWrites} are durable. */
  markPersisted(): void {
    this.dirty = false;
  }

  private retireReplaced(senderId: string, nowMs: number): void {
    const node = nodeOf(senderId);
    if (node === undefined) return;

    for (const [other, entry] of this.senders) {
      if (
        other !== senderId &&
        nodeOf(other) === node &&
        nowMs - entry.lastAppliedMs >= RETIRE_AFTER_MS
      ) {
        this.senders.delete(other);
      }
    }
  }
}

/** The node of a `<node>@<incarnation>` sender id; undefined for an id without one. */
function nodeOf(senderId: string): string | undefined {
  const at = senderId.lastIndexOf('@');

  return at > 0 && at < senderId.length - 1 ? senderId.slice(0, at) : undefined;
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
