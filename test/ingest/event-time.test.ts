import { describe, expect, it } from 'vitest';

import { parseCombinedLogTime, parseEventTime, parseIsoTime } from '../../src/ingest/index.js';

const utc = (text: string): number => Date.parse(text);

describe('parseIsoTime', () => {
  it('reads UTC times with Z', () => {
    expect(parseIsoTime('2015-05-17T10:05:03Z')).toBe(Date.UTC(2015, 4, 17, 10, 5, 3));
    expect(parseIsoTime('1970-01-01T00:00:00Z')).toBe(0);
    expect(parseIsoTime('1969-12-31T23:59:59Z')).toBe(-1000);
  });

  it('accepts a space or a lower-case t for the T, and a lower-case z', () => {
    expect(parseIsoTime('2015-05-17 10:05:03Z')).toBe(Date.UTC(2015, 4, 17, 10, 5, 3));
    expect(parseIsoTime('2015-05-17t10:05:03z')).toBe(Date.UTC(2015, 4, 17, 10, 5, 3));
  });

  it('applies offsets, moving the instant across day, year and ISO-week boundaries', () => {
    // The first commit of git: 15:13:13 at -07:00 is 22:13:13 UTC.
    expect(parseIsoTime('2005-04-07T15:13:13-07:00')).toBe(utc('2005-04-07T22:13:13Z'));
    // New Year's Eve in Denver is already Monday 2024-01-01 in UTC (a new year and a new week).
    expect(parseIsoTime('2023-12-31T20:00:00-07:00')).toBe(utc('2024-01-01T03:00:00Z'));
    // Early on New Year's Day in Kathmandu is still the old year in UTC.
    expect(parseIsoTime('2024-01-01T03:00:00+05:45')).toBe(utc('2023-12-31T21:15:00Z'));
    expect(parseIsoTime('2024-01-01T12:59:59+13:00')).toBe(utc('2023-12-31T23:59:59Z'));
    // Monday morning in Adelaide is Sunday evening UTC, the previous ISO week.
    expect(parseIsoTime('2024-01-08T05:00:00+09:30')).toBe(utc('2024-01-07T19:30:00Z'));
    expect(parseIsoTime('2024-02-29T23:30:00-01:00')).toBe(utc('2024-03-01T00:30:00Z'));
  });

  it('accepts offsets written as +HH:MM, +HHMM and +HH', () => {
    const expected = utc('2020-06-01T06:30:00Z');

    expect(parseIsoTime('2020-06-01T12:00:00+05:30')).toBe(expected);
    expect(parseIsoTime('2020-06-01T12:00:00+0530')).toBe(expected);
    expect(parseIsoTime('2020-06-01T11:30:00+05')).toBe(expected);
    expect(parseIsoTime('2020-06-01T06:30:00-00:00')).toBe(expected);
  });

  it('truncates fractions to milliseconds and never rounds up', () => {
    expect(parseIsoTime('2015-05-17T00:59:59.999999Z')).toBe(utc('2015-05-17T00:59:59.999Z'));
    expect(parseIsoTime('2024-12-31T23:59:59.9999999999999999999999Z')).toBe(
      utc('2024-12-31T23:59:59.999Z'),
    );
    expect(parseIsoTime('2015-05-17T10:05:03.5Z')).toBe(utc('2015-05-17T10:05:03.500Z'));
    expect(parseIsoTime('2015-05-17T10:05:03.12Z')).toBe(utc('2015-05-17T10:05:03.120Z'));
    expect(parseIsoTime('2015-05-17T10:05:03,250+01:00')).toBe(utc('2015-05-17T09:05:03.250Z'));
    expect(parseIsoTime('1969-12-31T23:59:59.9995Z')).toBe(-1);
  });

  it('knows leap years', () => {
    expect(parseIsoTime('2024-02-29T12:00:00Z')).toBe(utc('2024-02-29T12:00:00Z'));
    expect(parseIsoTime('2000-02-29T00:00:00Z')).toBe(utc('2000-02-29T00:00:00Z'));
    expect(parseIsoTime('2023-02-29T12:00:00Z')).toBeNull();
    expect(parseIsoTime('1900-02-29T12:00:00Z')).toBeNull();
    expect(parseIsoTime('2023-02-28T12:00:00Z')).toBe(utc('2023-02-28T12:00:00Z'));
  });

  it('rejects dates and times that do not exist', () => {
    for (const text of [
      '2023-04-31T00:00:00Z',
      '2023-13-01T00:00:00Z',
      '2023-00-10T00:00:00Z',
      '2023-01-00T00:00:00Z',
      '2023-01-32T00:00:00Z',
      '2023-01-01T24:00:00Z',
      '2023-01-01T23:60:00Z',
      '2016-12-31T23:59:60Z',
      '2023-01-01T00:00:00+24:00',
      '2023-01-01T00:00:00+05:60',
    ]) {
      expect(parseIsoTime(text), text).toBeNull();
    }
  });

  it('rejects times without an offset and text that is not an ISO time', () => {
    for (const text of [
      '2015-05-17T10:05:03',
      '2015-05-17T10:05:03.123',
      '2015-05-17',
      '2015-05-17T10:05Z',
      '2015-05-17T10:05:03Z ',
      ' 2015-05-17T10:05:03Z',
      '2015-05-17T10:05:03.Z',
      '2015-05-17T10:05:03+5:00',
      '2015-05-17T10:05:03+05:0',
      '2015-05-17T10:05:03+05:00:00',
      '2015/05/17T10:05:03Z',
      '2015-05-17X10:05:03Z',
      '20150517T100503Z',
      '2015-5-17T10:05:03Z',
      'yesterday',
      '',
    ]) {
      expect(parseIsoTime(text), text).toBeNull();
    }
  });

  it('reads years before 100 without the two-digit-year shift of Date.UTC', () => {
    expect(parseIsoTime('0050-03-01T00:00:00Z')).toBe(new Date('0050-03-01T00:00:00Z').getTime());
    expect(parseIsoTime('0000-01-01T00:00:00Z')).toBe(new Date('0000-01-01T00:00:00Z').getTime());
  });

  it('agrees with Date for random instants and offsets', () => {
    const offsets = [-720, -600, -420, -210, 0, 60, 330, 345, 570, 630, 780, 840];
    let seed = 12345;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;

      return seed / 2 ** 31;
    };

    for (let n = 0; n < 2000; n++) {
      const ms = Math.floor(
        Date.UTC(1900, 0, 1) + random() * (Date.UTC(2100, 0, 1) - Date.UTC(1900, 0, 1)),
      );
      const offset = offsets[n % offsets.length] ?? 0;
      const local = new Date(ms + offset * 60_000).toISOString().slice(0, 23);
      const sign = offset < 0 ? '-' : '+';
      const hh = String(Math.floor(Math.abs(offset) / 60)).padStart(2, '0');
      const mm = String(Math.abs(offset) % 60).padStart(2, '0');
      const text = `${local}${sign}${hh}:${mm}`;

      expect(parseIsoTime(text), text).toBe(ms);
    }
  });
});

describe('parseCombinedLogTime', () => {
  it('reads Apache request times and applies the offset', () => {
    expect(parseCombinedLogTime('17/May/2015:10:05:03 +0000')).toBe(utc('2015-05-17T10:05:03Z'));
    expect(parseCombinedLogTime('17/May/2015:10:05:03 -0700')).toBe(utc('2015-05-17T17:05:03Z'));
    expect(parseCombinedLogTime('01/Jan/2016:01:00:00 +0200')).toBe(utc('2015-12-31T23:00:00Z'));
    expect(parseCombinedLogTime('29/Feb/2016:12:00:00 +0545')).toBe(utc('2016-02-29T06:15:00Z'));
  });

  it('reads every English month name', () => {
    const names = [
      'Jan',
      'Feb',
      'Mar',
      'Apr',
      'May',
      'Jun',
      'Jul',
      'Aug',
      'Sep',
      'Oct',
      'Nov',
      'Dec',
    ];

    names.forEach((name, index) => {
      expect(parseCombinedLogTime(`10/${name}/2020:00:00:00 +0000`)).toBe(
        Date.UTC(2020, index, 10),
      );
    });
  });

  it('rejects text that is not a combined-log time', () => {
    for (const text of [
      '17/Mai/2015:10:05:03 +0000',
      '31/Apr/2015:10:05:03 +0000',
      '29/Feb/2015:10:05:03 +0000',
      '17/May/2015:24:05:03 +0000',
      '17/May/2015:10:05:03',
      '17/May/2015 10:05:03 +0000',
      '17/05/2015:10:05:03 +0000',
      '2015-05-17T10:05:03Z',
      '',
    ]) {
      expect(parseCombinedLogTime(text), text).toBeNull();
    }
  });
});

describe('parseEventTime', () => {
  const t = Date.UTC(2015, 4, 17, 10, 5, 3);

  it('reads iso only from strings', () => {
    expect(parseEventTime('2015-05-17T10:05:03Z', 'iso')).toBe(t);
    expect(parseEventTime('2015-05-17T12:05:03+02:00', 'iso')).toBe(t);
    expect(parseEventTime(t, 'iso')).toBeNull();
    expect(parseEventTime('1431857103', 'iso')).toBeNull();
  });

  it('reads epoch seconds from numbers and digit strings, truncating to milliseconds', () => {
    expect(parseEventTime(1431857103, 'epoch-s')).toBe(t);
    expect(parseEventTime('1431857103', 'epoch-s')).toBe(t);
    expect(parseEventTime(1431857103.123, 'epoch-s')).toBe(t + 123);
    expect(parseEventTime('1431857103.1239', 'epoch-s')).toBe(t + 123);
    expect(parseEventTime('1431857103.5', 'epoch-s')).toBe(t + 500);
    expect(parseEventTime('-1.5', 'epoch-s')).toBe(-1500);
    expect(parseEventTime('-1.0005', 'epoch-s')).toBe(-1001);
    expect(parseEventTime(0, 'epoch-s')).toBe(0);
    expect(parseEventTime('2015-05-17T10:05:03Z', 'epoch-s')).toBeNull();
  });

  it('reads epoch milliseconds from numbers and digit strings', () => {
    expect(parseEventTime(1431857103123, 'epoch-ms')).toBe(t + 123);
    expect(parseEventTime('1431857103123', 'epoch-ms')).toBe(t + 123);
    expect(parseEventTime(1431857103123.9, 'epoch-ms')).toBe(t + 123);
    expect(parseEventTime('-86400000', 'epoch-ms')).toBe(-86_400_000);
  });

  it('returns huge times as finite numbers instead of failing', () => {
    // A nanosecond timestamp read as milliseconds: later stages reject it as future.
    expect(parseEventTime(1587556800000000000, 'epoch-ms')).toBe(1.5875568e18);
    expect(parseEventTime('1587556800000000000', 'epoch-ms')).toBe(1.5875568e18);
    expect(parseEventTime(1587556800000000000, 'auto')).toBe(1.5875568e18);
    expect(parseEventTime('1587556800000000000', 'auto')).toBe(1.5875568e18);
    expect(parseEventTime(1e300, 'epoch-s')).toBe(1e300 * 1000);
  });

  it('decides seconds or milliseconds by magnitude under auto', () => {
    expect(parseEventTime(1431857103, 'auto')).toBe(t);
    expect(parseEventTime('1431857103', 'auto')).toBe(t);
    expect(parseEventTime(1431857103123, 'auto')).toBe(t + 123);
    expect(parseEventTime('1431857103123', 'auto')).toBe(t + 123);
    expect(parseEventTime(99_999_999_999, 'auto')).toBe(99_999_999_999_000);
    expect(parseEventTime(100_000_000_000, 'auto')).toBe(100_000_000_000);
    expect(parseEventTime(-100_000_000_000, 'auto')).toBe(-100_000_000_000);
    expect(parseEventTime('2015-05-17T10:05:03Z', 'auto')).toBe(t);
    expect(parseEventTime('2015-05-17T10:05:03', 'auto')).toBeNull();
  });

  it('returns null for values that are no time', () => {
    for (const format of ['iso', 'epoch-s', 'epoch-ms', 'auto'] as const) {
      for (const value of [
        NaN,
        Infinity,
        -Infinity,
        true,
        false,
        null,
        undefined,
        {},
        [],
        '',
        ' ',
      ]) {
        expect(parseEventTime(value, format), `${String(value)} as ${format}`).toBeNull();
      }
    }
    expect(parseEventTime('1e9', 'epoch-s')).toBeNull();
    expect(parseEventTime(' 1431857103', 'epoch-s')).toBeNull();
    expect(parseEventTime('+1431857103', 'epoch-s')).toBeNull();
    expect(parseEventTime('1431857103.', 'epoch-s')).toBeNull();
    expect(parseEventTime('1'.repeat(400), 'epoch-ms')).toBeNull();
    expect(parseEventTime(1.7e308, 'epoch-s')).toBeNull();
  });
});
