import type { Logger } from 'pino';

import {
  HOUR_MS,
  describePeriod,
  parsePeriodKey,
  periodEnd,
  type Period,
} from '../periods/index.js';
import type { PartitionReport, PeriodChange } from '../shard/types.js';
import type { ProvisionalWrite, PublishedState, VersionWrite, WriterFence } from '../sink/types.js';

/** The partitions as the coordinator reaches them: in process, or over gRPC. */
export interface PartitionsPort {
  readonly partitionCount: number;
  /** One report per partition that answered. */
  reports(): Promise<PartitionReport[]>;
  /** Current counts of the periods, one map per partition; every partition must answer. */
  counts(keys: readonly string[]): Promise<Map<string, number>[]>;
  acknowledge(acks: readonly PartitionAck[]): Promise<void>;
}

/** What the coordinator has published from a partition's report. */
export interface PartitionAck {
  readonly partition: number;
  readonly seals: readonly string[];
  readonly changes: readonly PeriodChange[];
}

/** Where published rows go. */
export interface RowSink {
  loadPublished(): Promise<Map<string, PublishedState>>;
  publish(
    batch: { versions: VersionWrite[]; provisional: ProvisionalWrite[] },
    fence: WriterFence,
  ): Promise<void>;
}

export interface CoordinatorOptions {
  readonly allowedLatenessMs: number;
  readonly fence: WriterFence;
  readonly logger: Logger;
}

/** What one round did. */
export interface RoundResult {
  readonly globalWatermarkMs: number;
  readonly finals: number;
  readonly restated: number;
  readonly provisional: number;
  /** Partitions that did not report; while any is missing nothing closes. */
  readonly missingPartitions: number[];
  /** The watermark of each partition that reported, by partition (-Infinity: none yet). */
  readonly partitionWatermarksMs: ReadonlyMap<number, number>;
}

interface Restatement {
  lateEvents: number;
  newUsers: number;
  partitions: Set<number>;
}

/**
 * Closes periods and restates them. In each round it gathers every
 * partition's report, and:
 *
 * 1. closes each period whose end plus the allowed lateness every partition
 *    has passed: version 1, `final`, is the sum of the partitions' seal
 *    counts (the counts they had when their watermark passed). Each partition
 *    is judged by the later of its own lateness (fixed in its data directory,
 *    sent with its report) and the coordinator's, so that no period closes
 *    before every partition has sealed it;
 * 2. restates each published period that late events gave new users: the
 *    sum of the partitions' current counts becomes a new version, `restated`,
 *    when it is higher than the last one (a round that adds no user writes
 *    nothing);
 * 3. refreshes the open days and weeks as `provisional` rows once the
 *    watermark has crossed an hour boundary.
 *
 * Partition counts are summed, never shard counts, and a number is only
 * published when every partition has reported: a missing one holds it back.
 */
export class Coordinator {
  private published = new Map<string, PublishedState>();
  private provisional = new Map<string, number>();
  private provisionalHour = Number.NEGATIVE_INFINITY;
  private loaded = false;
  /** Partition latenesses unlike the coordinator's that were logged already. */
  private readonly loggedLateness = new Set<number>();

  constructor(
    private readonly partitions: PartitionsPort,
    private readonly sink: RowSink,
    private readonly options: CoordinatorOptions,
  ) {}

  /** Reloads what was published, e.g. after taking over leadership. */
  async resume(): Promise<void> {
    this.published = await this.sink.loadPublished();
    this.provisional.clear();
    this.provisionalHour = Number.NEGATIVE_INFINITY;
    this.loaded = true;
  }

  /** Runs one round. */
  async round(): Promise<RoundResult> {
    if (!this.loaded) await this.resume();

    try {
      return await this.runRound();
    } catch (err) {
      // What this round decided may not be written: the next round starts again from the sink.
      this.loaded = false;
      throw err;
    }
  }

  private async runRound(): Promise<RoundResult> {
    // Gather.
    const reports = await this.partitions.reports();
    const partitionWatermarksMs = new Map(reports.map((r) => [r.partition, r.watermarkMs]));
    const missing = this.missingPartitions(reports);
    if (missing.length > 0) {
      // Every round while they stay missing: the caller logs when the set changes.
      this.options.logger.debug(
        { missingPartitions: missing },
        'round held back: partitions missing',
      );
      return {
        globalWatermarkMs: Number.NEGATIVE_INFINITY,
        finals: 0,
        restated: 0,
        provisional: 0,
        missingPartitions: missing,
        partitionWatermarksMs,
      };
    }
    const globalWatermarkMs = Math.min(...reports.map((r) => r.watermarkMs));
    const closedThroughMs = this.closedThrough(reports);

    // Decide.
    const finals = this.finals(reports, closedThroughMs, globalWatermarkMs);
    // Before the restatements: a period can close and be restated in one round.
    for (const write of finals) this.noteVersion(write);
    const restatements = this.restatements(reports);
    const restatedKeys = [...restatements.keys()];
    const provisionalKeys = this.provisionalKeys(reports, closedThroughMs, globalWatermarkMs);
    const counts = await this.sumCounts([...restatedKeys, ...provisionalKeys]);

    const versions: VersionWrite[] = [...finals];
    for (const key of restatedKeys) {
      const write = this.restate(
        key,
        counts.get(key) ?? 0,
        restatements.get(key) as Restatement,
        globalWatermarkMs,
      );
      if (write !== null) versions.push(write);
    }
    const provisional = this.provisionalWrites(provisionalKeys, counts, globalWatermarkMs);

    // Act.
    if (versions.length > 0 || provisional.length > 0) await this.publish(versions, provisional);
    for (const write of provisional)
      this.provisional.set(`${write.periodType}:${write.periodStartMs}`, write.distinctUsers);
    await this.partitions.acknowledge(this.acks(reports));

    const restated = versions.length - finals.length;
    if (finals.length > 0 || restated > 0) {
      this.options.logger.info(
        {
          finals: finals.length,
          restated,
          provisional: provisional.length,
          watermark: globalWatermarkMs,
        },
        'round published',
      );
    }

    return {
      globalWatermarkMs,
      finals: finals.length,
      restated,
      provisional: provisional.length,
      missingPartitions: [],
      partitionWatermarksMs,
    };
  }

  /**
   * Writes the round's rows under this coordinator's fence. A refusal by the writer fence
   * (a newer leader claimed it) is logged here: the service that runs the rounds may be
   * ending its term because its lease ran out at the same moment, and drops the error.
   */
  private async publish(versions: VersionWrite[], provisional: ProvisionalWrite[]): Promise<void> {
    try {
      await this.sink.publish({ versions, provisional }, this.options.fence);
    } catch (err) {
      if (err instanceof Error && err.message.includes('stale fencing token')) {
        this.options.logger.warn(
          {
            err,
            fencingToken: this.options.fence.fencingToken,
            versions: versions.length,
            provisional: provisional.length,
          },
          'publish refused: a newer leader holds the writer fence',
        );
      }
      throw err;
    }
  }

  private missingPartitions(reports: readonly PartitionReport[]): number[] {
    const seen = new Set(reports.map((r) => r.partition));
    const missing: number[] = [];
    for (let p = 0; p < this.partitions.partitionCount; p++) {
      if (!seen.has(p)) missing.push(p);
    }

    return missing;
  }

  /**
   * The latest instant through which every partition has sealed the periods ending by it:
   * the lowest watermark less lateness, each partition's lateness being the later of its
   * own and the coordinator's. Logs once per lateness a partition has unlike the
   * coordinator's.
   */
  private closedThrough(reports: readonly PartitionReport[]): number {
    const own = this.options.allowedLatenessMs;
    let closedThroughMs = Number.POSITIVE_INFINITY;
    for (const report of reports) {
      const theirs = report.allowedLatenessMs ?? own;
      if (theirs !== own && !this.loggedLateness.has(theirs)) {
        this.loggedLateness.add(theirs);
        this.options.logger.warn(
          {
            partition: report.partition,
            partitionLatenessMs: theirs,
            coordinatorLatenessMs: own,
            closingLatenessMs: Math.max(own, theirs),
          },
          'a partition seals with another allowed lateness than the coordinator; periods close by the later of the two',
        );
      }
      closedThroughMs = Math.min(closedThroughMs, report.watermarkMs - Math.max(own, theirs));
    }

    return closedThroughMs;
  }

  /** Version 1 of each period that every partition has sealed and that has none yet. */
  private finals(
    reports: readonly PartitionReport[],
    closedThroughMs: number,
    globalWatermarkMs: number,
  ): VersionWrite[] {
    const sums = new Map<string, number>();
    for (const report of reports) {
      for (const seal of report.seals) sums.set(seal.key, (sums.get(seal.key) ?? 0) + seal.count);
      // A period that only late events reached has no seal anywhere: it closed with 0.
      for (const change of report.changes) if (!sums.has(change.key)) sums.set(change.key, 0);
    }

    const writes: VersionWrite[] = [];
    for (const [key, sum] of sums) {
      if (this.published.has(key)) continue;
      const period = parsePeriodKey(key);
      if (periodEnd(period) > closedThroughMs) continue;
      writes.push(
        versionWrite(
          period,
          1,
          sum,
          'final',
          'closed: sum of partition counts at close',
          globalWatermarkMs,
        ),
      );
    }

    return writes;
  }

  /** Published periods that late events gave new users, with what changed. */
  private restatements(reports: readonly PartitionReport[]): Map<string, Restatement> {
    const all = new Map<string, Restatement>();
    for (const report of reports) {
      for (const change of report.changes) {
        let r = all.get(change.key);
        if (r === undefined) {
          r = { lateEvents: 0, newUsers: 0, partitions: new Set() };
          all.set(change.key, r);
        }
        r.lateEvents += change.lateEvents;
        r.newUsers += change.newUsers;
        if (change.newUsers > 0) r.partitions.add(report.partition);
      }
    }

    // Only published periods that late events gave new users are restated.
    const out = new Map<string, Restatement>();
    for (const [key, r] of all) {
      if (r.newUsers > 0 && this.published.has(key)) out.set(key, r);
    }

    return out;
  }

  private restate(
    key: string,
    sum: number,
    r: Restatement,
    watermarkMs: number,
  ): VersionWrite | null {
    const last = this.published.get(key) as PublishedState;
    const period = parsePeriodKey(key);

    if (sum < last.distinctUsers) {
      this.options.logger.error(
        { period: describePeriod(period), published: last.distinctUsers, sum },
        '[SL-COORD-001] partition counts sum below the published number; not publishing',
      );
      return null;
    }
    if (sum === last.distinctUsers) return null;

    const reason =
      `restated: +${plural(sum - last.distinctUsers, 'user')} from ${plural(r.lateEvents, 'late event')} ` +
      `in ${r.partitions.size} of ${plural(this.partitions.partitionCount, 'partition')}`;
    const write = versionWrite(period, last.version + 1, sum, 'restated', reason, watermarkMs);
    this.noteVersion(write);

    return write;
  }

  /** Open days and weeks to refresh, once per hour boundary the watermark crosses. */
  private provisionalKeys(
    reports: readonly PartitionReport[],
    closedThroughMs: number,
    globalWatermarkMs: number,
  ): string[] {
    const hour = Math.floor(globalWatermarkMs / HOUR_MS);
    if (!(hour > this.provisionalHour)) return [];
    this.provisionalHour = hour;

    const keys = new Set<string>();
    for (const report of reports) {
      for (const key of report.openPeriods) {
        const period = parsePeriodKey(key);
        if (periodEnd(period) > closedThroughMs) keys.add(key);
      }
    }

    return [...keys];
  }

  private provisionalWrites(
    keys: readonly string[],
    counts: Map<string, number>,
    watermarkMs: number,
  ): ProvisionalWrite[] {
    const writes: ProvisionalWrite[] = [];
    for (const key of keys) {
      const sum = counts.get(key) ?? 0;
      if (this.published.has(key) || this.provisional.get(key) === sum || sum === 0) continue;
      const period = parsePeriodKey(key);
      writes.push({
        periodType: period.type,
        periodStartMs: period.startMs,
        distinctUsers: sum,
        watermarkMs,
      });
    }

    return writes;
  }

  private async sumCounts(keys: readonly string[]): Promise<Map<string, number>> {
    const sums = new Map<string, number>();
    if (keys.length === 0) return sums;

    const perPartition = await this.partitions.counts(keys);
    if (perPartition.length !== this.partitions.partitionCount) {
      throw new Error(
        `[SL-COORD-002] counts came from ${perPartition.length} of ${this.partitions.partitionCount} partitions`,
      );
    }
    for (const counts of perPartition) {
      for (const [key, n] of counts) sums.set(key, (sums.get(key) ?? 0) + n);
    }

    return sums;
  }

  private acks(reports: readonly PartitionReport[]): PartitionAck[] {
    return reports.map((report) => ({
      partition: report.partition,
      seals: report.seals.filter((s) => this.published.has(s.key)).map((s) => s.key),
      changes: report.changes.filter((c) => this.published.has(c.key)),
    }));
  }

  private noteVersion(write: VersionWrite): void {
    const key = `${write.periodType}:${write.periodStartMs}`;
    this.published.set(key, { version: write.version, distinctUsers: write.distinctUsers });
    this.provisional.delete(key);
  }
}

function versionWrite(
  period: Period,
  version: number,
  distinctUsers: number,
  status: 'final' | 'restated',
  reason: string,
  watermarkMs: number,
): VersionWrite {
  return {
    periodType: period.type,
    periodStartMs: period.startMs,
    version,
    distinctUsers,
    status,
    reason,
    watermarkMs,
  };
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}
