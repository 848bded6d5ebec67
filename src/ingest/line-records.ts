import type { BatchBuilder, RecordParser } from './batch-builder.js';
import { describeTimeProblem, eventTimeMsOf, parseCombinedLogTimeAt } from './event-time.js';
import type { TimeFormat } from './types.js';
import { isWhitespaceCode, jsonKindOf, readUserId, userIdTextProblem } from './user-id.js';

// A const enum, which the compiler inlines: reading a module-level const of an
// ES module costs a temporal-dead-zone check each time (see event-time.ts).
const enum Char {
  CarriageReturn = 13,
  Space = 32,
  OpenBracket = 91,
  CloseBracket = 93,
}

/** Whether `[start, end)` of `text` holds nothing but white space. */
function isBlank(text: string, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    if (!isWhitespaceCode(text.charCodeAt(i))) {
      return false;
    }
  }

  return true;
}

/**
 * A parser for formats with one record per line. It splits the text on LF
 * (dropping a CR before it), numbers the lines from 1, skips blank lines and
 * the lines up to `skipThroughLine`, and hands every other line to
 * {@link LineParser.parseLine}.
 */
abstract class LineParser implements RecordParser {
  line = 0;

  constructor(
    protected readonly builder: BatchBuilder,
    private readonly skipThroughLine: number,
  ) {}

  consume(text: string, pos: number, final: boolean): number {
    const builder = this.builder;
    while (!builder.full && pos < text.length) {
      let next = text.indexOf('\n', pos);
      if (next === -1) {
        if (!final) {
          return pos;
        }
        next = text.length;
      }

      let end = next;
      if (end > pos && text.charCodeAt(end - 1) === Char.CarriageReturn) {
        end--;
      }

      const line = ++this.line;
      if (line > this.skipThroughLine && !isBlank(text, pos, end)) {
        this.parseLine(text, pos, end, line);
      }
      pos = next + 1;
    }

    return Math.min(pos, text.length);
  }

  /** Parses the line `[start, end)` of `text` (no line end) into the builder. */
  protected abstract parseLine(text: string, start: number, end: number, line: number): void;
}

/** Where the fields of an NDJSON record are. */
export interface NdjsonFields {
  readonly userId: (record: unknown) => unknown;
  readonly eventTime: (record: unknown) => unknown;
  readonly receiveTime: ((record: unknown) => unknown) | null;
  readonly eventId: ((record: unknown) => unknown) | null;
}

/** Reads newline-delimited JSON: one object per line. */
export class NdjsonParser extends LineParser {
  constructor(
    builder: BatchBuilder,
    skipThroughLine: number,
    private readonly fields: NdjsonFields,
    private readonly timeFormat: TimeFormat,
    private readonly receiveTimeFormat: TimeFormat,
  ) {
    super(builder, skipThroughLine);
  }

  protected parseLine(text: string, start: number, end: number, line: number): void {
    const raw = text.slice(start, end);
    let record: unknown;
    try {
      record = JSON.parse(raw);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.builder.reject(line, 'malformed', `not valid JSON: ${message}`, raw);

      return;
    }

    if (typeof record !== 'object' || record === null || Array.isArray(record)) {
      const detail = `a record must be a JSON object, got ${jsonKindOf(record)}`;
      this.builder.reject(line, 'malformed', detail, raw);

      return;
    }

    this.addRecord(record, line, raw);
  }

  private addRecord(record: object, line: number, raw: string): void {
    const fields = this.fields;

    // The user id is checked first: a record with neither a user id nor a time is invalid_user_id.
    const userValue = fields.userId(record);
    let userId: string;
    if (typeof userValue === 'string') {
      // The same checks as every other input, so that a file and the Ingest service agree.
      const problem = userIdTextProblem(userValue, 0, userValue.length);
      if (problem !== undefined) {
        this.builder.reject(line, 'invalid_user_id', problem, raw);

        return;
      }
      userId = userValue;
    } else {
      const result = readUserId(userValue);
      if (!result.ok) {
        this.builder.reject(line, 'invalid_user_id', result.detail, raw);

        return;
      }
      userId = result.userId;
    }

    const timeValue = fields.eventTime(record);
    const eventTimeMs = eventTimeMsOf(timeValue, this.timeFormat);
    if (Number.isNaN(eventTimeMs)) {
      const detail = describeTimeProblem(timeValue, this.timeFormat);
      this.builder.reject(line, 'invalid_time', detail, raw);

      return;
    }

    // No receive time (absent, null, empty) is allowed: the event takes the one before it.
    // One that is there but unreadable is a broken record, not a missing time.
    let receiveTimeMs = NaN;
    const receiveValue = fields.receiveTime === null ? undefined : fields.receiveTime(record);
    if (receiveValue !== undefined && receiveValue !== null && receiveValue !== '') {
      receiveTimeMs = eventTimeMsOf(receiveValue, this.receiveTimeFormat);
      if (Number.isNaN(receiveTimeMs)) {
        const detail = describeTimeProblem(receiveValue, this.receiveTimeFormat, 'receive time');
        this.builder.reject(line, 'invalid_time', detail, raw);

        return;
      }
    }
    const eventId = fields.eventId === null ? undefined : eventIdText(fields.eventId(record));
    this.builder.add(userId, eventTimeMs, receiveTimeMs, line, eventId);
  }
}

/** The event id of a JSON value: a non-empty string as is, a finite number as its text. */
function eventIdText(value: unknown): string | undefined {
  if (typeof value === 'string') {
    return value.length > 0 ? value : undefined;
  }

  return typeof value === 'number' && Number.isFinite(value) ? String(value) : undefined;
}

/**
 * Reads Apache/Nginx combined (and common) log lines. The client address,
 * the first token, is the user; the bracketed request time is the event time.
 * A line must start like `^(\S+) \S+ \S+ \[([^\]]+)\]`.
 */
export class CombinedLogParser extends LineParser {
  protected parseLine(text: string, start: number, end: number, line: number): void {
    // client ident authuser [
    const userEnd = tokenEnd(text, start, end);
    const identEnd = userEnd < 0 ? -1 : tokenEnd(text, userEnd + 1, end);
    const authEnd = identEnd < 0 ? -1 : tokenEnd(text, identEnd + 1, end);
    const open = authEnd + 1;
    if (authEnd < 0 || open >= end || text.charCodeAt(open) !== Char.OpenBracket) {
      const detail = `not a combined log line: expected 'client ident user [time]'`;
      this.builder.reject(line, 'malformed', detail, text.slice(start, end));

      return;
    }

    let close = open + 1;
    while (close < end && text.charCodeAt(close) !== Char.CloseBracket) {
      close++;
    }
    if (close >= end || close === open + 1) {
      const detail = 'not a combined log line: the [time] has no closing bracket';
      this.builder.reject(line, 'malformed', detail, text.slice(start, end));

      return;
    }

    const eventTimeMs = parseCombinedLogTimeAt(text, open + 1, close);
    if (Number.isNaN(eventTimeMs)) {
      const shown = text.slice(open + 1, Math.min(close, open + 65));
      const detail = `request time '${shown}' is not dd/Mon/yyyy:HH:MM:SS +zzzz`;
      this.builder.reject(line, 'invalid_time', detail, text.slice(start, end));

      return;
    }

    const userProblem = userIdTextProblem(text, start, userEnd);
    if (userProblem !== undefined) {
      this.builder.reject(line, 'invalid_user_id', userProblem, text.slice(start, end));
      return;
    }
    this.builder.add(text.slice(start, userEnd), eventTimeMs, NaN, line, undefined);
  }
}

/**
 * End of the non-empty token of non-space characters that starts at `start`
 * and is followed by a space, or -1 when there is no such token before `end`.
 */
function tokenEnd(text: string, start: number, end: number): number {
  let i = start;
  while (i < end && !isWhitespaceCode(text.charCodeAt(i))) {
    i++;
  }

  return i > start && i < end && text.charCodeAt(i) === Char.Space ? i : -1;
}
