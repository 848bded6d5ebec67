import type { TimeFormat } from './types.js';

/**
 * Event-time parsing. Every parser returns integer epoch milliseconds, with
 * sub-millisecond digits dropped (the instant moves to the start of its
 * millisecond, never rounded up into the next one).
 *
 * The `...At` variants read a stretch `[start, end)` of a larger string, so
 * that the readers can parse a time where it lies in the input chunk without
 * slicing it out first. They return NaN, not null, for text they cannot read,
 * which keeps the hot path free of boxed values.
 */

// Named numbers of the hot path live in const enums, which the compiler
// inlines. A module-level const of an ES module is read through a
// temporal-dead-zone check on every access from a function; with consts
// here the ISO parser measured about twice as slow.

const enum Ms {
  Minute = 60_000,
  Hour = 3_600_000,
  Day = 86_400_000,
}

const enum Char {
  Zero = 48,
  Plus = 43,
  Comma = 44,
  Minus = 45,
  Dot = 46,
  Slash = 47,
  Colon = 58,
  Space = 32,
  UpperT = 84,
  UpperZ = 90,
  LowerT = 116,
  LowerZ = 122,
}

const enum Limits {
  /** Shortest ISO text we accept: `YYYY-MM-DDTHH:MM:SSZ`. */
  MinIso = 20,
  /** A combined-log time: `17/May/2015:10:05:03 +0000`. */
  CombinedTime = 26,
  /** Days in 400 Gregorian years: shifting a date by 400 years keeps its leap rules. */
  DaysPer400Years = 146_097,
  DayCacheSlots = 4096,
  /** Under `auto`, numbers of at least this magnitude are milliseconds, smaller ones seconds. */
  AutoMsThreshold = 1e11,
}

/**
 * A direct-mapped cache of calendar days: slot by day number (consecutive
 * days land in consecutive slots), tag by the packed date, value the day's
 * epoch ms. Event files are roughly in time order, so nearly every lookup
 * hits. It is one object, read once per call, because each read of a
 * module-level const is checked (see above).
 */
const dayCache = {
  tags: new Int32Array(Limits.DayCacheSlots).fill(-1),
  startMs: new Float64Array(Limits.DayCacheSlots),
};

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** The value of the digit at `i`, or -1 when it is not an ASCII digit. */
function digitAt(text: string, i: number): number {
  const d = text.charCodeAt(i) - Char.Zero;

  return d >= 0 && d <= 9 ? d : -1;
}

/** The two-digit number at `i`, or -1 when either character is not a digit. */
function twoDigitsAt(text: string, i: number): number {
  const high = digitAt(text, i);
  const low = digitAt(text, i + 1);

  return high < 0 || low < 0 ? -1 : high * 10 + low;
}

function isLeapYear(year: number): boolean {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
}

/** Epoch ms of midnight UTC of a calendar date, or NaN when the date does not exist. */
function dayStartMs(year: number, month: number, day: number): number {
  if (month < 1 || month > 12 || day < 1) {
    return NaN;
  }

  const packed = year * 10_000 + month * 100 + day;
  const slot = ((year * 12 + month - 1) * 31 + day - 1) % Limits.DayCacheSlots;
  const cache = dayCache;
  if (cache.tags[slot] === packed) {
    return cache.startMs[slot] ?? NaN;
  }

  const monthDays = month === 2 && isLeapYear(year) ? 29 : (DAYS_IN_MONTH[month - 1] ?? 0);
  if (day > monthDays) {
    return NaN;
  }

  // Date.UTC maps years 0-99 to 1900-1999; go 400 years up and come back.
  const ms =
    year < 100
      ? Date.UTC(year + 400, month - 1, day) - Limits.DaysPer400Years * Ms.Day
      : Date.UTC(year, month - 1, day);
  cache.tags[slot] = packed;
  cache.startMs[slot] = ms;

  return ms;
}

/** Whether `d` (a char code minus `Char.Zero`) is not a decimal digit; negatives wrap to huge. */
function notDigit(d: number): boolean {
  return d >>> 0 > 9;
}

/**
 * Reads `[start, end)` of `text` as ISO-8601 with a UTC offset; see
 * {@link parseIsoTime}. Returns NaN when the text is not such a time.
 *
 * Written flat for speed: all fixed-position characters are read first and
 * checked together, which measured twice as fast as a helper per field.
 */
export function parseIsoTimeAt(text: string, start: number, end: number): number {
  if (end - start < Limits.MinIso || end > text.length) {
    return NaN;
  }

  // YYYY-MM-DDTHH:MM:SS, digit by digit.
  const y1 = text.charCodeAt(start) - Char.Zero;
  const y2 = text.charCodeAt(start + 1) - Char.Zero;
  const y3 = text.charCodeAt(start + 2) - Char.Zero;
  const y4 = text.charCodeAt(start + 3) - Char.Zero;
  const mo1 = text.charCodeAt(start + 5) - Char.Zero;
  const mo2 = text.charCodeAt(start + 6) - Char.Zero;
  const d1 = text.charCodeAt(start + 8) - Char.Zero;
  const d2 = text.charCodeAt(start + 9) - Char.Zero;
  const h1 = text.charCodeAt(start + 11) - Char.Zero;
  const h2 = text.charCodeAt(start + 12) - Char.Zero;
  const mi1 = text.charCodeAt(start + 14) - Char.Zero;
  const mi2 = text.charCodeAt(start + 15) - Char.Zero;
  const s1 = text.charCodeAt(start + 17) - Char.Zero;
  const s2 = text.charCodeAt(start + 18) - Char.Zero;
  if (
    notDigit(y1) ||
    notDigit(y2) ||
    notDigit(y3) ||
    notDigit(y4) ||
    notDigit(mo1) ||
    notDigit(mo2) ||
    notDigit(d1) ||
    notDigit(d2) ||
    notDigit(h1) ||
    notDigit(h2) ||
    notDigit(mi1) ||
    notDigit(mi2) ||
    notDigit(s1) ||
    notDigit(s2)
  ) {
    return NaN;
  }

  // The separators; a space or a lower-case t may stand for the T.
  const separator = text.charCodeAt(start + 10);
  if (
    text.charCodeAt(start + 4) !== Char.Minus ||
    text.charCodeAt(start + 7) !== Char.Minus ||
    text.charCodeAt(start + 13) !== Char.Colon ||
    text.charCodeAt(start + 16) !== Char.Colon ||
    (separator !== Char.UpperT && separator !== Char.Space && separator !== Char.LowerT)
  ) {
    return NaN;
  }

  const hour = h1 * 10 + h2;
  const minute = mi1 * 10 + mi2;
  const second = s1 * 10 + s2;
  if (hour > 23 || minute > 59 || second > 59) {
    return NaN;
  }

  // Optional fraction: keep three digits, drop the rest.
  let i = start + 19;
  let fractionMs = 0;
  const mark = text.charCodeAt(i);
  if (mark === Char.Dot || mark === Char.Comma) {
    const fractionStart = ++i;
    for (let scale = 100; i < end; i++) {
      const d = text.charCodeAt(i) - Char.Zero;
      if (notDigit(d)) {
        break;
      }
      fractionMs += d * scale;
      scale = scale === 1 ? 0 : scale / 10;
    }
    if (i === fractionStart) {
      return NaN;
    }
  }

  const offsetMinutes = offsetMinutesAt(text, i, end);
  if (Number.isNaN(offsetMinutes)) {
    return NaN;
  }

  const year = y1 * 1000 + y2 * 100 + y3 * 10 + y4;
  const dayMs = dayStartMs(year, mo1 * 10 + mo2, d1 * 10 + d2);

  return (
    dayMs +
    hour * Ms.Hour +
    minute * Ms.Minute +
    second * 1000 +
    fractionMs -
    offsetMinutes * Ms.Minute
  );
}

/**
 * Reads a zone designator that must fill `[i, end)` exactly: `Z`, `+HH:MM`,
 * `+HHMM` or `+HH` (or `-`). Returns minutes east of UTC, or NaN.
 */
function offsetMinutesAt(text: string, i: number, end: number): number {
  if (i >= end) {
    return NaN;
  }

  const sign = text.charCodeAt(i);
  if (sign === Char.UpperZ || sign === Char.LowerZ) {
    return i + 1 === end ? 0 : NaN;
  }

  if (sign !== Char.Plus && sign !== Char.Minus) {
    return NaN;
  }

  // HH, then MM after an optional colon, or nothing.
  const rest = end - i - 1;
  const h1 = text.charCodeAt(i + 1) - Char.Zero;
  const h2 = text.charCodeAt(i + 2) - Char.Zero;
  let m1 = 0;
  let m2 = 0;
  if (rest === 5 && text.charCodeAt(i + 3) === Char.Colon) {
    m1 = text.charCodeAt(i + 4) - Char.Zero;
    m2 = text.charCodeAt(i + 5) - Char.Zero;
  } else if (rest === 4) {
    m1 = text.charCodeAt(i + 3) - Char.Zero;
    m2 = text.charCodeAt(i + 4) - Char.Zero;
  } else if (rest !== 2) {
    return NaN;
  }

  if (notDigit(h1) || notDigit(h2) || notDigit(m1) || notDigit(m2)) {
    return NaN;
  }

  const hours = h1 * 10 + h2;
  const minutes = m1 * 10 + m2;
  if (hours > 23 || minutes > 59) {
    return NaN;
  }

  const total = hours * 60 + minutes;

  return sign === Char.Minus ? -total : total;
}

/**
 * Reads ISO-8601 / RFC 3339 date-time text with an explicit UTC offset:
 * `YYYY-MM-DDTHH:MM:SS`, an optional fraction of any length, then `Z` or
 * `+HH:MM`, `+HHMM`, `+HH` (or `-`). A space may stand for the `T`.
 *
 * The fraction is truncated to milliseconds (`.999999` is `.999`). Text
 * without an offset is refused, because its instant is ambiguous; so are
 * dates and times that do not exist (2023-02-29, 24:00:00, leap second 60).
 *
 * @returns epoch milliseconds, or null when `text` is not such a time
 */
export function parseIsoTime(text: string): number | null {
  const ms = parseIsoTimeAt(text, 0, text.length);

  return Number.isNaN(ms) ? null : ms;
}

/** Month number 1-12 of a three-letter English month name (any letter case), or -1. */
function monthOfName(text: string, i: number): number {
  // Set the ASCII lower-case bit and pack the three letters into one number.
  const key =
    ((text.charCodeAt(i) | 0x20) << 16) |
    ((text.charCodeAt(i + 1) | 0x20) << 8) |
    (text.charCodeAt(i + 2) | 0x20);
  switch (key) {
    case 0x6a616e: // jan
      return 1;
    case 0x666562: // feb
      return 2;
    case 0x6d6172: // mar
      return 3;
    case 0x617072: // apr
      return 4;
    case 0x6d6179: // may
      return 5;
    case 0x6a756e: // jun
      return 6;
    case 0x6a756c: // jul
      return 7;
    case 0x617567: // aug
      return 8;
    case 0x736570: // sep
      return 9;
    case 0x6f6374: // oct
      return 10;
    case 0x6e6f76: // nov
      return 11;
    case 0x646563: // dec
      return 12;
    default:
      return -1;
  }
}

/**
 * Reads `[start, end)` of `text` as a combined-log time; see
 * {@link parseCombinedLogTime}. Returns NaN when it is not one.
 */
export function parseCombinedLogTimeAt(text: string, start: number, end: number): number {
  if (end - start !== Limits.CombinedTime || end > text.length) {
    return NaN;
  }

  // dd/Mon/yyyy:HH:MM:SS +zzzz
  const day = twoDigitsAt(text, start);
  const month = monthOfName(text, start + 3);
  const yearHigh = twoDigitsAt(text, start + 7);
  const yearLow = twoDigitsAt(text, start + 9);
  const hour = twoDigitsAt(text, start + 12);
  const minute = twoDigitsAt(text, start + 15);
  const second = twoDigitsAt(text, start + 18);
  if (
    day < 0 ||
    month < 0 ||
    yearHigh < 0 ||
    yearLow < 0 ||
    hour < 0 ||
    hour > 23 ||
    minute < 0 ||
    minute > 59 ||
    second < 0 ||
    second > 59 ||
    text.charCodeAt(start + 2) !== Char.Slash ||
    text.charCodeAt(start + 6) !== Char.Slash ||
    text.charCodeAt(start + 11) !== Char.Colon ||
    text.charCodeAt(start + 14) !== Char.Colon ||
    text.charCodeAt(start + 17) !== Char.Colon ||
    text.charCodeAt(start + 20) !== Char.Space
  ) {
    return NaN;
  }

  const offsetMinutes = offsetMinutesAt(text, start + 21, end);
  if (Number.isNaN(offsetMinutes)) {
    return NaN;
  }

  const dayMs = dayStartMs(yearHigh * 100 + yearLow, month, day);

  return dayMs + hour * Ms.Hour + minute * Ms.Minute + second * 1000 - offsetMinutes * Ms.Minute;
}

/**
 * Reads an Apache/Nginx combined-log request time, the text between the
 * brackets: `17/May/2015:10:05:03 +0000` (`%d/%b/%Y:%H:%M:%S %z`, English
 * month names). The offset is applied, so the result is the UTC instant.
 *
 * @returns epoch milliseconds, or null when `text` is not such a time
 */
export function parseCombinedLogTime(text: string): number | null {
  const ms = parseCombinedLogTimeAt(text, 0, text.length);

  return Number.isNaN(ms) ? null : ms;
}

/** Unit of an epoch number: 1 for milliseconds, 1000 for seconds, 0 to decide by magnitude. */
type EpochUnit = 0 | 1 | 1000;

/**
 * Reads `[start, end)` as a plain decimal number of epoch seconds or
 * milliseconds (`-?digits(.digits)?`) and returns epoch ms, rounded down to a
 * whole millisecond. Returns NaN for other text or a result that is not finite.
 */
export function parseEpochTextAt(
  text: string,
  start: number,
  end: number,
  unit: EpochUnit,
): number {
  let i = start;
  const negative = i < end && text.charCodeAt(i) === Char.Minus;
  if (negative) {
    i++;
  }

  // Whole part. Long digit runs go through Number() so that they round once, correctly.
  const wholeStart = i;
  let whole = 0;
  for (let d = digitAt(text, i); i < end && d >= 0; d = digitAt(text, ++i)) {
    whole = whole * 10 + d;
  }
  if (i === wholeStart) {
    return NaN;
  }
  if (i - wholeStart > 15) {
    whole = Number(text.slice(wholeStart, i));
  }

  const unitMs = unit !== 0 ? unit : whole >= Limits.AutoMsThreshold ? 1 : 1000;

  // Fraction: the digits that still count as whole milliseconds, and whether any finer one is set.
  let fractionMs = 0;
  let belowMs = false;
  if (i < end) {
    if (text.charCodeAt(i) !== Char.Dot) {
      return NaN;
    }

    i++;
    const fractionStart = i;
    let scale = unitMs / 10;
    for (let d = digitAt(text, i); i < end && d >= 0; d = digitAt(text, ++i)) {
      if (scale >= 1) {
        fractionMs += d * scale;
      } else if (d !== 0) {
        belowMs = true;
      }
      scale /= 10;
    }
    if (i === fractionStart || i !== end) {
      return NaN;
    }
  }

  const magnitude = whole * unitMs + fractionMs;
  // Rounding down: a negative instant with sub-millisecond digits lies in the millisecond before.
  const ms = negative ? -magnitude - (belowMs ? 1 : 0) : magnitude;
  if (!Number.isFinite(ms)) {
    return NaN;
  }

  return ms === 0 ? 0 : ms;
}

/** Epoch ms of a JSON number in `unit`, rounded down to a whole millisecond; NaN if not finite. */
function epochNumberToMs(value: number, unit: EpochUnit): number {
  if (!Number.isFinite(value)) {
    return NaN;
  }

  const unitMs = unit !== 0 ? unit : Math.abs(value) >= Limits.AutoMsThreshold ? 1 : 1000;
  if (Number.isInteger(value)) {
    const ms = value * unitMs;

    return Number.isFinite(ms) ? ms + 0 : NaN;
  }

  if (unitMs === 1) {
    return Math.floor(value) + 0;
  }

  // Multiplying 1587556800.123 by 1000 may land just below ...123; read the
  // shortest decimal text of the number instead, which is what the JSON said.
  const text = String(value);
  if (text.includes('e')) {
    return Math.floor(value * unitMs) + 0;
  }

  return parseEpochTextAt(text, 0, text.length, unitMs);
}

/**
 * Reads `[start, end)` of `text` as an event time in `format`; see
 * {@link parseEventTime}. Returns NaN when it cannot.
 */
export function parseTimeTextAt(
  text: string,
  start: number,
  end: number,
  format: TimeFormat,
): number {
  switch (format) {
    case 'iso':
      return parseIsoTimeAt(text, start, end);
    case 'epoch-s':
      return parseEpochTextAt(text, start, end, 1000);
    case 'epoch-ms':
      return parseEpochTextAt(text, start, end, 1);
    case 'auto': {
      const epochMs = parseEpochTextAt(text, start, end, 0);

      return Number.isNaN(epochMs) ? parseIsoTimeAt(text, start, end) : epochMs;
    }
  }
}

/**
 * Reads a JSON value (string or number) as an event time in `format`; see
 * {@link parseEventTime}. Returns NaN when it cannot.
 */
export function eventTimeMsOf(value: unknown, format: TimeFormat): number {
  if (typeof value === 'string') {
    return parseTimeTextAt(value, 0, value.length, format);
  }

  if (typeof value !== 'number') {
    return NaN;
  }

  switch (format) {
    case 'iso':
      return NaN;
    case 'epoch-s':
      return epochNumberToMs(value, 1000);
    case 'epoch-ms':
      return epochNumberToMs(value, 1);
    case 'auto':
      return epochNumberToMs(value, 0);
  }
}

/**
 * Reads an event time from a JSON value or a CSV field.
 *
 * - `iso`: a string, read by {@link parseIsoTime}.
 * - `epoch-s`, `epoch-ms`: a JSON number, or a string of digits with an
 *   optional leading `-` and an optional fraction.
 * - `auto`: ISO text as `iso`; a number or digit string as `epoch-ms` when
 *   its magnitude is at least 1e11, else as `epoch-s`.
 *
 * Sub-millisecond parts are dropped (rounded down). The result can lie far
 * outside the range of a Date, e.g. a nanosecond timestamp read as
 * milliseconds comes back as about 1.6e18; later stages reject such times.
 *
 * @returns epoch milliseconds, or null for text that does not fit the format,
 *   non-finite numbers, and values that are neither strings nor numbers
 */
export function parseEventTime(value: unknown, format: TimeFormat): number | null {
  const ms = eventTimeMsOf(value, format);

  return Number.isNaN(ms) ? null : ms;
}

const TIME_FORMAT_NAMES: Record<TimeFormat, string> = {
  iso: 'ISO-8601 text with Z or a UTC offset',
  'epoch-s': 'a number of epoch seconds',
  'epoch-ms': 'a number of epoch milliseconds',
  auto: 'ISO-8601 text with Z or a UTC offset, or an epoch number',
};

/** Why `value` could not be read as an event time in `format`, for reject details. */
export function describeTimeProblem(
  value: unknown,
  format: TimeFormat,
  what = 'event time',
): string {
  if (value === undefined) {
    return `${what} is missing`;
  }

  if (value === null) {
    return `${what} is null`;
  }

  if (value === '') {
    return `${what} is empty`;
  }

  if (typeof value === 'string') {
    const shown = value.length > 64 ? `${value.slice(0, 64)}...` : value;

    return `${what} '${shown}' is not ${TIME_FORMAT_NAMES[format]}`;
  }

  if (typeof value === 'number') {
    return `${what} ${value} is not ${TIME_FORMAT_NAMES[format]}`;
  }

  const kind = Array.isArray(value) ? 'array' : typeof value;

  return `${what} must be a string or a number, got ${kind}`;
}
