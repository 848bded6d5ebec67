/**
 * An independent model of the lateness contract (see shared cases README):
 * events arrive in receive order, the watermark follows the clock, and
 * each event is judged once. It uses plain Sets and Date arithmetic only.
 */
import { periodsOfTime, type Counts } from './oracle.js';

export interface ModelSettings {
  allowedLatenessMs: number;
  restatementHorizonMs: number;
  maxFutureSkewMs: number;
}

export interface ModelEvent {
  userId: string;
  eventMs: number;
  receiveMs: number;
}

export interface ModelResult {
  /** What version 1 of each period must read: users of the events that were on time for it. */
  first: Counts;
  /** What the last version must read: users of every accepted event. */
  last: Counts;
  rejected: Record<'future' | 'too_old', number>;
  /** Periods that got at least one late event adding a user. */
  restated: Set<string>;
}

function endOf(key: string): number {
  const [type, startIso] = key.split(',') as [string, string];
  const start = Date.parse(startIso);
  const length = type === 'hour' ? 3_600_000 : type === 'day' ? 86_400_000 : 7 * 86_400_000;

  return start + length;
}

export function lateModel(events: readonly ModelEvent[], s: ModelSettings): ModelResult {
  const onTime = new Map<string, Set<string>>();
  const all = new Map<string, Set<string>>();
  const rejected = { future: 0, too_old: 0 };
  let clock = Number.NEGATIVE_INFINITY;

  const add = (m: Map<string, Set<string>>, key: string, user: string): boolean => {
    let set = m.get(key);
    if (set === undefined) m.set(key, (set = new Set()));
    const had = set.has(user);
    set.add(user);

    return !had;
  };

  const restated = new Set<string>();
  for (const e of events) {
    clock = Math.max(clock, e.receiveMs);
    if (e.eventMs > e.receiveMs + s.maxFutureSkewMs) {
      rejected.future++;
      continue;
    }
    if (e.eventMs < clock - s.restatementHorizonMs) {
      rejected.too_old++;
      continue;
    }
    for (const key of periodsOfTime(e.eventMs)) {
      const late = endOf(key) + s.allowedLatenessMs <= clock;
      if (!late) add(onTime, key, e.userId);
      if (add(all, key, e.userId) && late) restated.add(key);
    }
  }
  const sizes = (m: Map<string, Set<string>>): Counts =>
    new Map([...m].map(([k, v]) => [k, v.size]));

  return { first: sizes(onTime), last: sizes(all), rejected, restated };
}
