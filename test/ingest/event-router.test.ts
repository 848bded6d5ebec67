/**
 * The router's judgement of single events: future skew against the receive
 * time, the restatement horizon against the watermark, and a clock far ahead
 * (a device or a collector) never dragging the watermark forward.
 */
import { describe, expect, it } from 'vitest';

import { EventRouter, type EventRouterOptions } from '../../src/ingest/event-router.js';
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
});
