/**
 * Parsed event batches (src/ingest) as Ingest requests: the events with their
 * source lines, and the records the reader could not read as `unreadable`, so
 * that they reach the cluster's dead-letter store. A reader batch can be larger
 * than one request should be (8192 rejects of 4 KiB each); {@link cutBatch}
 * cuts it into stretches of whole records under a size.
 */
import type { EventBatch } from '../ingest/types.js';
import {
  rejectReasonToWire,
  type EventBatchRequestWire,
  type EventWire,
  type UnreadableRecordWire,
} from './proto.js';

/** What one request should stay under, well below gRPC's default limit of 4 MiB. */
export const INGEST_REQUEST_TARGET_BYTES = 1024 * 1024;

/**
 * The largest int64 a double holds (2^63 - 1024). Event times beyond it are
 * nonsense (a reader returns any finite number) and are sent as this limit,
 * which a node rejects for the same reason as the time itself (`future`, or
 * `too_old` below zero); protobufjs would otherwise wrap them into plausible times.
 */
const INT64_LIMIT = 9_223_372_036_854_774_784;

/** Bytes an event or record adds to a request besides its strings (tags, numbers). */
const EVENT_OVERHEAD_BYTES = 40;

/**
 * The request for `batch`: each event with its time, receive time (when it has
 * one), event id and line; each reader reject as an unreadable record.
 */
export function eventBatchToWire(batch: EventBatch, batchId: string): EventBatchRequestWire {
  const events: EventWire[] = new Array<EventWire>(batch.length);
  for (let i = 0; i < batch.length; i++) {
    const received = batch.receiveTimeMs?.[i] ?? Number.NaN;
    events[i] = {
      user_id: batch.userIds[i] as string,
      event_time_ms: toInt64(batch.eventTimeMs[i] as number),
      ...(Number.isNaN(received) ? {} : { received_time_ms: toInt64(received) }),
      event_id: batch.eventIds?.[i] ?? '',
      attributes: {},
      line: batch.lines[i] as number,
    };
  }

  const unreadable: UnreadableRecordWire[] = batch.rejects.map((r) => ({
    line: r.line,
    reason: rejectReasonToWire(r.reason),
    detail: r.detail,
    raw: r.raw,
  }));

  return { batch_id: batchId, source: batch.source, events, unreadable };
}

/** The first and last line a batch covers (its events and rejects); [0, 0] when empty. */
export function lineRangeOf(batch: EventBatch): [number, number] {
  let first = Number.POSITIVE_INFINITY;
  let last = 0;
  for (const line of batch.lines) {
    first = Math.min(first, line);
    last = Math.max(last, line);
  }
  for (const reject of batch.rejects) {
    first = Math.min(first, reject.line);
    last = Math.max(last, reject.line);
  }

  return last === 0 ? [0, 0] : [first, last];
}

/**
 * Cuts `batch` into batches of at most about `maxBytes` on the wire, in the
 * order of its records: events and rejects are taken by line (a reader gives
 * both in line order), so that every part covers a stretch of whole lines.
 * A batch under the size comes back as it is.
 */
export function cutBatch(batch: EventBatch, maxBytes = INGEST_REQUEST_TARGET_BYTES): EventBatch[] {
  const parts: EventBatch[] = [];
  let event = 0;
  let reject = 0;
  let eventStart = 0;
  let rejectStart = 0;
  let bytes = 0;

  while (event < batch.length || reject < batch.rejects.length) {
    const nextReject = batch.rejects[reject];
    const takeReject =
      nextReject !== undefined &&
      (event >= batch.length || nextReject.line < (batch.lines[event] as number));
    const size = takeReject ? rejectBytes(batch, reject) : eventBytes(batch, event);

    const empty = event === eventStart && reject === rejectStart;
    if (!empty && bytes + size > maxBytes) {
      parts.push(sliceBatch(batch, eventStart, event, rejectStart, reject));
      eventStart = event;
      rejectStart = reject;
      bytes = 0;
    }

    bytes += size;
    if (takeReject) reject++;
    else event++;
  }

  if (parts.length === 0) return [batch];
  parts.push(sliceBatch(batch, eventStart, event, rejectStart, reject));

  return parts;
}

function eventBytes(batch: EventBatch, i: number): number {
  const eventId = batch.eventIds?.[i];

  return (
    EVENT_OVERHEAD_BYTES +
    Buffer.byteLength(batch.userIds[i] as string) +
    (eventId === undefined ? 0 : Buffer.byteLength(eventId))
  );
}

function rejectBytes(batch: EventBatch, i: number): number {
  const r = batch.rejects[i];

  return r === undefined
    ? 0
    : EVENT_OVERHEAD_BYTES + Buffer.byteLength(r.raw) + Buffer.byteLength(r.detail);
}

function sliceBatch(
  batch: EventBatch,
  eventStart: number,
  eventEnd: number,
  rejectStart: number,
  rejectEnd: number,
): EventBatch {
  const part = {
    ...batch,
    length: eventEnd - eventStart,
    userIds: batch.userIds.slice(eventStart, eventEnd),
    eventTimeMs: batch.eventTimeMs.subarray(eventStart, eventEnd),
    receiveTimeMs: batch.receiveTimeMs?.subarray(eventStart, eventEnd) ?? null,
    lines: batch.lines.subarray(eventStart, eventEnd),
    eventIds: batch.eventIds?.slice(eventStart, eventEnd) ?? null,
    rejects: batch.rejects.slice(rejectStart, rejectEnd),
  };

  return { ...part, lastLine: lineRangeOf(part)[1] };
}

function toInt64(ms: number): number {
  return Math.max(-INT64_LIMIT, Math.min(INT64_LIMIT, ms));
}
