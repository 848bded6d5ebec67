import { isAscii } from 'node:buffer';
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';

import { BatchBuilder, type RecordParser } from './batch-builder.js';
import { CsvParser } from './csv-records.js';
import { compileFieldPath } from './field-path.js';
import { CombinedLogParser, NdjsonParser, type NdjsonFields } from './line-records.js';
import type { EventBatch, InputFormat, TimeFormat } from './types.js';

/**
 * Event-file readers: NDJSON, CSV and Apache/Nginx combined logs, plain or
 * gzipped, turned into columnar {@link EventBatch}es.
 *
 * Strings in a batch (`userIds`, `eventIds`) are often slices of the
 * multi-megabyte text chunk they were read from, and a slice keeps its whole
 * chunk in memory. Consumers must therefore not retain them: copy what must
 * outlive the batch (the partition dictionary stores the UTF-8 bytes, not
 * the string). Reject `raw` texts are copies and may be kept.
 */

/** How to read event files. */
export interface ReadOptions {
  /**
   * Format of every file. When absent it comes from each file name, after a
   * `.gz` suffix is removed: `.ndjson`, `.jsonl`, `.json` are NDJSON, `.csv`
   * is CSV, and `.log`, a name containing `access` or `apache_logs`, or a
   * name without extension is a combined log.
   */
  format?: InputFormat;
  /**
   * Where the user id is: a field path for NDJSON (see `compileFieldPath`),
   * a header column name for CSV. Required for both; ignored for combined
   * logs, whose user is the client address.
   */
  userField?: string;
  /** Where the event time is, like `userField`. Required for NDJSON and CSV; ignored for logs. */
  timeField?: string;
  /**
   * How event (and receive) times are written. Combined logs always use
   * their own bracketed time.
   * @default 'auto'
   */
  timeFormat?: TimeFormat;
  /**
   * Where the receive time is, if anywhere. A missing one (absent, null or
   * empty) leaves NaN; one that is there but cannot be read in
   * {@link receiveTimeFormat} rejects the record as `invalid_time`.
   */
  receiveTimeField?: string;
  /**
   * How receive times are written; collectors often stamp ISO text while
   * devices send epoch numbers.
   * @default 'auto'
   */
  receiveTimeFormat?: TimeFormat;
  /** Where the event id is, if anywhere. */
  eventIdField?: string;
  /**
   * Events per batch.
   * @default 8192
   */
  batchSize?: number;
  /** Per source path: skip the records that start on this line or before (resume after it). */
  fromLine?: Map<string, number>;
}

/** Default number of events per batch. */
export const DEFAULT_BATCH_SIZE = 8192;

/** Bytes read from a file at a time. */
const READ_CHUNK_BYTES = 2 * 1024 * 1024;

/**
 * The input format a file name implies, or undefined when it implies none.
 * A `.gz` suffix is removed first.
 */
export function inputFormatOf(file: string): InputFormat | undefined {
  let name = basename(file).toLowerCase();
  if (name.endsWith('.gz')) {
    name = name.slice(0, -'.gz'.length);
  }

  const extension = extname(name);
  if (extension === '.ndjson' || extension === '.jsonl' || extension === '.json') {
    return 'ndjson';
  }

  if (extension === '.csv') {
    return 'csv';
  }

  if (
    extension === '.log' ||
    extension === '' ||
    name.includes('access') ||
    name.includes('apache_logs')
  ) {
    return 'combined';
  }

  return undefined;
}

/**
 * Expands `paths` into the files to read, in order: a file stays as it is;
 * a directory gives all regular files below it, recursively, in name order,
 * without hidden files and folders (names that start with a dot).
 */
export async function listEventFiles(paths: readonly string[]): Promise<string[]> {
  const files: string[] = [];
  for (const path of paths) {
    const info = await stat(path).catch((err: NodeJS.ErrnoException) => {
      throw err.code === 'ENOENT'
        ? new Error(`no such file or directory: ${path}`, { cause: err })
        : err;
    });
    if (info.isDirectory()) {
      await collectFiles(path, files);
    } else {
      files.push(path);
    }
  }

  return files;
}

async function collectFiles(dir: string, files: string[]): Promise<void> {
  const names = (await readdir(dir)).filter((name) => !name.startsWith('.'));
  names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  for (const name of names) {
    const path = join(dir, name);
    const info = await stat(path);
    if (info.isDirectory()) {
      await collectFiles(path, files);
    } else if (info.isFile()) {
      files.push(path);
    }
  }
}

/** Options with defaults applied and field paths compiled. */
interface ReadSettings {
  readonly userField: string;
  readonly timeField: string;
  readonly timeFormat: TimeFormat;
  readonly receiveTimeField: string | undefined;
  readonly receiveTimeFormat: TimeFormat;
  readonly eventIdField: string | undefined;
  readonly batchSize: number;
  readonly fromLine: ReadonlyMap<string, number>;
  /** The compiled field paths, when some source is NDJSON. */
  readonly ndjsonFields: NdjsonFields | null;
}

/**
 * Finds the format of each file and checks the options against them, so
 * that a mistake fails before anything is read.
 */
/** Read options that do not fit the files (a usage error: the command line must change). */
export class ReadOptionsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ReadOptionsError';
  }
}

function planSources(files: string[], options: ReadOptions): [string, InputFormat][] {
  return files.map((file) => {
    const format = options.format ?? inputFormatOf(file);
    if (format === undefined) {
      throw new ReadOptionsError(
        `cannot tell the format of ${file} from its name; pass --format ndjson, csv or combined`,
      );
    }

    if (
      format !== 'combined' &&
      (options.userField === undefined || options.timeField === undefined)
    ) {
      throw new ReadOptionsError(
        `${file} is ${format}, which needs a user field and a time field (--user-field, --time-field)`,
      );
    }

    if (format === 'combined' && options.format === undefined && options.userField !== undefined) {
      throw new ReadOptionsError(
        `${file} is read as a combined access log (user = client address, time = request time), so ` +
          '--user-field and --time-field do not apply; pass --format ndjson or csv if it is not an access log',
      );
    }

    return [file, format];
  });
}

function settingsOf(options: ReadOptions, formats: InputFormat[]): ReadSettings {
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new Error(`batchSize must be a positive integer, got ${batchSize}`);
  }

  const userField = options.userField ?? '';
  const timeField = options.timeField ?? '';
  const optionalPath = (path: string | undefined) =>
    path === undefined ? null : compileFieldPath(path);
  const ndjsonFields = formats.includes('ndjson')
    ? {
        userId: compileFieldPath(userField),
        eventTime: compileFieldPath(timeField),
        receiveTime: optionalPath(options.receiveTimeField),
        eventId: optionalPath(options.eventIdField),
      }
    : null;

  return {
    userField,
    timeField,
    timeFormat: options.timeFormat ?? 'auto',
    receiveTimeField: options.receiveTimeField,
    receiveTimeFormat: options.receiveTimeFormat ?? 'auto',
    eventIdField: options.eventIdField,
    batchSize,
    fromLine: options.fromLine ?? new Map(),
    ndjsonFields,
  };
}

/**
 * Reads event files and yields their events in batches.
 *
 * `paths` are files or directories (see {@link listEventFiles}); files
 * ending in `.gz` are gunzipped. Sources are read one after another, in
 * order, and a batch never spans two of them. Each batch holds up to
 * `batchSize` events, in source order, together with the records of the same
 * stretch that were rejected (a batch may have no events and only rejects).
 * Blank lines are skipped silently.
 *
 * The strings in a batch may keep a large input chunk alive; consumers must
 * not retain them (see the note at the top of this module).
 *
 * @throws Error before the first batch when a format cannot be told from a
 *   file name, a required field option is missing or a field path is not
 *   valid; and before the first batch of a CSV file whose header lacks a
 *   configured column
 */
export async function* readEvents(
  paths: readonly string[],
  options: ReadOptions,
): AsyncGenerator<EventBatch> {
  const sources = planSources(await listEventFiles(paths), options);
  const formats = sources.map(([, format]) => format);
  const settings = settingsOf(options, formats);

  for (const [source, format] of sources) {
    yield* readSource(source, format, settings);
  }
}

async function* readSource(
  source: string,
  format: InputFormat,
  settings: ReadSettings,
): AsyncGenerator<EventBatch> {
  const builder = new BatchBuilder(
    source,
    settings.batchSize,
    format !== 'combined' && settings.receiveTimeField !== undefined,
    format !== 'combined' && settings.eventIdField !== undefined,
  );
  const parser = parserFor(source, format, builder, settings);

  // A record cut by a chunk boundary is carried over and completed by the next chunk.
  let carry = '';
  for await (const chunk of readLineChunks(source)) {
    const text = carry.length === 0 ? chunk : carry + chunk;
    let pos = parser.consume(text, 0, false);
    while (builder.full) {
      yield builder.take(parser.line);
      pos = parser.consume(text, pos, false);
    }
    carry = text.slice(pos);
  }

  let pos = parser.consume(carry, 0, true);
  while (builder.full) {
    yield builder.take(parser.line);
    pos = parser.consume(carry, pos, true);
  }
  if (!builder.empty) {
    yield builder.take(parser.line);
  }
}

function parserFor(
  source: string,
  format: InputFormat,
  builder: BatchBuilder,
  settings: ReadSettings,
): RecordParser {
  const skipThroughLine = settings.fromLine.get(source) ?? 0;

  switch (format) {
    case 'combined':
      return new CombinedLogParser(builder, skipThroughLine);
    case 'csv': {
      const columns = {
        userId: settings.userField,
        eventTime: settings.timeField,
        receiveTime: settings.receiveTimeField,
        eventId: settings.eventIdField,
      };

      return new CsvParser(
        source,
        builder,
        skipThroughLine,
        columns,
        settings.timeFormat,
        settings.receiveTimeFormat,
      );
    }
    case 'ndjson': {
      if (settings.ndjsonFields === null) {
        throw new Error('NDJSON field paths were not compiled');
      }

      return new NdjsonParser(
        builder,
        skipThroughLine,
        settings.ndjsonFields,
        settings.timeFormat,
        settings.receiveTimeFormat,
      );
    }
  }
}

/**
 * The text of a file in chunks of whole lines (each ends right after a line
 * feed, except perhaps the last), gunzipped when its name ends in `.gz`,
 * decoded as UTF-8, without a leading byte order mark.
 *
 * Chunks are cut at line-feed bytes, which never occur inside a multi-byte
 * UTF-8 character, so no decoder state spans two reads. The partial line at
 * the end of a read is decoded together with the first line of the next
 * read, as a small chunk of its own; so a big chunk is never joined to a
 * partial line, which would copy it once more.
 */
async function* readLineChunks(source: string): AsyncGenerator<string> {
  const file = createReadStream(source, { highWaterMark: READ_CHUNK_BYTES });
  let bytes: Readable = file;
  if (source.toLowerCase().endsWith('.gz')) {
    const gunzip = createGunzip({ chunkSize: READ_CHUNK_BYTES });
    file.on('error', (err) => gunzip.destroy(err));
    bytes = file.pipe(gunzip);
  }

  let rest: Buffer = NO_BYTES;
  let atStart = true;
  try {
    for await (const piece of bytes) {
      let chunk = piece as Buffer;
      if (atStart) {
        chunk = rest.length === 0 ? chunk : Buffer.concat([rest, chunk]);
        rest = NO_BYTES;
        if (chunk.length < UTF8_BOM.length) {
          rest = chunk;
          continue;
        }
        chunk = withoutBom(chunk);
        atStart = false;
      }

      // Complete the line left over from the last read.
      let from = 0;
      if (rest.length > 0) {
        const firstLineFeed = chunk.indexOf(LINE_FEED);
        if (firstLineFeed === -1) {
          rest = Buffer.concat([rest, chunk]);
          continue;
        }

        from = firstLineFeed + 1;
        yield decodeUtf8(Buffer.concat([rest, chunk.subarray(0, from)]));
        rest = NO_BYTES;
      }

      const lastLineFeed = chunk.lastIndexOf(LINE_FEED);
      if (lastLineFeed < from) {
        rest = chunk.subarray(from);
        continue;
      }

      yield decodeUtf8(chunk.subarray(from, lastLineFeed + 1));
      rest = chunk.subarray(lastLineFeed + 1);
    }
  } catch (err) {
    // Say which file: a gzip error alone reads "unexpected end of file".
    const message = err instanceof Error ? err.message : String(err);
    throw new Error(`cannot read ${source}: ${message}`, { cause: err });
  } finally {
    file.destroy();
    bytes.destroy();
  }

  if (atStart) {
    rest = withoutBom(rest);
  }
  if (rest.length > 0) {
    yield decodeUtf8(rest);
  }
}

const LINE_FEED = 0x0a;
const NO_BYTES = Buffer.alloc(0);
const UTF8_BOM = Buffer.from([0xef, 0xbb, 0xbf]);

function withoutBom(buffer: Buffer): Buffer {
  return buffer.subarray(0, UTF8_BOM.length).equals(UTF8_BOM)
    ? buffer.subarray(UTF8_BOM.length)
    : buffer;
}

/**
 * Decodes UTF-8. Pure ASCII, the common case, is decoded as Latin-1, which
 * is the same text and about three times faster for V8 to build.
 */
function decodeUtf8(buffer: Buffer): string {
  return isAscii(buffer) ? buffer.toString('latin1') : buffer.toString('utf8');
}
