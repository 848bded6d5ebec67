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

/** The router's position, kept with each checkpoint so that a restart resumes it. */
export interface RouterState {
  watermarkMs: number | null;
  clockMs: number | null;
  maxEventMs: number | null;
}

/** What one routed batch produced. */
export interface RoutedBatch {
  readonly batches: PartitionBatch[];
  readonly rejects: DeadLetterWrite[];
  readonly accepted: number;
}

class PartitionBatchBuilder {
  userIds: string[] = [];
  slotHashes: number[] = [];
  eventTimeMs: number[] = [];
  marks: WatermarkMark[] = [];

  constructor(readonly partition: number) {}

  get empty(): boolean {
    return this.userIds.length === 0 && this.marks.length === 0;
  }

  build(): PartitionBatch {
    return {
      partition: this.partition,
      length: this.userIds.length,
      userIds: this.userIds,
      slotHashes: Uint32Array.from(this.slotHashes),
      eventTimeMs: Float64Array.from(this.eventTimeMs),
      marks: this.marks,
    };
  }
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
  private maxEventMs = Number.NEGATIVE_INFINITY;
  private readonly hash: Hash64 = { hi: 0, lo: 0 };
  private builders: PartitionBatchBuilder[] = [];

  constructor(private readonly options: EventRouterOptions) {}

  get watermark(): number {
    return this.watermarkMs;
  }

  get state(): RouterState {
    const finite = (n: number): number | null => (Number.isFinite(n) ? n : null);

    return { watermarkMs: finite(this.watermarkMs), clockMs: finite(this.clockMs), maxEventMs: finite(this.maxEventMs) };
  }

  restore(state: RouterState): void {
    this.watermarkMs = state.watermarkMs ?? Number.NEGATIVE_INFINITY;
    this.emittedMs = this.watermarkMs;
    this.clockMs = state.clockMs ?? Number.NEGATIVE_INFINITY;
    this.maxEventMs = state.maxEventMs ?? Number.NEGATIVE_INFINITY;
  }

  /** Routes one batch of parsed events. */
  route(batch: EventBatch): RoutedBatch {
    const o = this.options;
    const rejects: DeadLetterWrite[] = [];
    let accepted = 0;
    this.builders = Array.from({ length: o.partitions }, (_, p) => new PartitionBatchBuilder(p));

    for (let i = 0; i < batch.length; i++) {
      const eventMs = batch.eventTimeMs[i] as number;
      let receiveMs = batch.receiveTimeMs?.[i] ?? Number.NaN;

      if (o.watermarkMode === 'clock') {
        // A receive time from a collector whose clock runs ahead must not drag the watermark forward.
        if (receiveMs > o.now() + o.maxFutureSkewMs) {
          rejects.push(deadLetter(batch, i, 'future', `receive time ${isoOrNumber(receiveMs)} is later than the wall clock`));
          continue;
        }
        if (receiveMs > this.clockMs) this.tickClock(receiveMs);
        if (Number.isNaN(receiveMs)) receiveMs = this.clockMs;
      } else if (Number.isNaN(receiveMs)) {
        receiveMs = o.now();
      }

      if (eventMs > receiveMs + o.maxFutureSkewMs) {
        rejects.push(deadLetter(batch, i, 'future', `event time is ${formatGap(eventMs - receiveMs)} after its receive time ${isoOrNumber(receiveMs)}`));
        continue;
      }
      if (eventMs < this.watermarkMs - o.restatementHorizonMs) {
        rejects.push(deadLetter(batch, i, 'too_old', `event time is ${formatGap(this.watermarkMs - eventMs)} behind the watermark ${isoOrNumber(this.watermarkMs)}`));
        continue;
      }

      const userId = batch.userIds[i] as string;
      hashUserId(userId, this.hash);
      const b = this.builders[partitionOf(this.hash, o.partitions)] as PartitionBatchBuilder;
      b.userIds.push(userId);
      b.slotHashes.push(slotHashOf(this.hash));
      b.eventTimeMs.push(eventMs);
      accepted++;

      if (o.watermarkMode === 'event-time' && eventMs > this.maxEventMs) {
        this.maxEventMs = eventMs;
        this.moveWatermark(eventMs - o.maxOutOfOrdernessMs);
      }
    }
    this.markAll(this.watermarkMs);

    return { batches: this.takeBatches(), rejects, accepted };
  }

  /** Moves the clock forward with no input (clock mode): idle time still closes periods. */
  advanceClock(nowMs: number): PartitionBatch[] {
    this.builders = Array.from({ length: this.options.partitions }, (_, p) => new PartitionBatchBuilder(p));
    if (nowMs > this.clockMs) this.tickClock(nowMs);
    this.markAll(this.watermarkMs);

    return this.takeBatches();
  }

  /**
   * Moves the watermark past the end of the week of the last event plus the
   * allowed lateness, so that every period seen so far closes.
   */
  finish(): PartitionBatch[] {
    const o = this.options;
    const last = Math.max(this.maxEventMs, this.clockMs);
    this.builders = Array.from({ length: o.partitions }, (_, p) => new PartitionBatchBuilder(p));
    if (Number.isFinite(last)) {
      const target = weekStart(last) + WEEK_MS + o.allowedLatenessMs;
      if (o.watermarkMode === 'clock') this.clockMs = Math.max(this.clockMs, target + o.maxOutOfOrdernessMs);
      this.moveWatermark(target);
    }
    this.markAll(this.watermarkMs);

    return this.takeBatches();
  }

  private tickClock(nowMs: number): void {
    this.clockMs = nowMs;
    this.moveWatermark(nowMs - this.options.maxOutOfOrdernessMs);
  }

  private moveWatermark(ms: number): void {
    if (!(ms > this.watermarkMs)) return;
    this.watermarkMs = ms;

    // Partitions only act when a close point (an hour end plus the lateness) is passed.
    const lateness = this.options.allowedLatenessMs;
    if (Math.floor((ms - lateness) / HOUR_MS) > Math.floor((this.emittedMs - lateness) / HOUR_MS)) {
      this.markAll(ms);
    }
  }

  /** Puts a watermark mark at the current position of every partition's stream. */
  private markAll(ms: number): void {
    if (!Number.isFinite(ms) || !(ms > this.emittedMs)) return;
    this.emittedMs = ms;

    for (const b of this.builders) {
      const last = b.marks[b.marks.length - 1];
      if (last !== undefined && last.before === b.userIds.length) b.marks.pop();
      b.marks.push({ before: b.userIds.length, watermarkMs: ms });
    }
  }

  private takeBatches(): PartitionBatch[] {
    const out = this.builders.filter((b) => !b.empty).map((b) => b.build());
    this.builders = [];

    return out;
  }
}

function deadLetter(batch: EventBatch, i: number, reason: 'future' | 'too_old', detail: string): DeadLetterWrite {
  const record = {
    user_id: batch.userIds[i],
    event_time: isoOrNumber(batch.eventTimeMs[i] as number),
    receive_time: batch.receiveTimeMs === null ? undefined : isoOrNumber(batch.receiveTimeMs[i] as number),
    event_id: batch.eventIds?.[i],
  };

  return { source: batch.source, line: batch.lines[i] as number, reason, detail, raw: JSON.stringify(record) };
}

/**
 * ISO text of an instant (with milliseconds), or the epoch milliseconds as a
 * number outside years 0000-9999, so that a unit mistake stays visible.
 */
function isoOrNumber(ms: number): string | number | null {
  if (Number.isNaN(ms)) return null;
  if (ms < -62_167_219_200_000 || ms > 253_402_300_799_999) return ms;

  return new Date(ms).toISOString();
}

function formatGap(ms: number): string {
  if (ms >= 86_400_000) return `${(ms / 86_400_000).toFixed(1)} d`;
  if (ms >= 3_600_000) return `${(ms / 3_600_000).toFixed(1)} h`;

  return `${Math.round(ms / 1000)} s`;
}
