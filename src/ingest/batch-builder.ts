import type { EventBatch, RecordReject, RejectReason } from './types.js';

/** Longest `raw` text kept in a reject, in UTF-16 code units. */
export const MAX_RAW_LENGTH = 4096;

/**
 * Collects the events and rejects of one source, column by column, and hands
 * them out as {@link EventBatch}es. Each batch gets fresh arrays, so a
 * consumer may keep a batch while the reader fills the next one.
 */
export class BatchBuilder {
  /** Parsed events collected so far. */
  length = 0;

  private userIds: string[] = [];
  private eventTimeMs: Float64Array;
  private receiveTimeMs: Float64Array | null;
  private lines: Uint32Array;
  private eventIds: (string | undefined)[] | null;
  private rejects: RecordReject[] = [];

  constructor(
    readonly source: string,
    /** Events per batch; the batch is full when it holds this many events or rejects. */
    readonly capacity: number,
    private readonly withReceiveTime: boolean,
    private readonly withEventIds: boolean,
  ) {
    this.eventTimeMs = new Float64Array(capacity);
    this.receiveTimeMs = withReceiveTime ? new Float64Array(capacity) : null;
    this.lines = new Uint32Array(capacity);
    this.eventIds = withEventIds ? [] : null;
  }

  /** Whether the batch should be taken before more records are parsed. */
  get full(): boolean {
    return this.length >= this.capacity || this.rejects.length >= this.capacity;
  }

  /** Whether nothing was collected since the last batch was taken. */
  get empty(): boolean {
    return this.length === 0 && this.rejects.length === 0;
  }

  /**
   * Appends one event. `receiveTimeMs` is ignored when no receive-time field
   * is configured, `eventId` when no event-id field is.
   */
  add(
    userId: string,
    eventTimeMs: number,
    receiveTimeMs: number,
    line: number,
    eventId: string | undefined,
  ): void {
    const i = this.length++;
    this.userIds.push(userId);
    this.eventTimeMs[i] = eventTimeMs;
    this.lines[i] = line;
    if (this.receiveTimeMs !== null) {
      this.receiveTimeMs[i] = receiveTimeMs;
    }
    if (this.eventIds !== null) {
      this.eventIds.push(eventId);
    }
  }

  /** Records a rejected record; `raw` is cut to {@link MAX_RAW_LENGTH} and copied. */
  reject(line: number, reason: RejectReason, detail: string, raw: string): void {
    this.rejects.push({ source: this.source, line, reason, detail, raw: cutRaw(raw) });
  }

  /** Hands out what was collected as a batch covering lines up to `lastLine`, and starts anew. */
  take(lastLine: number): EventBatch {
    const n = this.length;
    const batch: EventBatch = {
      source: this.source,
      length: n,
      userIds: this.userIds,
      eventTimeMs: this.eventTimeMs.subarray(0, n),
      receiveTimeMs: this.receiveTimeMs === null ? null : this.receiveTimeMs.subarray(0, n),
      lines: this.lines.subarray(0, n),
      eventIds: this.eventIds,
      rejects: this.rejects,
      lastLine,
    };

    this.length = 0;
    this.userIds = [];
    this.eventTimeMs = new Float64Array(this.capacity);
    this.receiveTimeMs = this.withReceiveTime ? new Float64Array(this.capacity) : null;
    this.lines = new Uint32Array(this.capacity);
    this.eventIds = this.withEventIds ? [] : null;
    this.rejects = [];

    return batch;
  }
}

/**
 * Cuts `raw` to at most {@link MAX_RAW_LENGTH} code units without splitting a
 * surrogate pair, and copies it: a slice of a multi-megabyte input chunk
 * would otherwise keep the whole chunk alive in the dead-letter store.
 */
function cutRaw(raw: string): string {
  let end = Math.min(raw.length, MAX_RAW_LENGTH);
  const last = raw.charCodeAt(end - 1);
  if (end < raw.length && last >= 0xd800 && last <= 0xdbff) {
    end--;
  }

  return Buffer.from(raw.slice(0, end), 'utf8').toString('utf8');
}

/**
 * Turns the text of one source into events and rejects. The reader feeds it
 * the source in chunks; a record cut by a chunk boundary is left for the
 * next call, which gets the rest of the record prepended.
 */
export interface RecordParser {
  /** Lines of the source fully consumed so far. */
  readonly line: number;

  /**
   * Parses the records of `text` from `pos` into the batch builder until the
   * text holds no complete record or the builder is full. A new text always
   * starts at `pos` 0; later calls on the same text go on where the last
   * one stopped.
   *
   * @param final - `text` runs to the end of the source, so its last record
   *   needs no line end
   * @returns where the first record that was not consumed starts
   */
  consume(text: string, pos: number, final: boolean): number;
}
