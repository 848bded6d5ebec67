/**
 * Periods are half-open UTC intervals: an hour, a day, or an ISO week
 * (Monday 00:00 to the next Monday 00:00). A period is named by its type
 * and its start instant in epoch milliseconds.
 */
export type PeriodType = 'hour' | 'day' | 'week';

export const PERIOD_TYPES: readonly PeriodType[] = ['hour', 'day', 'week'];

export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;
export const WEEK_MS = 7 * DAY_MS;

/** A period: its type and its start (epoch milliseconds, UTC). */
export interface Period {
  readonly type: PeriodType;
  readonly startMs: number;
}

/** Start of the UTC hour that contains `ms`. */
export function hourStart(ms: number): number {
  return Math.floor(ms / HOUR_MS) * HOUR_MS;
}

/** Start of the UTC day that contains `ms`. */
export function dayStart(ms: number): number {
  return Math.floor(ms / DAY_MS) * DAY_MS;
}

/** Start of the ISO week (Monday 00:00 UTC) that contains `ms`. */
export function weekStart(ms: number): number {
  const day = Math.floor(ms / DAY_MS);
  // 1970-01-01 was a Thursday: (day + 3) mod 7 is 0 on Mondays.
  const sinceMonday = (((day + 3) % 7) + 7) % 7;

  return (day - sinceMonday) * DAY_MS;
}

/** Start of the period of `type` that contains `ms`. */
export function periodStart(type: PeriodType, ms: number): number {
  switch (type) {
    case 'hour':
      return hourStart(ms);
    case 'day':
      return dayStart(ms);
    case 'week':
      return weekStart(ms);
  }
}

/** Length of a period of `type` in milliseconds. */
export function periodLengthMs(type: PeriodType): number {
  switch (type) {
    case 'hour':
      return HOUR_MS;
    case 'day':
      return DAY_MS;
    case 'week':
      return WEEK_MS;
  }
}

/** End (exclusive) of the period. */
export function periodEnd(period: Period): number {
  return period.startMs + periodLengthMs(period.type);
}

/** The hour, day and week that contain `ms`. */
export function periodsOf(ms: number): Period[] {
  return [
    { type: 'hour', startMs: hourStart(ms) },
    { type: 'day', startMs: dayStart(ms) },
    { type: 'week', startMs: weekStart(ms) },
  ];
}

/** Stable text key of a period, e.g. `day:1427155200000`. */
export function periodKey(period: Period): string {
  return `${period.type}:${period.startMs}`;
}

/** Inverse of {@link periodKey}. */
export function parsePeriodKey(key: string): Period {
  const colon = key.indexOf(':');
  const type = key.slice(0, colon);
  if (type !== 'hour' && type !== 'day' && type !== 'week') {
    throw new Error(`not a period key: ${key}`);
  }

  return { type, startMs: Number(key.slice(colon + 1)) };
}

/** ISO-8601 text of an instant without milliseconds, e.g. `2015-01-01T15:00:00Z`. */
export function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Human name of a period, e.g. `day 2026-03-29T00:00:00Z`. */
export function describePeriod(period: Period): string {
  return `${period.type} ${isoSeconds(period.startMs)}`;
}

/** Whether `s` names a period type. */
export function isPeriodType(s: string): s is PeriodType {
  return s === 'hour' || s === 'day' || s === 'week';
}
