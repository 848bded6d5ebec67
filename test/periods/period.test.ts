import { describe, expect, it } from 'vitest';

import {
  dayStart,
  hourStart,
  isoSeconds,
  parsePeriodKey,
  periodKey,
  periodsOf,
  weekStart,
} from '../../src/periods/index.js';

const at = (iso: string): number => Date.parse(iso);

describe('periods', () => {
  it('starts ISO weeks on Monday, across year ends and in 53-week years', () => {
    expect(isoSeconds(weekStart(at('2021-01-01T12:00:00Z')))).toBe('2020-12-28T00:00:00Z'); // 2020-W53
    expect(isoSeconds(weekStart(at('2021-01-03T23:59:59.999Z')))).toBe('2020-12-28T00:00:00Z');
    expect(isoSeconds(weekStart(at('2021-01-04T00:00:00Z')))).toBe('2021-01-04T00:00:00Z');
    expect(isoSeconds(weekStart(at('2025-01-01T12:00:00Z')))).toBe('2024-12-30T00:00:00Z'); // 2025-W01 starts in 2024
    expect(isoSeconds(weekStart(at('2019-11-10T10:00:00Z')))).toBe('2019-11-04T00:00:00Z'); // a Sunday
    expect(isoSeconds(weekStart(at('1969-12-31T00:00:00Z')))).toBe('1969-12-29T00:00:00Z'); // before the epoch
  });

  it('handles leap days and half-open boundaries', () => {
    expect(isoSeconds(dayStart(at('2024-02-29T23:59:59.999Z')))).toBe('2024-02-29T00:00:00Z');
    expect(isoSeconds(dayStart(at('2024-03-01T00:00:00Z')))).toBe('2024-03-01T00:00:00Z');
    expect(isoSeconds(hourStart(at('2021-05-31T00:59:59.999Z')))).toBe('2021-05-31T00:00:00Z');
    expect(isoSeconds(hourStart(at('2021-05-31T01:00:00Z')))).toBe('2021-05-31T01:00:00Z');
  });

  it('names the hour, day and week of an instant and round-trips keys', () => {
    const periods = periodsOf(at('2026-03-29T10:15:00Z'));
    expect(periods.map((p) => `${p.type} ${isoSeconds(p.startMs)}`)).toEqual([
      'hour 2026-03-29T10:00:00Z',
      'day 2026-03-29T00:00:00Z',
      'week 2026-03-23T00:00:00Z',
    ]);
    for (const p of periods) expect(parsePeriodKey(periodKey(p))).toEqual(p);
    expect(() => parsePeriodKey('month:0')).toThrow('not a period key');
  });
});
