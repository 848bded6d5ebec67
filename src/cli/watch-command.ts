/**
 * `speedlayer watch --target HOST:PORT`: follows a Query service's WatchVersions stream
 * and prints each published version once, as it is written, one line at a time.
 *
 * What is new is decided by a {@link VersionCursor} on the warehouse's clock, kept for the
 * whole watch. The watch first reads the history of its range: those versions exist
 * already and are not printed (unless --since asks for them), and they give each
 * restatement its predecessor. It then streams from the cursor's horizon. When the stream
 * ends with a retryable status (a server draining or restarting, a lost connection), the
 * watch connects again with backoff and resumes from the same horizon; the cursor drops
 * what was printed already, so no version is printed twice or skipped.
 *
 * Exit codes: 0 on Ctrl-C or SIGTERM, or when the reader of stdout goes away; 1 when no
 * stream could be opened for --stall-timeout, or the service refuses the watch; 2 when
 * --target is not host:port.
 */
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';

import { Command, Option } from 'commander';

import { choiceFlag, durationFlag, instantFlag, periodTypeFlag } from '../config/index.js';
import { createLogger, type Logger } from '../observability/index.js';
import { isoSeconds, periodKey, type PeriodType } from '../periods/index.js';
import { HISTORY_COLUMNS } from '../query/row-format.js';
import type { PeriodRange, VersionRow } from '../sink/index.js';
import { QueryClient } from '../transport/query-client.js';
import { QueryError } from '../transport/query-errors.js';
import { VersionCursor } from '../transport/version-cursor.js';
import { CommandExit, type CliIo } from './io.js';
import { targetFlag } from './process-support.js';
import { withStopSignal } from './replay-progress.js';

type WatchFormat = 'table' | 'csv' | 'json';

interface WatchFlags {
  target: string;
  period?: PeriodType;
  from?: number;
  to?: number;
  since?: number;
  format: WatchFormat;
  stallTimeout: number;
  logLevel: string;
}

/** A newly written version and how far it moved its period's number. */
export interface WatchedVersion {
  readonly row: VersionRow;
  /** distinct_users minus the previous version's; null for version 1 or when unknown. */
  readonly change: number | null;
}

export interface FollowVersionsOptions {
  /** `host:port` of a Query service. */
  readonly target: string;
  readonly range: PeriodRange;
  /** Print the versions written at or after this instant first; absent: only new ones. */
  readonly sinceMs?: number;
  /** Give up when no stream could be opened for this long. */
  readonly stallTimeoutMs: number;
  readonly logger: Logger;
  /** Ends the watch; followVersions then resolves. */
  readonly signal: AbortSignal;
  readonly onVersion: (version: WatchedVersion) => void;
  /** Called once, when the first stream is open (before any version). */
  readonly onWatching?: () => void;
}

/**
 * The Query server's default reorder window (query-server.ts): a version that commits
 * this late is still streamed by the server, so the watch must not drop it either.
 */
const REORDER_WINDOW_MS = 60_000;

/** The longest a single connection attempt waits for the channel. */
const CONNECT_TIMEOUT_MS = 5_000;
const FIRST_RETRY_MS = 200;
const MAX_RETRY_MS = 5_000;

/** Columns of csv and the keys of json, those of `query --history` and then `change`. */
const COLUMNS = [...HISTORY_COLUMNS, 'change'] as const;

type Column = (typeof COLUMNS)[number];

type WatchRecord = Record<Column, string | number | null>;

/** Table columns and widths, with the reason (of any length) last. */
const TABLE_COLUMNS: readonly (readonly [Column, number, 'left' | 'right'])[] = [
  ['period_type', 11, 'left'],
  ['period_start', 20, 'left'],
  ['version', 7, 'right'],
  ['distinct_users', 14, 'right'],
  ['change', 8, 'right'],
  ['status', 8, 'left'],
  ['written_at', 24, 'left'],
  ['reason', 0, 'left'],
];

export function watchCommand(io: CliIo): Command {
  return new Command('watch')
    .description(
      'print each version a Query service publishes (final numbers and restatements) as it is written, until Ctrl-C or SIGTERM; reconnects by itself',
    )
    .requiredOption(
      '--target <host:port>',
      'the Query gRPC service (serve-query, a shard, or coordinator --query-port)',
      targetFlag,
    )
    .option(
      '--period <type>',
      'hour, day or week (all when left out); the service filters by it, --from and --to',
      periodTypeFlag,
    )
    .option('--from <instant>', 'first period start to include (ISO-8601 or a date)', instantFlag)
    .option('--to <instant>', 'period starts before this instant', instantFlag)
    .option(
      '--since <instant>',
      'first print the versions written at or after this instant (default: only new ones)',
      instantFlag,
    )
    .option(
      '--format <format>',
      'table, csv (header once) or json (one object per line)',
      choiceFlag(['table', 'csv', 'json'] as const),
      'table',
    )
    .addOption(
      new Option(
        '--stall-timeout <duration>',
        'give up (exit 1) when no stream could be opened for this long',
      )
        .argParser((value: string) => {
          const ms = durationFlag(value);
          if (ms <= 0) throw new Error(`must be longer than 0: '${value}'`);
          return ms;
        })
        .default(300_000, '5m'),
    )
    .option('--log-level <level>', 'pino log level on stderr (reconnects are info)', 'info')
    .action(async (flags: WatchFlags) => {
      if (flags.from !== undefined && flags.to !== undefined && flags.from >= flags.to) {
        throw new CommandExit(2, '[SL-CLI-002] --from must be before --to');
      }

      const logger = createLogger({ level: flags.logLevel, component: 'watch' });
      const range = { periodType: flags.period, fromMs: flags.from, toMs: flags.to };
      const format = flags.format;
      await withStopSignal((stopped) =>
        whileOutputOpen(io, stopped, (signal) =>
          followVersions({
            target: flags.target,
            range,
            sinceMs: flags.since,
            stallTimeoutMs: flags.stallTimeout,
            logger,
            signal,
            // The header once a stream is open: a watch that never connects prints nothing.
            onWatching: () => {
              if (format !== 'json') io.stdout.write(header(format));
            },
            onVersion: (version) => io.stdout.write(formatVersion(version, format)),
          }),
        ),
      );
    });
}

/**
 * Streams the new versions of `range` to `onVersion`, each once and by written_at,
 * reconnecting after every retryable failure until `signal` aborts. Throws the failure
 * that no retry can change, or a CommandExit when no stream opened for the stall timeout.
 */
export function followVersions(options: FollowVersionsOptions): Promise<void> {
  return new VersionWatch(options).run();
}

/** One watch: its connection loop with backoff, and what it has printed. */
class VersionWatch {
  /** Read from the history on the first connection, then kept across reconnects. */
  private seen: SeenVersions | undefined;
  /** Since when no stream has been open (the start counts); undefined while one is. */
  private lostAtMs: number | undefined = Date.now();
  private retryMs = FIRST_RETRY_MS;
  private streamsOpened = 0;

  constructor(private readonly options: FollowVersionsOptions) {}

  async run(): Promise<void> {
    const { signal } = this.options;
    while (!signal.aborted) {
      const failure = await this.streamUntilFailure();
      if (signal.aborted) return;
      if (!(failure instanceof QueryError) || !failure.retryable) throw failure;

      await this.backOff(failure);
    }
  }

  /** Connects, reads the starting point once, and streams; resolves with what ended it. */
  private async streamUntilFailure(): Promise<unknown> {
    try {
      const connectTimeoutMs = Math.min(CONNECT_TIMEOUT_MS, this.stallLeftMs());
      const client = await this.untilStopped(
        QueryClient.connect(this.options.target, { connectTimeoutMs }),
      );
      if (client === undefined) return undefined;

      try {
        this.seen ??= await this.untilStopped(startingPoint(client, this.options));
        if (this.seen === undefined) return undefined;

        return await streamOnce(client, this.seen, this.options, () => this.opened());
      } finally {
        client.close();
      }
    } catch (error) {
      return error;
    }
  }

  /** A stream is open: the server has read its starting point. */
  private opened(): void {
    const { logger, target, range } = this.options;
    const fields = { target, sinceWrittenAtMs: this.seen?.resumeSinceMs };
    if (this.streamsOpened++ === 0) {
      this.options.onWatching?.();
      logger.info({ ...fields, range }, 'watching versions');
    } else {
      logger.info(
        { ...fields, downMs: Date.now() - (this.lostAtMs ?? Date.now()) },
        'watch resumed',
      );
    }

    this.lostAtMs = undefined;
    this.retryMs = FIRST_RETRY_MS;
  }

  /** Waits before the next attempt, or gives up once the stall timeout has passed. */
  private async backOff(failure: QueryError): Promise<void> {
    const { logger, target, signal, stallTimeoutMs } = this.options;
    const event =
      this.lostAtMs === undefined ? 'watch stream ended' : 'watch stream failed to open';
    this.lostAtMs ??= Date.now();
    const leftMs = this.stallLeftMs();
    if (leftMs <= 0) throw gaveUp(target, stallTimeoutMs, failure);

    const delayMs = Math.min(leftMs, Math.round(this.retryMs * (0.5 + Math.random() * 0.5)));
    // The message says it all; a stack trace per retry would only be noise.
    logger.info({ target, error: failure.message, retryInMs: delayMs }, event);
    await sleep(delayMs, undefined, { signal }).catch(() => undefined);
    this.retryMs = Math.min(this.retryMs * 2, MAX_RETRY_MS);
  }

  private stallLeftMs(): number {
    const { stallTimeoutMs } = this.options;

    return this.lostAtMs === undefined
      ? stallTimeoutMs
      : stallTimeoutMs - (Date.now() - this.lostAtMs);
  }

  /**
   * Resolves with `undefined` as soon as the watch is stopped, so that Ctrl-C does not
   * wait for a connection attempt to time out.
   */
  private untilStopped<T>(promise: Promise<T>): Promise<T | undefined> {
    const { signal } = this.options;

    return new Promise((resolve, reject) => {
      const onAbort = (): void => resolve(undefined);
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });

      promise.then(
        (value) => {
          signal.removeEventListener('abort', onAbort);
          // A client that connects after the stop has no one else to close it.
          if (signal.aborted && value instanceof QueryClient) value.close();
          resolve(value);
        },
        (error: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(error);
        },
      );
    });
  }
}

/** The history of the range when the watch starts, which decides what counts as new. */
async function startingPoint(
  client: QueryClient,
  options: FollowVersionsOptions,
): Promise<SeenVersions> {
  return SeenVersions.start(await client.history(options.range), options.sinceMs);
}

/** One stream until it fails (resolves with the failure) or the watch stops (undefined). */
function streamOnce(
  client: QueryClient,
  seen: SeenVersions,
  options: FollowVersionsOptions,
  onReady: () => void,
): Promise<unknown> {
  const { signal } = options;

  return new Promise((resolve) => {
    const onAbort = (): void => {
      cancel();
      resolve(undefined);
    };
    const cancel = client.watch(
      (row) => {
        const version = seen.accept(row);
        if (version !== undefined) options.onVersion(version);
      },
      {
        range: options.range,
        sinceWrittenAtMs: seen.resumeSinceMs,
        onReady,
        onError: (error) => {
          signal.removeEventListener('abort', onAbort);
          resolve(error);
        },
      },
    );
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Which streamed versions this watch has not printed yet, and the predecessor of each. */
class SeenVersions {
  private constructor(
    private readonly cursor: VersionCursor,
    /** Distinct users by period and version: the history, then what was printed. */
    private readonly users: Map<string, number>,
  ) {}

  /**
   * Without `sinceMs` the versions in `history` are the baseline, seen but not printed;
   * with it, those written at or after `sinceMs` are printed when the stream replays them.
   */
  static start(history: readonly VersionRow[], sinceMs: number | undefined): SeenVersions {
    const cursor = new VersionCursor({
      sinceWrittenAtMs: sinceMs,
      reorderWindowMs: REORDER_WINDOW_MS,
    });
    if (sinceMs === undefined) cursor.advance(history);
    const users = new Map(history.map((row) => [versionKey(row, row.version), row.distinctUsers]));

    return new SeenVersions(cursor, users);
  }

  /**
   * Where a stream starts: the cursor's horizon, or the epoch when nothing was seen yet
   * (the range had no versions when the watch started, so every one is new).
   */
  get resumeSinceMs(): number {
    const horizonMs = this.cursor.horizonMs;

    return Number.isFinite(horizonMs) ? horizonMs : 0;
  }

  /** The row with its change when it is new to this watch, else undefined. */
  accept(row: VersionRow): WatchedVersion | undefined {
    if (this.cursor.advance([row]).length === 0) return undefined;

    const previousKey = versionKey(row, row.version - 1);
    const previous = this.users.get(previousKey);
    // The number before this version is asked for by this version alone.
    this.users.delete(previousKey);
    this.users.set(versionKey(row, row.version), row.distinctUsers);
    const change = row.version > 1 && previous !== undefined ? row.distinctUsers - previous : null;

    return { row, change };
  }
}

function versionKey(row: VersionRow, version: number): string {
  return `${periodKey({ type: row.periodType, startMs: row.periodStartMs })}:${version}`;
}

function gaveUp(target: string, stallTimeoutMs: number, failure: QueryError): CommandExit {
  const seconds = Math.round(stallTimeoutMs / 1000);

  return new CommandExit(
    1,
    `[SL-QUERY-101] no WatchVersions stream from ${target} for ${seconds}s (--stall-timeout); last failure: ${failure.message}`,
  );
}

/**
 * Runs `body` with a signal that aborts on `stopped` or when the reader of stdout goes
 * away (`watch ... | head`): both end the watch, with exit code 0.
 */
async function whileOutputOpen<T>(
  io: CliIo,
  stopped: AbortSignal,
  body: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const closed = new AbortController();
  const stdout = io.stdout instanceof Writable ? io.stdout : undefined;
  const onError = (): void => closed.abort();
  stdout?.on('error', onError);
  try {
    return await body(AbortSignal.any([stopped, closed.signal]));
  } finally {
    stdout?.off('error', onError);
  }
}

// --- output ----------------------------------------------------------------------------------

function header(format: 'table' | 'csv'): string {
  if (format === 'csv') return `${COLUMNS.join(',')}\n`;

  const names = TABLE_COLUMNS.map(([column, width, align]) => pad(column, width, align));
  const rule = TABLE_COLUMNS.map(([column, width]) => '-'.repeat(Math.max(width, column.length)));

  return `${names.join('  ').trimEnd()}\n${rule.join('  ')}\n`;
}

/** One line: a table row, a CSV record or a JSON object. */
export function formatVersion(version: WatchedVersion, format: WatchFormat): string {
  const record = toRecord(version);
  if (format === 'json') return `${JSON.stringify(record)}\n`;
  if (format === 'csv') return `${COLUMNS.map((column) => csvCell(record[column])).join(',')}\n`;

  const cells = TABLE_COLUMNS.map(([column, width, align]) => {
    const value = record[column];
    const text = column === 'change' && typeof value === 'number' ? signed(value) : value;

    return pad(text === null ? '' : String(text), width, align);
  });

  return `${cells.join('  ').trimEnd()}\n`;
}

function toRecord({ row, change }: WatchedVersion): WatchRecord {
  return {
    period_type: row.periodType,
    period_start: isoSeconds(row.periodStartMs),
    version: row.version,
    distinct_users: row.distinctUsers,
    status: row.status,
    reason: row.reason,
    written_at: new Date(row.writtenAtMs).toISOString(),
    change,
  };
}

function pad(text: string, width: number, align: 'left' | 'right'): string {
  return align === 'right' ? text.padStart(width) : text.padEnd(width);
}

function signed(n: number): string {
  return n > 0 ? `+${n}` : String(n);
}

function csvCell(value: string | number | null): string {
  if (value === null) return '';
  const text = String(value);

  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}
