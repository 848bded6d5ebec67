/**
 * Which versions a WatchVersions stream has yet to deliver, given what a poll of the
 * history returns.
 *
 * A version's `written_at` is the start of the transaction that wrote it (PostgreSQL's
 * `now()`), not its commit. A publish that starts first may commit last, so a version
 * can become visible after versions with a later `written_at` were delivered. A plain
 * cursor on (written_at, period, version) would skip it. The cursor therefore looks back
 * over a reorder window below the newest `written_at` it has seen, and remembers the
 * versions it delivered inside that window, so that each one goes out exactly once.
 *
 * Known shortcoming: a version whose transaction ran longer than the reorder window
 * before it committed is never delivered to a stream that was already past it. The same
 * holds across reconnects: a client that resumes with `since_written_at_ms` set to the
 * last `written_at_ms` it saw (as query.proto suggests) can miss such a version; resuming
 * from that instant minus the window and dropping the rows it already has closes the gap.
 */
import { PERIOD_TYPES, periodKey } from '../periods/index.js';
import type { VersionRow } from '../sink/index.js';

export interface VersionCursorOptions {
  /**
   * Deliver the versions written at or after this instant (epoch ms, the warehouse's
   * clock). Absent: the first {@link VersionCursor.advance} only marks the versions it is
   * given as seen, and only later ones are delivered.
   */
  readonly sinceWrittenAtMs?: number;
  /** How far below the newest `written_at` seen a late-committing version is still delivered. */
  readonly reorderWindowMs: number;
}

/** The delivery state of one stream: what it has sent and where to look next. */
export class VersionCursor {
  /** Versions delivered (or seen at the start) inside the window: key -> written_at. */
  private readonly delivered = new Map<string, number>();
  private newestWrittenAtMs = Number.NEGATIVE_INFINITY;
  private started = false;

  constructor(private readonly options: VersionCursorOptions) {}

  /** Versions with a `written_at` below this are never delivered any more. */
  get horizonMs(): number {
    const since = this.options.sinceWrittenAtMs ?? Number.NEGATIVE_INFINITY;

    return Math.max(since, this.newestWrittenAtMs - this.options.reorderWindowMs);
  }

  /**
   * Takes the rows of one poll of the history and returns those to deliver now, each
   * once, by written_at, then period type, start and version.
   */
  advance(rows: readonly VersionRow[]): VersionRow[] {
    const baseline = !this.started && this.options.sinceWrittenAtMs === undefined;
    this.started = true;

    const horizonMs = this.horizonMs;
    const fresh = rows
      .filter((row) => row.writtenAtMs >= horizonMs && !this.delivered.has(versionKey(row)))
      .sort(compareVersions);
    for (const row of fresh) {
      this.delivered.set(versionKey(row), row.writtenAtMs);
      this.newestWrittenAtMs = Math.max(this.newestWrittenAtMs, row.writtenAtMs);
    }
    this.forgetBelowHorizon();

    return baseline ? [] : fresh;
  }

  private forgetBelowHorizon(): void {
    const horizonMs = this.horizonMs;
    for (const [key, writtenAtMs] of this.delivered) {
      if (writtenAtMs < horizonMs) {
        this.delivered.delete(key);
      }
    }
  }
}

function versionKey(row: VersionRow): string {
  return `${periodKey({ type: row.periodType, startMs: row.periodStartMs })}:${row.version}`;
}

function compareVersions(a: VersionRow, b: VersionRow): number {
  return (
    a.writtenAtMs - b.writtenAtMs ||
    PERIOD_TYPES.indexOf(a.periodType) - PERIOD_TYPES.indexOf(b.periodType) ||
    a.periodStartMs - b.periodStartMs ||
    a.version - b.version
  );
}
