/**
 * An EventBatchRequest as the router takes it. Each event is checked as the file readers
 * check a record (user id rules of user-id.ts, an event time present); the events that
 * pass become an {@link EventBatch}, and the others, with the batch's unreadable records,
 * become dead letters.
 *
 * Dead letters are keyed by (source, line) and what was read there, so that a batch sent
 * twice keeps one row per event, and a batch id reused for other events keeps those too.
 * An event with a line is kept under (source, line); one without (line 0) under
 * (`<source>#<batch_id>`, its index + 1), and an unreadable record without a line under
 * the same source after the events (events + its index + 1).
 */
import { MAX_RAW_LENGTH } from '../ingest/batch-builder.js';
import { MAX_EVENT_MS, MIN_EVENT_MS } from '../ingest/event-router.js';
import type { EventBatch, RejectReason } from '../ingest/types.js';
import { userIdTextProblem } from '../ingest/user-id.js';
import type { DeadLetterWrite } from '../sink/types.js';
import { IngestError } from './ingest-errors.js';
import { rejectReasonFromWire, type EventBatchRequestWire, type RejectionWire } from './proto.js';
import { rejectReasonToWire } from './proto.js';

/** Most events one request may carry; a larger batch is refused as INVALID_ARGUMENT. */
export const MAX_EVENTS_PER_REQUEST = 100_000;

/** Most unreadable records one request may carry. */
export const MAX_UNREADABLE_PER_REQUEST = 100_000;

/**
 * Longest `source` and `batch_id`, in UTF-8 bytes. A dead letter is keyed by its source, or
 * by `<source>#<batch_id>`, in a unique index whose entries PostgreSQL caps at 2704 bytes;
 * a longer key would fail every store of the batch's rejects, and the batch with it, for as
 * long as the client resent it. A replay's batch id is its source and about 60 bytes more.
 */
export const MAX_SOURCE_BYTES = 1024;
export const MAX_BATCH_ID_BYTES = 1280;

/** One event of a request that is not counted, by its index in the request. */
export interface IndexedReject {
  readonly index: number;
  readonly reason: RejectReason;
  readonly detail: string;
}

/** A request after the checks that need no router state. */
export interface CheckedRequest {
  /**
   * The events that passed, in request order. `lines[i]` is the event's index in the
   * request plus one, so that a router reject names the event it is about.
   */
  readonly batch: EventBatch;
  /** Events refused before routing (invalid user id or time). */
  readonly rejected: IndexedReject[];
  /** The batch's unreadable records, as dead letters. */
  readonly unreadable: DeadLetterWrite[];
}

/**
 * Checks the request's shape and each event.
 *
 * @param receiveNowMs - the receive time of events that carry none; undefined leaves it
 *   to the router (NaN: the router's clock, or its wall clock)
 * @throws IngestError 'invalid-argument' for an empty or too long batch id, a too long
 *   source, too many records, or a line beyond 2^53 - 1
 * @throws WireFormatError for an unreadable record whose reason is unspecified
 */
export function checkRequest(
  request: EventBatchRequestWire,
  receiveNowMs: number | undefined,
): CheckedRequest {
  checkShape(request);
  const events = request.events;
  const rejected: IndexedReject[] = [];
  const accepted: number[] = [];

  for (let i = 0; i < events.length; i++) {
    const event = events[i] as EventBatchRequestWire['events'][number];
    const problem = userIdTextProblem(event.user_id, 0, event.user_id.length);
    if (problem !== undefined) {
      rejected.push({ index: i, reason: 'invalid_user_id', detail: problem });
    } else if (event.event_time_ms === undefined) {
      rejected.push({ index: i, reason: 'invalid_time', detail: 'event time is missing' });
    } else if (
      event.received_time_ms !== undefined &&
      !(event.received_time_ms >= MIN_EVENT_MS && event.received_time_ms <= MAX_EVENT_MS)
    ) {
      // The receive time is the bad field: judged by it, the event would pass as 'future'.
      rejected.push({
        index: i,
        reason: 'invalid_time',
        detail: `receive time ${event.received_time_ms} ms is outside years 0000-9999`,
      });
    } else {
      accepted.push(i);
    }
  }

  const n = accepted.length;
  const receiveTimeMs = new Float64Array(n);
  const batch: EventBatch = {
    source: request.source,
    length: n,
    userIds: accepted.map((i) => events[i]?.user_id as string),
    eventTimeMs: Float64Array.from(accepted, (i) => events[i]?.event_time_ms as number),
    receiveTimeMs,
    lines: Uint32Array.from(accepted, (i) => i + 1),
    eventIds: accepted.map((i) => (events[i]?.event_id === '' ? undefined : events[i]?.event_id)),
    rejects: [],
    lastLine: events.length,
  };
  for (let k = 0; k < n; k++) {
    receiveTimeMs[k] =
      events[accepted[k] as number]?.received_time_ms ?? receiveNowMs ?? Number.NaN;
  }

  return { batch, rejected, unreadable: unreadableLetters(request) };
}

/** A reject of the router (its line is the request index plus one) by index. */
export function indexedRouterReject(reject: DeadLetterWrite): IndexedReject {
  return { index: reject.line - 1, reason: reject.reason, detail: reject.detail };
}

/** The dead letter of the request's event at `index`. */
export function eventDeadLetter(
  request: EventBatchRequestWire,
  reject: IndexedReject,
): DeadLetterWrite {
  const event = request.events[reject.index];
  if (event === undefined) throw new Error(`no event at index ${reject.index}`);
  const raw = JSON.stringify({
    user_id: event.user_id,
    event_time_ms: event.event_time_ms,
    received_time_ms: event.received_time_ms,
    event_id: event.event_id === '' ? undefined : event.event_id,
    attributes: Object.keys(event.attributes).length === 0 ? undefined : event.attributes,
  });
  const place =
    event.line > 0
      ? { source: request.source, line: event.line }
      : { source: unplacedSource(request), line: reject.index + 1 };

  return { ...place, reason: reject.reason, detail: reject.detail, raw: cut(raw) };
}

/** Rejections of an acknowledgement, by index. */
export function rejectionsToWire(rejects: readonly IndexedReject[]): RejectionWire[] {
  return [...rejects]
    .sort((a, b) => a.index - b.index)
    .map((r) => ({ index: r.index, reason: rejectReasonToWire(r.reason), detail: r.detail }));
}

function checkShape(request: EventBatchRequestWire): void {
  if (request.batch_id === '') {
    throw new IngestError(
      'invalid-argument',
      'batch_id is empty: every batch needs its idempotency key',
    );
  }
  for (const [field, text, limit] of [
    ['batch_id', request.batch_id, MAX_BATCH_ID_BYTES],
    ['source', request.source, MAX_SOURCE_BYTES],
  ] as const) {
    const bytes = Buffer.byteLength(text, 'utf8');
    if (bytes > limit) {
      throw new IngestError(
        'invalid-argument',
        `${field} is ${bytes} bytes of UTF-8; at most ${limit} fit in the dead-letter key`,
      );
    }
  }
  if (request.events.length > MAX_EVENTS_PER_REQUEST) {
    throw new IngestError(
      'invalid-argument',
      `batch ${request.batch_id} has ${request.events.length} events; at most ${MAX_EVENTS_PER_REQUEST} fit in one batch`,
    );
  }
  if (request.unreadable.length > MAX_UNREADABLE_PER_REQUEST) {
    throw new IngestError(
      'invalid-argument',
      `batch ${request.batch_id} has ${request.unreadable.length} unreadable records; at most ${MAX_UNREADABLE_PER_REQUEST} fit in one batch`,
    );
  }
  // A line keys a dead letter: past 2^53 it is no longer exact, and past the warehouse's
  // bigint every store of the batch's rejects failed, refused as 'unavailable' (retryable)
  // for as long as the client kept sending it.
  const badLine = (line: number): boolean => !Number.isSafeInteger(line) || line < 0;
  const eventIndex = request.events.findIndex((e) => badLine(e.line));
  const recordIndex = request.unreadable.findIndex((r) => badLine(r.line));
  if (eventIndex >= 0 || recordIndex >= 0) {
    const [what, line] =
      eventIndex >= 0
        ? [`event ${eventIndex}`, request.events[eventIndex]?.line]
        : [`unreadable record ${recordIndex}`, request.unreadable[recordIndex]?.line];
    throw new IngestError(
      'invalid-argument',
      `batch ${request.batch_id}: ${what} has line ${line}, beyond ${Number.MAX_SAFE_INTEGER}`,
    );
  }
  // (source, line) keys one dead letter: a line given twice would keep one of two rejects.
  const seen = new Set<number>();
  for (const line of [
    ...request.events.map((e) => e.line),
    ...request.unreadable.map((r) => r.line),
  ]) {
    if (line === 0) continue;
    if (seen.has(line)) {
      throw new IngestError(
        'invalid-argument',
        `batch ${request.batch_id}: line ${line} is given to more than one event or unreadable record; a line names one record of the source`,
      );
    }
    seen.add(line);
  }
}

function unreadableLetters(request: EventBatchRequestWire): DeadLetterWrite[] {
  return request.unreadable.map((record, j) => ({
    ...(record.line > 0
      ? { source: request.source, line: record.line }
      : { source: unplacedSource(request), line: request.events.length + j + 1 }),
    reason: rejectReasonFromWire(record.reason),
    detail: cut(record.detail),
    raw: cut(record.raw),
  }));
}

function unplacedSource(request: EventBatchRequestWire): string {
  return `${request.source}#${request.batch_id}`;
}

/** At most {@link MAX_RAW_LENGTH} code units, without splitting a surrogate pair. */
function cut(raw: string): string {
  if (raw.length <= MAX_RAW_LENGTH) return raw;
  const last = raw.charCodeAt(MAX_RAW_LENGTH - 1);

  return raw.slice(0, last >= 0xd800 && last <= 0xdbff ? MAX_RAW_LENGTH - 1 : MAX_RAW_LENGTH);
}
