import type { BatchBuilder, RecordParser } from './batch-builder.js';
import { describeTimeProblem, parseTimeTextAt } from './event-time.js';
import type { TimeFormat } from './types.js';
import { userIdTextProblem } from './user-id.js';

// Const enums, which the compiler inlines: reading a module-level const of an
// ES module costs a temporal-dead-zone check each time (see event-time.ts).

const enum Char {
  LineFeed = 10,
  CarriageReturn = 13,
  Quote = 34,
  Comma = 44,
}

/** Header column names of the fields an event is made of. */
export interface CsvColumns {
  readonly userId: string;
  readonly eventTime: string;
  readonly receiveTime: string | undefined;
  readonly eventId: string | undefined;
}

/** The fields an event is made of, by slot. */
const enum Slot {
  User = 0,
  Time = 1,
  Receive = 2,
  EventId = 3,
  Count = 4,
}

/** A record could not be finished because the text ends first; more text is needed. */
const enum Scan {
  Incomplete = -1,
}

/**
 * Reads CSV as in RFC 4180: a header row, then one record per line, fields
 * separated by commas; a field in double quotes may hold commas, line ends
 * and `""` for a quote. A quote inside an unquoted field is taken literally.
 *
 * Most lines hold no quote at all. Those are split in place with indexOf and
 * their fields parsed where they lie, without copying; only a record that
 * contains a quote goes through the character-by-character path.
 */
export class CsvParser implements RecordParser {
  line = 0;

  /** Header column names, once the header is read. */
  private header: string[] | null = null;
  /** Column index of each slot, -1 for a slot that is not configured. */
  private readonly slotColumn = new Int32Array(Slot.Count).fill(-1);

  // Where each slot's value lies: in the chunk (fast path) or in a field string (quoted path).
  private readonly slotText: string[] = ['', '', '', ''];
  private readonly slotStart = new Int32Array(Slot.Count);
  private readonly slotEnd = new Int32Array(Slot.Count);

  // Field bounds of the current unquoted line, per column.
  private columnStart = new Int32Array(0);
  private columnEnd = new Int32Array(0);

  // Field values of the current quoted record.
  private readonly values: string[] = [];

  // Next quote and comma at or after the read position in the text, Infinity when none.
  private nextQuote = -1;
  private nextComma = -1;

  constructor(
    private readonly source: string,
    private readonly builder: BatchBuilder,
    private readonly skipThroughLine: number,
    private readonly columns: CsvColumns,
    private readonly timeFormat: TimeFormat,
    private readonly receiveTimeFormat: TimeFormat,
  ) {}

  consume(text: string, pos: number, final: boolean): number {
    // A new text always comes with pos 0; forget where quotes and commas were in the old one.
    if (pos === 0) {
      this.nextQuote = -1;
      this.nextComma = -1;
    }

    const builder = this.builder;
    while (!builder.full && pos < text.length) {
      let next = text.indexOf('\n', pos);
      if (next === -1) {
        if (!final) {
          return pos;
        }
        next = text.length;
      }

      if (this.nextQuote < pos) {
        const quote = text.indexOf('"', pos);
        this.nextQuote = quote === -1 ? Infinity : quote;
      }

      if (this.nextQuote < next) {
        const after = this.readQuotedRecord(text, pos, final);
        if (after === Scan.Incomplete) {
          return pos;
        }
        pos = after;
      } else {
        let end = next;
        if (end > pos && text.charCodeAt(end - 1) === Char.CarriageReturn) {
          end--;
        }
        this.readPlainLine(text, pos, end, ++this.line);
        pos = next + 1;
      }
    }

    return Math.min(pos, text.length);
  }

  /** Reads one physical line `[start, end)` that holds no quote. */
  private readPlainLine(text: string, start: number, end: number, line: number): void {
    if (start === end) {
      return;
    }

    if (this.header === null) {
      this.readHeader(text.slice(start, end).split(','));

      return;
    }

    if (line <= this.skipThroughLine) {
      return;
    }

    const fieldCount = this.splitPlainLine(text, start, end);
    if (fieldCount !== this.header.length) {
      this.rejectFieldCount(line, fieldCount, text.slice(start, end));

      return;
    }

    for (let slot = 0; slot < Slot.Count; slot++) {
      const column = this.slotColumn[slot] ?? -1;
      if (column >= 0) {
        this.slotText[slot] = text;
        this.slotStart[slot] = this.columnStart[column] ?? 0;
        this.slotEnd[slot] = this.columnEnd[column] ?? 0;
      }
    }
    this.addEvent(line, text, start, end);
  }

  /**
   * Finds the fields of the plain line `[start, end)` and notes the bounds
   * of the first header-count of them. Returns how many fields there are.
   */
  private splitPlainLine(text: string, start: number, end: number): number {
    const columnCount = this.columnStart.length;
    let fieldCount = 0;
    let fieldStart = start;
    for (;;) {
      if (this.nextComma < fieldStart) {
        const comma = text.indexOf(',', fieldStart);
        this.nextComma = comma === -1 ? Infinity : comma;
      }

      const fieldEnd = this.nextComma < end ? this.nextComma : end;
      if (fieldCount < columnCount) {
        this.columnStart[fieldCount] = fieldStart;
        this.columnEnd[fieldCount] = fieldEnd;
      }
      fieldCount++;

      if (fieldEnd === end) {
        return fieldCount;
      }
      fieldStart = fieldEnd + 1;
    }
  }

  /**
   * Reads one record that contains a quote, starting at `start`; it may run
   * over several lines. Returns where the next record starts, or
   * `Scan.Incomplete` when the text ends inside the record and more follows.
   */
  private readQuotedRecord(text: string, start: number, final: boolean): number {
    const values = this.values;
    values.length = 0;

    // Phase 1: split the record into field values, up to its line end.
    let i = start;
    let recordEnd: number;
    let problem: string | undefined;
    for (;;) {
      if (text.charCodeAt(i) === Char.Quote) {
        const closing = this.readQuotedField(text, i, final);
        if (closing === Scan.Incomplete) {
          if (!final) {
            return Scan.Incomplete;
          }
          problem = 'a quoted field is not closed before the end of the source';
          recordEnd = text.length;
          break;
        }

        i = closing + 1;
        const after = text.charCodeAt(i);
        if (after === Char.Comma) {
          i++;
          continue;
        }

        if (i >= text.length || after === Char.LineFeed) {
          recordEnd = i;
          break;
        }

        if (
          after === Char.CarriageReturn &&
          (i + 1 >= text.length || text.charCodeAt(i + 1) === Char.LineFeed)
        ) {
          if (i + 1 >= text.length && !final) {
            return Scan.Incomplete;
          }
          recordEnd = i;
          break;
        }

        // Text after a closing quote: give up on this record at the end of its line.
        problem = 'unexpected text after a closing quote';
        const lineEnd = text.indexOf('\n', i);
        if (lineEnd === -1 && !final) {
          return Scan.Incomplete;
        }
        recordEnd = lineEnd === -1 ? text.length : lineEnd;
        break;
      }

      // An unquoted field runs to the next comma or line end; quotes in it are plain text.
      let j = i;
      let c = text.charCodeAt(j);
      while (j < text.length && c !== Char.Comma && c !== Char.LineFeed) {
        c = text.charCodeAt(++j);
      }
      if (j >= text.length && !final) {
        return Scan.Incomplete;
      }

      if (c === Char.Comma) {
        values.push(text.slice(i, j));
        i = j + 1;
        continue;
      }

      const fieldEnd = j > i && text.charCodeAt(j - 1) === Char.CarriageReturn ? j - 1 : j;
      values.push(text.slice(i, fieldEnd));
      recordEnd = j;
      break;
    }

    // Phase 2: find where the next record starts, and count the lines this one took.
    const lineEnd = recordEnd < text.length ? text.indexOf('\n', recordEnd) : -1;
    const next = lineEnd === -1 ? text.length : lineEnd + 1;
    const line = this.line + 1;
    this.line += countLineEnds(text, start, next);
    if (lineEnd === -1) {
      // The last line of the source, which has no line end.
      this.line++;
    }

    // Phase 3: the header, a reject or an event.
    let rawEnd = recordEnd;
    if (rawEnd > start && text.charCodeAt(rawEnd - 1) === Char.CarriageReturn) {
      rawEnd--;
    }

    if (this.header === null && problem === undefined) {
      this.readHeader(values.slice());
    } else if (line <= this.skipThroughLine) {
      // Already read before the checkpoint.
    } else if (problem !== undefined || this.header === null) {
      const detail = problem ?? 'the header row cannot be read';
      this.builder.reject(line, 'malformed', detail, text.slice(start, rawEnd));
    } else if (values.length !== this.header.length) {
      this.rejectFieldCount(line, values.length, text.slice(start, rawEnd));
    } else {
      this.addQuotedEvent(line, text, start, rawEnd);
    }

    return next;
  }

  /**
   * Finds the closing quote of the quoted field that opens at `open` and
   * pushes the field's value. Returns the index of the closing quote, or
   * `Scan.Incomplete` when the text ends before it can be told.
   */
  private readQuotedField(text: string, open: number, final: boolean): number {
    let value = '';
    let from = open + 1;
    for (;;) {
      const quote = text.indexOf('"', from);
      if (quote === -1) {
        return Scan.Incomplete;
      }

      // At the very end of the text, a quote might be the first half of a `""` escape.
      if (quote + 1 >= text.length && !final) {
        return Scan.Incomplete;
      }

      if (text.charCodeAt(quote + 1) === Char.Quote) {
        value += text.slice(from, quote + 1);
        from = quote + 2;
        continue;
      }

      this.values.push(value + text.slice(from, quote));

      return quote;
    }
  }

  private addQuotedEvent(line: number, text: string, start: number, end: number): void {
    for (let slot = 0; slot < Slot.Count; slot++) {
      const column = this.slotColumn[slot] ?? -1;
      if (column >= 0) {
        const value = this.values[column] ?? '';
        this.slotText[slot] = value;
        this.slotStart[slot] = 0;
        this.slotEnd[slot] = value.length;
      }
    }
    this.addEvent(line, text, start, end);
  }

  /** Adds the event whose fields the slots point at; `[start, end)` of `text` is the raw record. */
  private addEvent(line: number, text: string, start: number, end: number): void {
    const slotText = this.slotText;
    const slotStart = this.slotStart;
    const slotEnd = this.slotEnd;

    // The user id is checked first: a record with neither a user id nor a time is invalid_user_id.
    const userText = slotText[Slot.User] ?? '';
    const userStart = slotStart[Slot.User] ?? 0;
    const userEnd = slotEnd[Slot.User] ?? 0;
    const userProblem = userIdTextProblem(userText, userStart, userEnd);
    if (userProblem !== undefined) {
      this.builder.reject(line, 'invalid_user_id', userProblem, text.slice(start, end));

      return;
    }

    const timeText = slotText[Slot.Time] ?? '';
    const timeStart = slotStart[Slot.Time] ?? 0;
    const timeEnd = slotEnd[Slot.Time] ?? 0;
    const eventTimeMs = parseTimeTextAt(timeText, timeStart, timeEnd, this.timeFormat);
    if (Number.isNaN(eventTimeMs)) {
      const value = timeText.slice(timeStart, timeEnd);
      const detail = describeTimeProblem(value, this.timeFormat);
      this.builder.reject(line, 'invalid_time', detail, text.slice(start, end));

      return;
    }

    let receiveTimeMs = NaN;
    if (this.slotColumn[Slot.Receive] !== -1) {
      const receiveText = slotText[Slot.Receive] ?? '';
      const receiveStart = slotStart[Slot.Receive] ?? 0;
      const receiveEnd = slotEnd[Slot.Receive] ?? 0;
      // An empty field is no receive time (the event takes the one before it); text that
      // cannot be read is a broken record.
      if (receiveEnd > receiveStart) {
        const format = this.receiveTimeFormat;
        receiveTimeMs = parseTimeTextAt(receiveText, receiveStart, receiveEnd, format);
        if (Number.isNaN(receiveTimeMs)) {
          const value = receiveText.slice(receiveStart, receiveEnd);
          const detail = describeTimeProblem(value, format, 'receive time');
          this.builder.reject(line, 'invalid_time', detail, text.slice(start, end));

          return;
        }
      }
    }

    let eventId: string | undefined;
    if (this.slotColumn[Slot.EventId] !== -1) {
      const idStart = slotStart[Slot.EventId] ?? 0;
      const idEnd = slotEnd[Slot.EventId] ?? 0;
      eventId = idEnd > idStart ? slotText[Slot.EventId]?.slice(idStart, idEnd) : undefined;
    }

    this.builder.add(userText.slice(userStart, userEnd), eventTimeMs, receiveTimeMs, line, eventId);
  }

  /**
   * Takes the header row and finds the configured columns in it.
   *
   * @throws Error when a configured column is not in the header
   */
  private readHeader(names: string[]): void {
    const wanted: [number, string | undefined, string][] = [
      [Slot.User, this.columns.userId, 'user'],
      [Slot.Time, this.columns.eventTime, 'event time'],
      [Slot.Receive, this.columns.receiveTime, 'receive time'],
      [Slot.EventId, this.columns.eventId, 'event id'],
    ];
    for (const [slot, name, role] of wanted) {
      if (name === undefined) {
        continue;
      }

      const column = names.indexOf(name);
      if (column === -1) {
        throw new Error(
          `column '${name}' (the ${role} field) not in the header of ${this.source}; columns are: ${names.join(', ')}`,
        );
      }
      this.slotColumn[slot] = column;
    }

    this.header = names;
    this.columnStart = new Int32Array(names.length);
    this.columnEnd = new Int32Array(names.length);
  }

  private rejectFieldCount(line: number, found: number, raw: string): void {
    const expected = this.header?.length ?? 0;
    const detail = `expected ${expected} fields as in the header, found ${found}`;
    this.builder.reject(line, 'malformed', detail, raw);
  }
}

/** How many LF characters `[start, end)` of `text` holds. */
function countLineEnds(text: string, start: number, end: number): number {
  let count = 0;
  for (let i = text.indexOf('\n', start); i !== -1 && i < end; i = text.indexOf('\n', i + 1)) {
    count++;
  }

  return count;
}
