/**
 * An independent brute-force recount: one JavaScript Set of user ids per
 * period, with plain Date arithmetic. It shares no code with the engine.
 */
export type Counts = Map<string, number>;

const HOUR = 3_600_000;
const DAY = 86_400_000;

function iso(ms: number): string {
  return new Date(ms).toISOString().replace('.000Z', 'Z');
}

/** The period keys (`type,startIso`) an event time belongs to. */
export function periodsOfTime(ms: number): string[] {
  const hour = Math.floor(ms / HOUR) * HOUR;
  const day = Math.floor(ms / DAY) * DAY;
  const d = new Date(day);
  const mondayOffset = (d.getUTCDay() + 6) % 7;
  const week = day - mondayOffset * DAY;

  return [`hour,${iso(hour)}`, `day,${iso(day)}`, `week,${iso(week)}`];
}

/** Distinct users per period of the given (user, time) pairs. */
export function bruteForceCounts(events: Iterable<{ userId: string; eventMs: number }>): Counts {
  const sets = new Map<string, Set<string>>();
  for (const e of events) {
    for (const key of periodsOfTime(e.eventMs)) {
      let set = sets.get(key);
      if (set === undefined) sets.set(key, (set = new Set()));
      set.add(e.userId);
    }
  }

  return new Map([...sets].map(([k, s]) => [k, s.size]));
}

/** Rows from the engine as the same keys. */
export function rowsToCounts(
  rows: Iterable<{ periodType: string; periodStartMs: number; distinctUsers: number }>,
): Counts {
  return new Map(
    [...rows].map((r) => [`${r.periodType},${iso(r.periodStartMs)}`, r.distinctUsers]),
  );
}

/** Differences between two count maps, as readable lines (empty when equal). */
export function diffCounts(expected: Counts, actual: Counts, limit = 20): string[] {
  const out: string[] = [];
  for (const [k, v] of expected)
    if (actual.get(k) !== v) out.push(`${k}: expected ${v}, got ${actual.get(k)}`);
  for (const [k, v] of actual) if (!expected.has(k)) out.push(`${k}: expected none, got ${v}`);

  return out.slice(0, limit);
}
