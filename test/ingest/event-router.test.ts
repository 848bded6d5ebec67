/**
 * The router's judgement of single events: future skew against the receive
 * time, the restatement horizon against the watermark, and a clock far ahead
 * (a device or a collector) never dragging the watermark forward.
 */
import { describe, expect, it } from 'vitest';

import {
  EventRouter,
  MAX_EVENT_MS,
  MIN_EVENT_MS,
  type EventRouterOptions,
} from '../../src/ingest/event-router.js';
import { toBatches } from '../support/events.js';

const MIN = 60_000;
const now = Date.UTC(2026, 2, 29, 12);
const base: EventRouterOptions = {
  partitions: 4,
  allowedLatenessMs: 10 * MIN,
  restatementHorizonMs: 60 * MIN,
  maxFutureSkewMs: 5 * MIN,
  maxOutOfOrdernessMs: 0,
  watermarkMode: 'clock',
  now: () => now,
};

describe('event router', () => {
  it('rejects a receive time ahead of the wall clock without moving the watermark', () => {
    const router = new EventRouter(base);
    const [batch] = toBatches(
      [
        { userId: 'a', eventMs: now - 2 * MIN, receiveMs: now - MIN },
        { userId: 'b', eventMs: now + 365 * 24 * 60 * MIN, receiveMs: now + 365 * 24 * 60 * MIN },
        { userId: 'c', eventMs: now - 30 * MIN, receiveMs: now - MIN },
      ],
      10,
    );
    const routed = router.route(batch!);

    expect(routed.accepted).toBe(2);
    expect(routed.rejects.map((r) => [r.line, r.reason])).toEqual([[2, 'future']]);
    expect(router.watermark).toBe(now - MIN);
  });

  it('takes a receive time within the skew ahead of the wall clock, without moving the clock past it', () => {
    const router = new EventRouter(base);
    const [batch] = toBatches(
      [
        { userId: 'a', eventMs: now - MIN, receiveMs: now - MIN },
        // A collector whose clock runs 4 minutes ahead.
        { userId: 'b', eventMs: now + 4 * MIN, receiveMs: now + 4 * MIN },
      ],
      10,
    );
    const routed = router.route(batch!);

    expect(routed.accepted).toBe(2);
    expect(routed.rejects).toEqual([]);
    expect(router.watermark).toBe(now);
  });

  it('in event-time mode, rejects a receive time ahead of the wall clock: its event cannot pass the future check by it', () => {
    const router = new EventRouter({ ...base, watermarkMode: 'event-time' });
    const yearAhead = now + 365 * 24 * 60 * MIN;
    const [batch] = toBatches(
      [
        { userId: 'a', eventMs: now - 2 * MIN, receiveMs: now - MIN },
        { userId: 'b', eventMs: yearAhead, receiveMs: yearAhead },
        { userId: 'c', eventMs: now - 30 * MIN, receiveMs: now - MIN },
      ],
      10,
    );
    const routed = router.route(batch!);

    expect(routed.accepted).toBe(2);
    expect(routed.rejects.map((r) => [r.line, r.reason, r.detail])).toEqual([
      [
        2,
        'future',
        `receive time ${new Date(yearAhead).toISOString()} is later than the wall clock`,
      ],
    ]);
    expect(router.watermark).toBe(now - 2 * MIN);
  });

  it('rejects device times beyond the skew and events behind the horizon, judged once each', () => {
    const router = new EventRouter(base);
    const [batch] = toBatches(
      [
        { userId: 'a', eventMs: now - MIN, receiveMs: now - MIN },
        { userId: 'b', eventMs: now + 6 * MIN, receiveMs: now - MIN },
        { userId: 'c', eventMs: now - MIN - 61 * MIN, receiveMs: now - MIN },
        { userId: 'd', eventMs: now - MIN - 59 * MIN, receiveMs: now - MIN },
      ],
      10,
    );
    const routed = router.route(batch!);

    expect(routed.rejects.map((r) => [r.line, r.reason])).toEqual([
      [2, 'future'],
      [3, 'too_old'],
    ]);
    expect(routed.rejects[0]?.detail).toBe(
      'event time is 420 s after its receive time 2026-03-29T11:59:00.000Z',
    );
    expect(routed.accepted).toBe(2);
    // Every partition learns the watermark, in band, after its events.
    for (const b of routed.batches) expect(b.marks.at(-1)?.watermarkMs).toBe(now - MIN);
  });

  it('in event-time mode, lets only accepted events move the watermark', () => {
    const router = new EventRouter({
      ...base,
      watermarkMode: 'event-time',
      maxOutOfOrdernessMs: MIN,
    });
    const [batch] = toBatches(
      [
        { userId: 'a', eventMs: now - 10 * MIN },
        { userId: 'b', eventMs: now + 60 * MIN },
        { userId: 'c', eventMs: now - 20 * MIN },
      ],
      10,
    );
    const routed = router.route(batch!);

    expect(routed.rejects.map((r) => r.reason)).toEqual(['future']);
    expect(router.watermark).toBe(now - 11 * MIN);
  });

  it('rejects event times outside years 0000-9999 as invalid_time, before they move anything', () => {
    // One such event used to be accepted: in event-time mode it dragged the watermark to
    // the year 292 million (every later event too_old), and its period could never be
    // written to the warehouse, so every round failed from then on.
    const router = new EventRouter({ ...base, watermarkMode: 'event-time' });
    const int64Max = 9_223_372_036_854_775_807;
    const [batch] = toBatches(
      [
        { userId: 'a', eventMs: -int64Max, receiveMs: now },
        { userId: 'b', eventMs: -1e15, receiveMs: now },
        { userId: 'c', eventMs: MIN_EVENT_MS, receiveMs: now },
        { userId: 'd', eventMs: MIN_EVENT_MS - 1, receiveMs: now },
        { userId: 'e', eventMs: int64Max, receiveMs: int64Max },
        { userId: 'f', eventMs: MAX_EVENT_MS + 1, receiveMs: int64Max },
        { userId: 'g', eventMs: now - MIN, receiveMs: now },
      ],
      10,
    );
    const routed = router.route(batch!);

    expect(routed.rejects.map((r) => [r.line, r.reason])).toEqual([
      [1, 'invalid_time'],
      [2, 'invalid_time'],
      [4, 'invalid_time'],
      // A receive time past the wall clock is refused first (it would pass anything ahead).
      [5, 'future'],
      [6, 'future'],
    ]);
    expect(routed.rejects[1]?.detail).toBe(
      'event time -1000000000000000 ms is outside years 0000-9999',
    );
    expect(routed.accepted).toBe(2);
    expect(router.watermark).toBe(now - MIN);
    const routedTimes = routed.batches.flatMap((b) => [...b.eventTimeMs]).sort((x, y) => x - y);
    expect(routedTimes).toEqual([MIN_EVENT_MS, now - MIN]);
  });
  it('finishes at the end of the week of the input, however often it finishes (no week added per finish)', () => {
    const router = new EventRouter(base);
    const event = { userId: 'a', eventMs: now - 2 * MIN, receiveMs: now - MIN };
    const weekEnd = Date.UTC(2026, 2, 30) + base.allowedLatenessMs; // Monday after Sunday 29 March
    router.route(toBatches([event], 10)[0]!);

    router.finish();
    expect(router.watermark).toBe(weekEnd);
    router.finish();
    expect(router.watermark).toBe(weekEnd);

    // Another replay of the same week, into the same router, then a restart from its state.
    router.route(toBatches([{ ...event, userId: 'b' }], 10)[0]!);
    router.finish();
    expect(router.watermark).toBe(weekEnd);
    const restarted = new EventRouter(base);
    restarted.restore(router.state);
    restarted.finish();
    expect(restarted.watermark).toBe(weekEnd);
  });
});
