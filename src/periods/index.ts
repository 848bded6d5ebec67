export {
  DAY_MS,
  HOUR_MS,
  PERIOD_TYPES,
  WEEK_MS,
  dayStart,
  describePeriod,
  hourStart,
  isPeriodType,
  isoSeconds,
  parsePeriodKey,
  periodEnd,
  periodKey,
  periodLengthMs,
  periodStart,
  periodsOf,
  weekStart,
} from './period.js';
export type { Period, PeriodType } from './period.js';
