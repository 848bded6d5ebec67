/**
 * Event files as Ingest requests, with batch ids that a re-run of the same replay
 * computes again, so that a node which has seen a batch acknowledges it without counting
 * it twice:
 *
 *   <source id>:<reading key>:L<first line>-<last line>   file order
 *   <source id>:<reading key>:R<first>-<last>             receive order: positions, from 1,
 *                                                         in the receive-ordered input
 *   <source id>:<reading key>:U<first line>-<last line>   receive order: unreadable records
 *
 * In receive order each batch also carries the replay's clock (`clock_ms`).
 *
 * The source id is the file's real path and content fingerprint (see identifySources).
 * The reading key is a digest of what decides the events of a line (format, fields, time
 * format, order, and in receive order the whole input), so that a replay with other
 * fields is a new batch rather than one the node would answer from before.
 */
import { createHash } from 'node:crypto';

import {
  readEvents,
  sortByReceiveTime,
  withSource,
  DEFAULT_BATCH_SIZE,
  type EventBatch,
  type ReadOptions,
} from '../ingest/index.js';
import { cutBatch, eventBatchToWire, lineRangeOf } from '../transport/ingest-requests.js';
import type { EventBatchRequestWire } from '../transport/proto.js';

/** How the input is read for the requests. */
export type ReplayOrder = 'file' | 'receive';

/** As in the embedded replay: in receive order when there is a receive-time field. */
export function replayOrderOf(read: Omit<ReadOptions, 'fromLine'>): ReplayOrder {
  return read.receiveTimeField === undefined ? 'file' : 'receive';
}

/**
 * The requests of a replay of `sources` (source id by real path, in reading order). In
 * file order they stream; in receive order the whole input is read first, sorted by
 * receive time as the embedded replay sorts it, and each file's unreadable records go
 * first, in batches of their own.
 */
export async function* replayRequests(
  sources: ReadonlyMap<string, string>,
  read: Omit<ReadOptions, 'fromLine'>,
): AsyncGenerator<EventBatchRequestWire> {
  const order = replayOrderOf(read);
  const files = [...sources.keys()];
  const key = readingKey(read, order, order === 'receive' ? [...sources.values()] : []);
  const sourceIdOf = (file: string): string => sources.get(file) ?? file;

  if (order === 'file') {
    for await (const batch of readEvents(files, read)) {
      yield* linesRequests(withSource(batch, sourceIdOf(batch.source)), key, 'L');
    }

    return;
  }

  const events: EventBatch[] = [];
  for await (const batch of readEvents(files, read)) {
    const placed = withSource(batch, sourceIdOf(batch.source));
    if (placed.rejects.length > 0) yield* linesRequests(rejectsOnly(placed), key, 'U');
    events.push({ ...placed, rejects: [] });
  }

  let position = 0;
  for (const batch of sortByReceiveTime(events, read.batchSize ?? DEFAULT_BATCH_SIZE)) {
    for (const part of batch.length === 0 ? [] : cutBatch(batch)) {
      const id = `${part.source}:${key}:R${position + 1}-${position + part.length}`;
      position += part.length;
      yield withClock(eventBatchToWire(part, id), part);
    }
  }
}

function* linesRequests(
  batch: EventBatch,
  key: string,
  kind: 'L' | 'U',
): Generator<EventBatchRequestWire> {
  for (const part of cutBatch(batch)) {
    const [first, last] = lineRangeOf(part);
    yield eventBatchToWire(part, `${part.source}:${key}:${kind}${first}-${last}`);
  }
}

/**
 * The replay's clock as the batch leaves: its last receive time, which a node whose
 * watermark follows receive times moves its clock to, as the embedded replay does.
 */
function withClock(request: EventBatchRequestWire, batch: EventBatch): EventBatchRequestWire {
  const last = batch.receiveTimeMs?.[batch.length - 1] ?? Number.NaN;

  return Number.isNaN(last) ? request : { ...request, clock_ms: last };
}

function rejectsOnly(batch: EventBatch): EventBatch {
  return {
    ...batch,
    length: 0,
    userIds: [],
    eventTimeMs: new Float64Array(0),
    receiveTimeMs: null,
    lines: new Uint32Array(0),
    eventIds: null,
  };
}

/** A digest of what decides a line's events and a batch's place in the order. */
export function readingKey(
  read: Omit<ReadOptions, 'fromLine'>,
  order: ReplayOrder,
  inputs: readonly string[],
): string {
  const decisive = {
    format: read.format ?? null,
    userField: read.userField ?? null,
    timeField: read.timeField ?? null,
    timeFormat: read.timeFormat ?? 'auto',
    receiveTimeField: read.receiveTimeField ?? null,
    // Only when set, so that the digests of replays that never gave it stay as they were.
    ...(read.receiveTimeFormat === undefined || read.receiveTimeFormat === 'auto'
      ? {}
      : { receiveTimeFormat: read.receiveTimeFormat }),
    eventIdField: read.eventIdField ?? null,
    order,
    inputs,
  };

  return createHash('sha256').update(JSON.stringify(decisive)).digest('hex').slice(0, 12);
}
