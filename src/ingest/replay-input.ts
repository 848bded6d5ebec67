/**
 * The input side of a replay, shared by the embedded replay and the replay into a
 * cluster: which files are read and under which source id, a check that every file can
 * be read before anything is sent, and the receive-time order.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';

import { listEventFiles, readEvents, type ReadOptions } from './readers.js';
import type { EventBatch } from './types.js';

/**
 * The source id of each input file: its real path and a fingerprint of its
 * first 64 KiB, so that the same file reached by another path is one source,
 * and a different file at a path replayed before (a rotated log) is a new
 * one. Replay progress, batch ids and dead letters are kept per source id.
 *
 * @returns source id by real path, in reading order
 */
export async function identifySources(paths: readonly string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const file of await listEventFiles(paths)) {
    const real = await fs.realpath(file);
    const handle = await fs.open(real, 'r');
    try {
      const head = Buffer.alloc(64 * 1024);
      const { bytesRead } = await handle.read(head, 0, head.length, 0);
      const digest = createHash('sha256').update(head.subarray(0, bytesRead)).digest('hex');
      out.set(real, `${real}#${digest.slice(0, 12)}`);
    } finally {
      await handle.close();
    }
  }

  return out;
}

/** Checks that every file can be read with these options (format, fields, CSV header). */
export async function planReadable(
  files: readonly string[],
  read: Omit<ReadOptions, 'fromLine'>,
): Promise<void> {
  for (const file of files) {
    // Reading the first batch runs every check the reader makes before its data.
    const reader = readEvents([file], { ...read, batchSize: 1 });
    await reader.next();
    await reader.return(undefined);
  }
}

/** The batch, and its rejects, under `source` (a source id) instead of the path read. */
export function withSource(batch: EventBatch, source: string): EventBatch {
  if (batch.source === source) return batch;

  return { ...batch, source, rejects: batch.rejects.map((r) => ({ ...r, source })) };
}

/** The first receive time of the batches in file order, NaN when none has one. */
function firstReceiveTime(batches: readonly EventBatch[]): number {
  for (const b of batches) {
    for (let i = 0; i < b.length; i++) {
      const r = b.receiveTimeMs?.[i] ?? Number.NaN;
      if (!Number.isNaN(r)) return r;
    }
  }

  return Number.NaN;
}

/**
 * The events of all batches in receive-time order (stable; an event without
 * a receive time keeps the receive time of the event before it in file
 * order), cut into new batches of one source each. Record rejects ride in
 * the first batch, which is empty when no batch has an event.
 */
export function sortByReceiveTime(batches: readonly EventBatch[], batchSize: number): EventBatch[] {
  interface Ref {
    b: EventBatch;
    i: number;
    receive: number;
    seq: number;
  }
  const refs: Ref[] = [];
  // Events before the first receive time arrive with it.
  let carried = firstReceiveTime(batches);
  for (const b of batches) {
    for (let i = 0; i < b.length; i++) {
      const r = b.receiveTimeMs?.[i] ?? Number.NaN;
      if (!Number.isNaN(r)) carried = r;
      refs.push({ b, i, receive: carried, seq: refs.length });
    }
  }
  refs.sort((x, y) => x.receive - y.receive || x.seq - y.seq);

  const rejects = batches.flatMap((b) => b.rejects);
  const out: EventBatch[] = [];
  const flush = (slice: Ref[], withRejects: boolean): void => {
    out.push({
      source: slice[0]?.b.source ?? rejects[0]?.source ?? '',
      length: slice.length,
      userIds: slice.map((r) => r.b.userIds[r.i] as string),
      eventTimeMs: Float64Array.from(slice, (r) => r.b.eventTimeMs[r.i] as number),
      receiveTimeMs: Float64Array.from(slice, (r) => r.receive),
      lines: Uint32Array.from(slice, (r) => r.b.lines[r.i] as number),
      eventIds: slice.map((r) => r.b.eventIds?.[r.i]),
      rejects: withRejects ? rejects : [],
      lastLine: 0,
    });
  };

  // A batch holds one source, so that rejections name the right file.
  let slice: Ref[] = [];
  for (const ref of refs) {
    if (slice.length === batchSize || (slice.length > 0 && slice[0]?.b.source !== ref.b.source)) {
      flush(slice, out.length === 0);
      slice = [];
    }
    slice.push(ref);
  }
  if (slice.length > 0 || out.length === 0) flush(slice, out.length === 0);

  return out;
}
