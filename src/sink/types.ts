import type { PeriodType } from '../periods/index.js';
import type { RejectReason } from '../ingest/types.js';

/** `provisional` (period still open), `final` (first number after close), `restated` (a later correction). */
export type PeriodStatus = 'provisional' | 'final' | 'restated';

/** Who is writing: the ring epoch the counts were gathered under and the writer's fencing token. */
export interface WriterFence {
  readonly ringEpoch: number;
  readonly fencingToken: number;
}

/** A published version of a period's number (final or restated). Versions start at 1 and are never rewritten. */
export interface VersionWrite {
  readonly periodType: PeriodType;
  readonly periodStartMs: number;
  readonly version: number;
  readonly distinctUsers: number;
  readonly status: 'final' | 'restated';
  readonly reason: string;
  readonly watermarkMs: number;
}

/** A provisional refresh of an open period: it updates the current row only, with version 0. */
export interface ProvisionalWrite {
  readonly periodType: PeriodType;
  readonly periodStartMs: number;
  readonly distinctUsers: number;
  readonly watermarkMs: number;
}

/** One row of the current table. */
export interface CurrentRow {
  readonly periodType: PeriodType;
  readonly periodStartMs: number;
  readonly distinctUsers: number;
  /** 0 while provisional, else the latest published version. */
  readonly version: number;
  readonly status: PeriodStatus;
  readonly computedAtMs: number;
  readonly watermarkMs: number;
}

/** One row of the append-only version history. */
export interface VersionRow {
  readonly periodType: PeriodType;
  readonly periodStartMs: number;
  readonly version: number;
  readonly distinctUsers: number;
  readonly status: 'final' | 'restated';
  readonly reason: string;
  readonly writtenAtMs: number;
  readonly watermarkMs: number;
  readonly ringEpoch: number;
  readonly fencingToken: number;
}

/** A rejected event to keep in the dead-letter table. `source` and `line` identify it, so recording it twice keeps one row. */
export interface DeadLetterWrite {
  readonly source: string;
  readonly line: number;
  readonly reason: RejectReason;
  readonly detail: string;
  readonly raw: string;
}

export interface DeadLetterSummary {
  readonly counts: Partial<Record<RejectReason, number>>;
  readonly examples: Partial<Record<RejectReason, DeadLetterWrite[]>>;
}

/** An immutable record that a version of a period's number was reported outside. */
export interface FilingRow {
  readonly filingId: number;
  readonly periodType: PeriodType;
  readonly periodStartMs: number;
  readonly version: number;
  readonly distinctUsers: number;
  readonly filedBy: string;
  readonly note: string | null;
  readonly filedAtMs: number;
}

/** A filing beside the period's current number. */
export interface FilingView extends FilingRow {
  readonly currentVersion: number;
  readonly currentDistinctUsers: number;
  readonly currentStatus: PeriodStatus;
  /** currentDistinctUsers - distinctUsers */
  readonly difference: number;
}

export interface PeriodRange {
  readonly periodType?: PeriodType;
  /** Inclusive lower bound on period start (epoch ms). */
  readonly fromMs?: number;
  /** Exclusive upper bound on period start (epoch ms). */
  readonly toMs?: number;
}

/** What the coordinator needs to resume: the latest published version and number of each period. */
export interface PublishedState {
  readonly version: number;
  readonly distinctUsers: number;
}
