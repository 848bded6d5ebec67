/**
 * Why an event was not applied. Each rejected event is counted and kept in
 * the dead-letter table with one of these reasons.
 *
 * - `invalid_user_id`: no user id, null, empty, whitespace only, or not a string or integer
 * - `invalid_time`: no event time, one that cannot be read in the chosen time format, or
 *   one outside years 0000-9999
 * - `malformed`: the record itself cannot be read (bad JSON, a line that is not in the format)
 * - `future`: the event time is later than its receive time plus the allowed future skew
 * - `too_old`: the event time is further behind the watermark than the restatement horizon
 */
export type RejectReason = 'invalid_user_id' | 'invalid_time' | 'malformed' | 'future' | 'too_old';

export const REJECT_REASONS: readonly RejectReason[] = [
  'invalid_user_id',
  'invalid_time',
  'malformed',
  'future',
  'too_old',
];

/** One record that could not become an event, with where it came from. */
export interface RecordReject {
  /** The source the record was read from (a file path as given). */
  readonly source: string;
  /** 1-based line number of the record in its source (its first line, for multi-line CSV records). */
  readonly line: number;
  readonly reason: RejectReason;
  /** A short human explanation, e.g. `user id is empty`. */
  readonly detail: string;
  /** The record as read (the line text), cut to at most 4 KiB. */
  readonly raw: string;
}

/**
 * A batch of parsed events from one source, column by column, in source order.
 * `eventTimeMs` holds integer epoch milliseconds (sub-millisecond digits are
 * truncated). Values may lie far outside the range of a JavaScript Date
 * (a nanosecond timestamp read as milliseconds); they are never NaN.
 */
export interface EventBatch {
  readonly source: string;
  /** Number of parsed events in this batch. */
  readonly length: number;
  readonly userIds: string[];
  readonly eventTimeMs: Float64Array;
  /** Receive time per event in epoch ms, NaN where the record has none; null when no receive-time field was configured. */
  readonly receiveTimeMs: Float64Array | null;
  /** 1-based line number of each event's record. */
  readonly lines: Uint32Array;
  /** Event ids, when an event-id field was configured. */
  readonly eventIds: (string | undefined)[] | null;
  /** Records of this stretch of the source that were rejected while parsing. */
  readonly rejects: RecordReject[];
  /** Highest line number this batch covers (so that a reader can resume after it). */
  readonly lastLine: number;
}

/** Input formats the readers understand. */
export type InputFormat = 'ndjson' | 'csv' | 'combined';

/**
 * How event times are written.
 * - `iso`: ISO-8601 with `Z` or a numeric offset
 * - `epoch-s`, `epoch-ms`: a number (JSON number or digit string) of seconds or milliseconds since 1970
 * - `auto`: ISO-8601 text as `iso`; a number as `epoch-ms` when its magnitude is at least 1e11, else `epoch-s`
 */
export type TimeFormat = 'iso' | 'epoch-s' | 'epoch-ms' | 'auto';
