/**
 * The coordinator's status as the leader records it in etcd after every round, so that
 * any process with etcd access can tell who leads and which partitions hold numbers
 * back: how it looks, how it is written to the `status` key, and how a reader judges a
 * record against the leader it sees now.
 */
import { RingError } from './errors.js';

/** One partition as the leader's last round saw it. */
export interface PartitionStatusRecord {
  readonly partition: number;
  /** The shard that owns it under the ring epoch; '' when there is no ring yet. */
  readonly shardId: string;
  /** Where that shard listens; '' when unknown. */
  readonly address: string;
  /** Whether it reported in the last round; false before the first round of a term. */
  readonly reported: boolean;
  /** Its watermark as last reported in this term; absent when it has reported none. */
  readonly watermarkMs?: number;
}

/** What the leader records after every round and when it takes office. */
export interface StatusRecord {
  /** The leader's candidate id; '' while no leader is elected. */
  readonly leaderId: string;
  /** The leader's fencing token; 0 while no leader is elected. */
  readonly fencingToken: number;
  /** The ring epoch of the last round; 0 before the first ring. */
  readonly ringEpoch: number;
  /** P. */
  readonly partitionCount: number;
  /** The global watermark of the last round, when it was complete and known. */
  readonly globalWatermarkMs?: number;
  /** Partitions that did not report in the last round, ascending. */
  readonly missingPartitions: readonly number[];
  /** One entry per partition, 0 .. P-1; empty before the first ring. */
  readonly partitions: readonly PartitionStatusRecord[];
  /** When the last round ended, epoch ms; absent before the first round of the term. */
  readonly lastRoundAtMs?: number;
  /** When this record was made, epoch ms. */
  readonly recordedAtMs: number;
}

/** The elected leader as a reader sees it now. */
export interface StatusLeader {
  readonly candidateId: string;
  readonly fencingToken: number;
}

/**
 * The record as a reader should present it, given the leader elected now. A record made
 * under another term (an earlier leader, or none elected now) says nothing about the last
 * round any more: the ring and the last watermarks stay, but no partition counts as
 * reported or missing, and the leader fields name the leader of now.
 */
export function judgeStatus(
  record: StatusRecord | undefined,
  leader: StatusLeader | undefined,
  nowMs: number,
): StatusRecord | undefined {
  if (record === undefined) {
    if (leader === undefined) return undefined;

    return {
      leaderId: leader.candidateId,
      fencingToken: leader.fencingToken,
      ringEpoch: 0,
      partitionCount: 0,
      missingPartitions: [],
      partitions: [],
      recordedAtMs: nowMs,
    };
  }

  if (leader !== undefined && leader.fencingToken === record.fencingToken) return record;

  return {
    leaderId: leader?.candidateId ?? '',
    fencingToken: leader?.fencingToken ?? 0,
    ringEpoch: record.ringEpoch,
    partitionCount: record.partitionCount,
    missingPartitions: [],
    partitions: record.partitions.map((p) => ({ ...p, reported: false })),
    recordedAtMs: record.recordedAtMs,
  };
}

/**
 * The `status` key's value. Partitions go in columns (owners, watermarks) and the shard
 * addresses once each, so that the value stays small for a large P: the leader rewrites
 * it every few rounds and etcd keeps each revision until it compacts.
 */
export function encodeStatus(record: StatusRecord): string {
  const addresses: Record<string, string> = {};
  for (const p of record.partitions) if (p.shardId !== '') addresses[p.shardId] = p.address;

  return JSON.stringify({
    leaderId: record.leaderId,
    fencingToken: record.fencingToken,
    ringEpoch: record.ringEpoch,
    partitionCount: record.partitionCount,
    globalWatermarkMs: record.globalWatermarkMs ?? null,
    missing: record.missingPartitions,
    owners: record.partitions.map((p) => p.shardId),
    addresses,
    reported: record.partitions.map((p) => (p.reported ? 1 : 0)),
    watermarks: record.partitions.map((p) => p.watermarkMs ?? null),
    lastRoundAtMs: record.lastRoundAtMs ?? null,
    recordedAtMs: record.recordedAtMs,
  });
}

interface EncodedStatus {
  leaderId: string;
  fencingToken: number;
  ringEpoch: number;
  partitionCount: number;
  globalWatermarkMs: number | null;
  missing: number[];
  owners: string[];
  addresses: Record<string, string>;
  reported: number[];
  watermarks: (number | null)[];
  lastRoundAtMs: number | null;
  recordedAtMs: number;
}

/** @throws RingError 'corrupt-state' when the value is not a status record. */
export function parseStatus(text: string): StatusRecord {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new RingError('corrupt-state', 'the status key does not hold JSON', { cause: err });
  }

  const problem = encodedStatusProblem(value);
  if (problem !== undefined) {
    throw new RingError('corrupt-state', `the status key holds no valid status: ${problem}`);
  }

  const v = value as EncodedStatus;
  const partitions = v.owners.map((shardId, partition): PartitionStatusRecord => {
    const watermarkMs = v.watermarks[partition];

    return {
      partition,
      shardId,
      address: v.addresses[shardId] ?? '',
      reported: v.reported[partition] === 1,
      ...(watermarkMs == null ? {} : { watermarkMs }),
    };
  });

  return {
    leaderId: v.leaderId,
    fencingToken: v.fencingToken,
    ringEpoch: v.ringEpoch,
    partitionCount: v.partitionCount,
    ...(v.globalWatermarkMs === null ? {} : { globalWatermarkMs: v.globalWatermarkMs }),
    missingPartitions: [...v.missing],
    partitions,
    ...(v.lastRoundAtMs === null ? {} : { lastRoundAtMs: v.lastRoundAtMs }),
    recordedAtMs: v.recordedAtMs,
  };
}

/** What is wrong with an encoded record, or undefined when nothing is. */
function encodedStatusProblem(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return 'not an object';

  const v = value as Partial<Record<keyof EncodedStatus, unknown>>;
  if (typeof v.leaderId !== 'string') return 'leaderId is not a string';
  for (const field of ['fencingToken', 'ringEpoch', 'partitionCount', 'recordedAtMs'] as const) {
    if (!Number.isSafeInteger(v[field])) return `${field} is not an integer`;
  }
  for (const field of ['globalWatermarkMs', 'lastRoundAtMs'] as const) {
    if (v[field] !== null && typeof v[field] !== 'number') return `${field} is not a number`;
  }

  const n = v.partitionCount as number;
  if (!isArrayOf(v.owners, (o) => typeof o === 'string')) return 'owners is not a list of ids';
  if (v.owners.length !== 0 && v.owners.length !== n) return `owners has not ${n} entries`;
  if (!isArrayOf(v.reported, (r) => r === 0 || r === 1)) return 'reported is not a list of 0/1';
  if (!isArrayOf(v.watermarks, (w) => w === null || typeof w === 'number')) {
    return 'watermarks is not a list of numbers';
  }
  if (v.reported.length !== v.owners.length || v.watermarks.length !== v.owners.length) {
    return 'owners, reported and watermarks differ in length';
  }
  if (!isArrayOf(v.missing, (p) => Number.isSafeInteger(p) && (p as number) >= 0)) {
    return 'missing is not a list of partitions';
  }
  if (typeof v.addresses !== 'object' || v.addresses === null) return 'addresses is not an object';

  return undefined;
}

function isArrayOf(value: unknown, check: (item: unknown) => boolean): value is unknown[] {
  return Array.isArray(value) && value.every(check);
}
