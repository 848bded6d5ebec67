import type { EventBatch } from '../../src/ingest/types.js';

/** One event as the tests describe it. */
export interface TestEvent {
  userId: string;
  eventMs: number;
  receiveMs?: number;
}

/** Cuts events into parsed batches, as a reader would deliver them, with 1-based line numbers. */
export function toBatches(
  events: readonly TestEvent[],
  size: number,
  source = 'test',
  firstLine = 1,
): EventBatch[] {
  const out: EventBatch[] = [];
  for (let start = 0; start < events.length; start += size) {
    const slice = events.slice(start, start + size);
    const hasReceive = slice.some((e) => e.receiveMs !== undefined);
    out.push({
      source,
      length: slice.length,
      userIds: slice.map((e) => e.userId),
      eventTimeMs: Float64Array.from(slice.map((e) => e.eventMs)),
      receiveTimeMs: hasReceive
        ? Float64Array.from(slice.map((e) => e.receiveMs ?? Number.NaN))
        : null,
      lines: Uint32Array.from(slice.map((_, i) => firstLine + start + i)),
      eventIds: null,
      rejects: [],
      lastLine: firstLine + start + slice.length - 1,
    });
  }

  return out;
}

/** A seeded pseudo-random generator (mulberry32), so that failures reproduce. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;

  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);

    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
