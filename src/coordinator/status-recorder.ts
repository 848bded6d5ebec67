/**
 * What a leader knows about its rounds, kept as the status record that it stores in etcd
 * and serves: the ring, which partitions reported, their watermarks. It also writes the
 * log lines about missing partitions, on change rather than on every round.
 */
import type { Logger } from '../observability/index.js';
import type { PartitionStatusRecord, Ring, StatusRecord } from '../ring/index.js';
import type { RoundResult } from './coordinator.js';

export interface StatusRecorderOptions {
  readonly leaderId: string;
  readonly fencingToken: number;
  /** P. */
  readonly partitionCount: number;
  readonly logger: Logger;
  /** How often a line repeats that partitions are still missing. @default 60_000 */
  readonly reminderIntervalMs?: number;
  /**
   * How long a record whose only changes are watermarks and round times may go unwritten.
   * A change of leader, ring or missing partitions is written at once. @default 5_000
   */
  readonly refreshIntervalMs?: number;
  /** @default Date.now */
  readonly now?: () => number;
}

/** The shard behind a group of partitions, for log lines. */
interface ShardGroup {
  readonly shardId: string;
  readonly address: string;
  readonly partitions: number[];
}

/**
 * The status of one leader's term. {@link setRing} when the rounds start running on a
 * ring, {@link recordRound} after each round; {@link current} is the record to serve and
 * {@link needsWrite} tells when it should go to etcd again.
 */
export class StatusRecorder {
  private readonly reminderIntervalMs: number;
  private readonly refreshIntervalMs: number;
  private readonly now: () => number;
  private ring: Ring | undefined;
  private addresses: readonly string[] = [];
  /** The last finite watermark each partition reported in this term. */
  private readonly watermarks = new Map<number, number>();
  private missing: readonly number[] = [];
  private globalWatermarkMs: number | undefined;
  private lastRoundAtMs: number | undefined;
  /** Since when each missing partition has been missing. */
  private readonly missingSinceMs = new Map<number, number>();
  /** When the last line about missing partitions was written. */
  private remindedAtMs = 0;
  private record: StatusRecord;
  private written: StatusRecord | undefined;

  constructor(private readonly options: StatusRecorderOptions) {
    this.reminderIntervalMs = options.reminderIntervalMs ?? 60_000;
    this.refreshIntervalMs = options.refreshIntervalMs ?? 5_000;
    this.now = options.now ?? Date.now;
    this.record = this.build();
  }

  /** The record to serve now. */
  get current(): StatusRecord {
    return this.record;
  }

  /** The ring the rounds run on from now, and each partition's shard address. */
  setRing(ring: Ring, addresses: readonly string[]): void {
    this.ring = ring;
    this.addresses = addresses;
    this.record = this.build();
  }

  /**
   * Marks `partitions` missing before any round could run on the ring (their owner is not
   * registered, so there is no address to ask), logging them as a round would.
   */
  recordAbsent(partitions: readonly number[]): void {
    this.logChanges(partitions, new Map(), this.now());
    this.missing = [...partitions];
    this.record = this.build();
  }

  /** Takes in a round's result, logging the partitions that went missing or came back. */
  recordRound(result: RoundResult, failures: ReadonlyMap<string, unknown> = new Map()): void {
    const nowMs = this.now();
    for (const [partition, watermarkMs] of result.partitionWatermarksMs) {
      if (Number.isFinite(watermarkMs)) this.watermarks.set(partition, watermarkMs);
    }
    this.logChanges(result.missingPartitions, failures, nowMs);
    this.missing = [...result.missingPartitions];

    const complete = this.missing.length === 0 && Number.isFinite(result.globalWatermarkMs);
    this.globalWatermarkMs = complete ? result.globalWatermarkMs : undefined;
    this.lastRoundAtMs = nowMs;
    this.record = this.build();
  }

  /** Whether {@link current} should be written to etcd now. */
  needsWrite(): boolean {
    const last = this.written;
    if (last === undefined) return true;

    const record = this.record;
    const changed =
      last.ringEpoch !== record.ringEpoch ||
      !sameNumbers(last.missingPartitions, record.missingPartitions) ||
      last.partitions.length !== record.partitions.length ||
      last.partitions.some((p, i) => p.reported !== record.partitions[i]?.reported) ||
      last.partitions.some((p, i) => p.address !== record.partitions[i]?.address) ||
      (last.lastRoundAtMs === undefined) !== (record.lastRoundAtMs === undefined);

    return changed || record.recordedAtMs - last.recordedAtMs >= this.refreshIntervalMs;
  }

  /** Notes that `record` is what etcd holds now. */
  markWritten(record: StatusRecord): void {
    this.written = record;
  }

  private build(): StatusRecord {
    const { leaderId, fencingToken, partitionCount } = this.options;
    const missing = new Set(this.missing);
    const rounds = this.lastRoundAtMs !== undefined;
    const partitions =
      this.ring === undefined
        ? []
        : this.ring.owners.map((shardId, partition): PartitionStatusRecord => {
            const watermarkMs = this.watermarks.get(partition);

            return {
              partition,
              shardId,
              address: this.addresses[partition] ?? '',
              reported: rounds && !missing.has(partition),
              ...(watermarkMs === undefined ? {} : { watermarkMs }),
            };
          });

    return {
      leaderId,
      fencingToken,
      ringEpoch: this.ring?.epoch ?? 0,
      partitionCount,
      ...(this.globalWatermarkMs === undefined
        ? {}
        : { globalWatermarkMs: this.globalWatermarkMs }),
      missingPartitions: [...this.missing],
      partitions,
      ...(this.lastRoundAtMs === undefined ? {} : { lastRoundAtMs: this.lastRoundAtMs }),
      recordedAtMs: this.now(),
    };
  }

  /**
   * One line per shard whose partitions went missing, one per shard whose partitions came
   * back, and a reminder every `reminderIntervalMs` while any stays missing.
   */
  private logChanges(
    missing: readonly number[],
    failures: ReadonlyMap<string, unknown>,
    nowMs: number,
  ): void {
    const logger = this.options.logger;
    const before = new Set(this.missing);
    const after = new Set(missing);
    const gone = missing.filter((p) => !before.has(p));
    const back = this.missing.filter((p) => !after.has(p));

    for (const group of this.byShard(gone)) {
      const err = failures.get(group.address);
      logger.warn(
        { ...group, ...(err === undefined ? {} : { err }) },
        'partitions missing: final and restated numbers held back',
      );
    }
    for (const group of this.byShard(back)) {
      const since = Math.min(...group.partitions.map((p) => this.missingSinceMs.get(p) ?? nowMs));
      logger.info({ ...group, missingForMs: nowMs - since }, 'partitions reporting again');
    }

    for (const p of back) this.missingSinceMs.delete(p);
    for (const p of gone) this.missingSinceMs.set(p, nowMs);
    if (gone.length > 0) this.remindedAtMs = nowMs;
    if (missing.length === 0 || nowMs - this.remindedAtMs < this.reminderIntervalMs) return;

    this.remindedAtMs = nowMs;
    logger.warn(
      {
        missingPartitions: missing,
        shards: this.byShard(missing).map((g) => g.shardId),
        missingForMs: nowMs - Math.min(...this.missingSinceMs.values()),
      },
      'partitions still missing: final and restated numbers held back',
    );
  }

  private byShard(partitions: readonly number[]): ShardGroup[] {
    const groups = new Map<string, ShardGroup>();
    for (const partition of partitions) {
      const shardId = this.ring?.owners[partition] ?? '';
      let group = groups.get(shardId);
      if (group === undefined) {
        group = { shardId, address: this.addresses[partition] ?? '', partitions: [] };
        groups.set(shardId, group);
      }
      group.partitions.push(partition);
    }

    return [...groups.values()];
  }
}

function sameNumbers(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
