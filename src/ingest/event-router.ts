import { HOUR_MS, WEEK_MS, weekStart } from '../periods/index.js';
import { hashUserId, partitionOf, slotHashOf, type Hash64 } from '../shard/user-hash.js';
import type { PartitionBatch, WatermarkMark } from '../shard/types.js';
import type { DeadLetterWrite } from '../sink/types.js';
import type { EventBatch } from './types.js';

/**
 * How the watermark moves.
 * - `event-time`: it follows the highest accepted event time, less the out-of-orderness bound.
 * - `clock`: it follows the clock (the wall clock live, or the receive time of the event being
 *   read in a replay), less the bound; event times never move it.
 */
export type WatermarkMode = 'event-time' | 'clock';

export interface EventRouterOptions {
  readonly partitions: number;
  readonly allowedLatenessMs: number;
  /** Events further behind the watermark than this are rejected as `too_old`. */
  readonly restatementHorizonMs: number;
  /** Events later than their receive time plus this are rejected as `future`. */
  readonly maxFutureSkewMs: number;
  /** How far behind the highest event time (or the clock) the watermark stays. */
  readonly maxOutOfOrdernessMs: number;
  readonly watermarkMode: WatermarkMode;
  /** The wall clock: the receive time of events that carry none. */
  readonly now: () => number;
}

/** The earliest event time taken: 0000-01-01T00:00:00.000Z. */
export const MIN_EVENT_MS = -62_167_219_200_000;

/** The latest event time taken: 9999-12-31T23:59:59.999Z. */
export const MAX_EVENT_MS = 253_402_300_799_999;

/** The router's position, kept with each checkpoint so that a restart resumes it. */
export interface RouterState {
  watermarkMs: number | null;
  clockMs: number | null;
  maxEventMs: number | null;
  /**
   * The clock as the input moved it (receive times, ticks), without the moves of
   * {@link EventRouter.finish}; absent in states written before it existed.
   */
  inputClockMs?: number | null;
}

/** What one routed batch produced. */
export interface RoutedBatch {
  readonly batches: PartitionBatch[];
  readonly rejects: DeadLetterWrite[];
  readonly accepted: number;
}

/**
 * Judges each parsed event (future skew, restatement horizon), routes the
 * accepted ones to their partitions by the hash of the user id, and weaves
 * the watermark into every partition's stream at the point where it moved,
 * so that no event can overtake the watermark that follows it.
 */
export class EventRouter {
  private watermarkMs = Number.NEGATIVE_INFINITY;
  private emittedMs = Number.NEGATIVE_INFINITY;
  private clockMs = Number.NEGATIVE_INFINITY;
  /** The clock as input moved it: a finish never counts, so finishing twice moves nothing. */
  private inputClockMs = Number.NEGATIVE_INFINITY;
  private maxEventMs = Number.NEGATIVE_INFINITY;
  private readonly hash: Hash64 = { hi: 0, lo: 0 };

  // Per batch: where each event goes (-1 = rejected) and the watermarks to weave in.
  private partitionOf = new Int32Array(8192);
  private slotHashes = new Uint32Array(8192);
  private marks: { at: number; watermarkMs: number }[] = [];
  private position = 0;

  constructor(private readonly options: EventRouterOptions) {}

  get watermark(): number {
    return this.watermarkMs;
  }

  get state(): RouterState {
    const finite = (n: number): number | null => (Number.isFinite(n) ? n : null);

    return {
      watermarkMs: finite(this.watermarkMs),
      clockMs: finite(this.clockMs),
      maxEventMs: finite(this.maxEventMs),
      inputClockMs: finite(this.inputClockMs),
    };
  }

  restore(state: RouterState): void {
    this.watermarkMs = state.watermarkMs ?? Number.NEGATIVE_INFINITY;
    this.emittedMs = this.watermarkMs;
    this.clockMs = state.clockMs ?? Number.NEGATIVE_INFINITY;
    this.maxEventMs = state.maxEventMs ?? Number.NEGATIVE_INFINITY;
    this.inputClockMs = state.inputClockMs ?? state.clockMs ?? Number.NEGATIVE_INFINITY;
  }

  /** Routes one batch of parsed events. */
  route(batch: EventBatch): RoutedBatch {
    const o = this.options;
    const n = batch.length;
    const rejects: DeadLetterWrite[] = [];
    const counts = new Int32Array(o.partitions);
    const wallMs = o.now();
    let accepted = 0;

    if (this.partitionOf.length < n) {
      this.partitionOf = new Int32Array(n);
      this.slotHashes = new Uint32Array(n);
    }
    this.marks = [];

    // Pass 1: judge, hash, and note where the watermark moves.
    for (let i = 0; i < n; i++) {
      this.position = i;
      this.partitionOf[i] = -1;
      const eventMs = batch.eventTimeMs[i] as number;
      let receiveMs =
        batch.receiveTimeMs === null ? Number.NaN : (batch.receiveTimeMs[i] as number);

      // A receive time from a collector whose clock runs ahead must not drag the watermark
      // forward: in clock mode it would move the clock, in event-time mode it would let an
      // event dated as far ahead pass the future check.
      if (receiveMs > wallMs + o.maxFutureSkewMs) {
        rejects.push(
          deadLetter(
            batch,
            i,
            'future',
            `receive time ${isoOrNumber(receiveMs)} is later than the wall clock`,
          ),
        );
        continue;
      }
      if (o.watermarkMode === 'clock') {
        // A receive time within the skew ahead counts for its event, but the clock goes no
        // further than the wall clock: a collector running ahead would close periods early.
        const clockMs = Math.min(receiveMs, wallMs);
        if (clockMs > this.clockMs) this.tickClock(clockMs);
        // Without a receive time the event arrives now: on the clock, or the wall clock before it starts.
        if (Number.isNaN(receiveMs))
          receiveMs = Number.isFinite(this.clockMs) ? this.clockMs : wallMs;
      } else if (Number.isNaN(receiveMs)) {
        receiveMs = wallMs;
      }

      if (eventMs > receiveMs + o.maxFutureSkewMs) {
        rejects.push(
          deadLetter(
            batch,
            i,
            'future',
            `event time is ${formatGap(eventMs - receiveMs)} after its receive time ${isoOrNumber(receiveMs)}`,
          ),
        );
        continue;
      }
      if (eventMs < this.watermarkMs - o.restatementHorizonMs) {
        rejects.push(
          deadLetter(
            batch,
            i,
            'too_old',
            `event time is ${formatGap(this.watermarkMs - eventMs)} behind the watermark ${isoOrNumber(this.watermarkMs)}`,
          ),
        );
        continue;
      }

      if (!(eventMs >= MIN_EVENT_MS && eventMs <= MAX_EVENT_MS)) {
        // Judged after the receive time and the watermark (a unit mistake stays 'future' or
        // 'too_old'): outside the calendar that periods, rows and the warehouse can name, one
        // such event would seal a period no round could ever publish, or drag the watermark.
        rejects.push(
          deadLetter(
            batch,
            i,
            'invalid_time',
            `event time ${isoOrNumber(eventMs)} ms is outside years 0000-9999`,
          ),
        );
        continue;
      }

      hashUserId(batch.userIds[i] as string, this.hash);
      const p = partitionOf(this.hash, o.partitions);
      this.partitionOf[i] = p;
      this.slotHashes[i] = slotHashOf(this.hash);
      counts[p] = (counts[p] as number) + 1;
      accepted++;

      if (o.watermarkMode === 'event-time' && eventMs > this.maxEventMs) {
        this.maxEventMs = eventMs;
        this.position = i + 1;
        this.moveWatermark(eventMs - o.maxOutOfOrdernessMs);
      }
    }
    this.position = n;
    this.mark(this.watermarkMs);

    return { batches: this.partitionBatches(batch, counts), rejects, accepted };
  }

  /** Moves the clock forward with no input (clock mode): idle time still closes periods. */
  advanceClock(nowMs: number): PartitionBatch[] {
    this.marks = [];
    this.position = 0;
    if (nowMs > this.clockMs) this.tickClock(nowMs);
    this.mark(this.watermarkMs);

    return this.partitionBatches(null, new Int32Array(this.options.partitions));
  }

  /**
   * Moves the watermark past the end of the week of the last event plus the
   * allowed lateness, so that every period seen so far closes.
   */
  finish(): PartitionBatch[] {
    const o = this.options;
    // The input's own times: a clock moved by an earlier finish would move this one a week on.
    const last = Math.max(this.maxEventMs, this.inputClockMs);
    this.marks = [];
    this.position = 0;
    if (Number.isFinite(last)) {
      const target = weekStart(last) + WEEK_MS + o.allowedLatenessMs;
      if (o.watermarkMode === 'clock')
        this.clockMs = Math.max(this.clockMs, target + o.maxOutOfOrdernessMs);
      this.moveWatermark(target);
    }
    this.mark(this.watermarkMs);

    return this.partitionBatches(null, new Int32Array(o.partitions));
  }

  private tickClock(nowMs: number): void {
    this.clockMs = nowMs;
    this.inputClockMs = nowMs;
    this.moveWatermark(nowMs - this.options.maxOutOfOrdernessMs);
  }

  private moveWatermark(ms: number): void {
    if (!(ms > this.watermarkMs)) return;
    this.watermarkMs = ms;

    // Partitions only act when a close point (an hour end plus the lateness) is passed.
    const lateness = this.options.allowedLatenessMs;
    if (Math.floor((ms - lateness) / HOUR_MS) > Math.floor((this.emittedMs - lateness) / HOUR_MS)) {
      this.mark(ms);
    }
  }

  /** Notes a watermark for every partition's stream at the current position. */
  private mark(ms: number): void {
    if (!Number.isFinite(ms) || !(ms > this.emittedMs)) return;
    this.emittedMs = ms;

    const last = this.marks[this.marks.length - 1];
    if (last !== undefined && last.at === this.position) last.watermarkMs = ms;
    else this.marks.push({ at: this.position, watermarkMs: ms });
  }

  /** Pass 2: each partition's events in order, with the watermarks woven in where they moved. */
  private partitionBatches(batch: EventBatch | null, counts: Int32Array): PartitionBatch[] {
    const P = this.options.partitions;
    const userIds = Array.from({ length: P }, (_, p) => new Array<string>(counts[p] as number));
    const slotHashes = Array.from({ length: P }, (_, p) => new Uint32Array(counts[p] as number));
    const eventTimes = Array.from({ length: P }, (_, p) => new Float64Array(counts[p] as number));
    const marks = Array.from({ length: P }, () => [] as WatermarkMark[]);
    const fill = new Int32Array(P);
    const n = batch?.length ?? 0;
    let m = 0;

    const weave = (upTo: number): void => {
      for (; m < this.marks.length && (this.marks[m]?.at as number) <= upTo; m++) {
        const watermarkMs = (this.marks[m] as { watermarkMs: number }).watermarkMs;
        for (let p = 0; p < P; p++) {
          const list = marks[p] as WatermarkMark[];
          if (list.length > 0 && list[list.length - 1]?.before === fill[p]) list.pop();
          list.push({ before: fill[p] as number, watermarkMs });
        }
      }
    };

    for (let i = 0; i < n; i++) {
      weave(i);
      const p = this.partitionOf[i] as number;
      if (p < 0) continue;
      const k = fill[p] as number;
      (userIds[p] as string[])[k] = (batch as EventBatch).userIds[i] as string;
      (slotHashes[p] as Uint32Array)[k] = this.slotHashes[i] as number;
      (eventTimes[p] as Float64Array)[k] = (batch as EventBatch).eventTimeMs[i] as number;
      fill[p] = k + 1;
    }
    weave(n);

    const out: PartitionBatch[] = [];
    for (let p = 0; p < P; p++) {
      if (counts[p] === 0 && (marks[p] as WatermarkMark[]).length === 0) continue;
      out.push({
        partition: p,
        length: counts[p] as number,
        userIds: userIds[p] as string[],
        slotHashes: slotHashes[p] as Uint32Array,
        eventTimeMs: eventTimes[p] as Float64Array,
        marks: marks[p] as WatermarkMark[],
      });
    }

    return out;
  }
}

function deadLetter(
  batch: EventBatch,
  i: number,
  reason: 'invalid_time' | 'future' | 'too_old',
  detail: string,
): DeadLetterWrite {
  const record = {
    user_id: batch.userIds[i],
    event_time: isoOrNumber(batch.eventTimeMs[i] as number),
    receive_time:
      batch.receiveTimeMs === null ? undefined : isoOrNumber(batch.receiveTimeMs[i] as number),
    event_id: batch.eventIds?.[i],
  };

  return {
    source: batch.source,
    line: batch.lines[i] as number,
    reason,
    detail,
    raw: JSON.stringify(record),
  };
}

/**
 * ISO text of an instant (with milliseconds), or the epoch milliseconds as a
 * number outside years 0000-9999, so that a unit mistake stays visible.
 */
function isoOrNumber(ms: number): string | number | null {
  if (Number.isNaN(ms)) return null;
  if (ms < MIN_EVENT_MS || ms > MAX_EVENT_MS) return ms;

  return new Date(ms).toISOString();
}

function formatGap(ms: number): string {
  if (ms >= 1e6 * 86_400_000) return `${ms.toExponential(3)} ms`;
  if (ms >= 86_400_000) return `${(ms / 86_400_000).toFixed(1)} d`;
  if (ms >= 3_600_000) return `${(ms / 3_600_000).toFixed(1)} h`;

  return `${Math.round(ms / 1000)} s`;
}
