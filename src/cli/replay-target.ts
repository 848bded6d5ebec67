/**
 * `speedlayer replay FILES --target HOST:PORT`: the embedded replay's reading (files,
 * formats, fields, receive-time order), sent to a cluster node's Ingest service instead
 * of the embedded store. At the end the node is asked to close every period it has seen
 * (Finish), as the embedded replay closes everything; an interrupted replay leaves them
 * open. Running the same replay again is how it resumes: every batch id comes out the
 * same, and the node never counts a batch twice.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import type { Command } from 'commander';

import { durationFlag } from '../config/index.js';
import {
  REJECT_REASONS,
  identifySources,
  planReadable,
  type ReadOptions,
  type RejectReason,
} from '../ingest/index.js';
import type { Logger } from '../observability/index.js';
import { IngestClient, type IngestClientOptions } from '../transport/ingest-client.js';
import { IngestClientError } from '../transport/ingest-client-errors.js';
import { rejectReasonFromWire } from '../transport/proto.js';
import { fetchStatus, StatusCallError } from '../transport/status-client.js';
import { CommandExit } from './io.js';
import { replayRequests } from './replay-requests.js';
import { plural, targetFlag } from './process-support.js';
import { heldBackReason } from './status-command.js';

/** Flags (by commander's key) that set up the embedded store or engine; a node has its own. */
const EMBEDDED_ONLY_FLAGS: Readonly<Record<string, string>> = {
  dataDir: '--data-dir',
  postgres: '--postgres',
  postgresSchema: '--postgres-schema',
  allowedLateness: '--allowed-lateness',
  restatementHorizon: '--restatement-horizon',
  maxFutureSkew: '--max-future-skew',
  maxOutOfOrderness: '--max-out-of-orderness',
  partitions: '--partitions',
  memoryBudget: '--memory-budget',
  roundInterval: '--round-interval',
};

/** Flags that only mean something with --target. */
const TARGET_ONLY_FLAGS: Readonly<Record<string, string>> = {
  deadline: '--deadline',
  stallTimeout: '--stall-timeout',
  wait: '--wait',
  waitTimeout: '--wait-timeout',
};

export interface TargetFlags {
  target?: string;
  deadline?: number;
  stallTimeout?: number;
  wait?: boolean;
  waitTimeout?: number;
}

/** Adds --target and its flags to the replay command. */
export function withTargetFlags(command: Command): Command {
  return command
    .option(
      '--target <host:port>',
      "send the events to a cluster node's Ingest service (speedlayer shard) instead of the embedded store; the node's settings apply",
      targetFlag,
    )
    .option(
      '--deadline <duration>',
      'with --target: give up when the replay has not finished within this (default: no limit)',
      durationFlag,
    )
    .option(
      '--stall-timeout <duration>',
      'with --target: give up when the node has acknowledged nothing for this long (default 2m)',
      durationFlag,
    )
    .option(
      '--wait',
      'with --target: after the replay, wait until the coordinator has published every period the node closed (reads Coordinator.Status at the target)',
    )
    .option(
      '--wait-timeout <duration>',
      'with --wait: give up waiting after this long (default 5m)',
      durationFlag,
    );
}

/** How often {@link waitForPublication} asks for the status. */
const STATUS_POLL_MS = 500;

/**
 * Waits until the coordinator's last complete round has a global watermark at or past
 * `watermarkMs`: every period the node closed is then published. Resolves with the
 * round's time, or undefined when `signal` aborts first.
 *
 * @throws CommandExit 1 after `timeoutMs`, saying what holds the numbers back, or when
 *   the target does not serve Coordinator.Status
 */
export async function waitForPublication(
  target: string,
  watermarkMs: number,
  options: { readonly timeoutMs: number; readonly signal?: AbortSignal },
): Promise<number | undefined> {
  const deadline = Date.now() + options.timeoutMs;
  let last: string;
  for (;;) {
    try {
      const view = await fetchStatus(target, { timeoutMs: 5_000 });
      const held = heldBackReason(view);
      const reached = view.globalWatermarkMs !== undefined && view.globalWatermarkMs >= watermarkMs;
      if (held === undefined && reached) return view.lastRoundAtMs;

      last =
        held ??
        `the last round's watermark is ${view.globalWatermarkMs === undefined ? 'unknown' : isoOrNumber(view.globalWatermarkMs)}`;
    } catch (err) {
      if (!(err instanceof StatusCallError) || !err.retryable) {
        const why = err instanceof Error ? err.message : String(err);
        throw new CommandExit(1, `--wait cannot read the status at ${target}: ${why}`);
      }
      last = err.message;
    }

    if (Date.now() >= deadline) {
      const seconds = Math.round(options.timeoutMs / 1000);
      throw new CommandExit(
        1,
        `[SL-INGEST-107] the periods before ${isoOrNumber(watermarkMs)} are closed but not all published after ${seconds}s (--wait-timeout): ${last}`,
      );
    }
    const stopped = await sleep(STATUS_POLL_MS, false, { signal: options.signal }).catch(
      () => true,
    );
    if (stopped) return undefined;
  }
}

/**
 * Refuses, with exit code 2, a flag typed for the other kind of replay: a store or engine
 * flag beside --target (the node's own settings apply), or a --target flag without it. A
 * target that is not `host:port` is refused as it is parsed, by {@link targetFlag}.
 */
export function checkTargetFlags(command: Command, flags: TargetFlags): void {
  const typed = (names: Readonly<Record<string, string>>): string[] =>
    Object.entries(names)
      .filter(([key]) => command.getOptionValueSource(key) === 'cli')
      .map(([, flag]) => flag);

  if (flags.target === undefined) {
    const stray = typed(TARGET_ONLY_FLAGS);
    if (stray.length > 0) {
      const verb = stray.length === 1 ? 'applies' : 'apply';
      throw new CommandExit(2, `${stray.join(', ')} ${verb} only with --target`);
    }

    return;
  }

  const embedded = typed(EMBEDDED_ONLY_FLAGS);
  if (embedded.length > 0) {
    const verb = embedded.length === 1 ? 'is' : 'are';
    throw new CommandExit(
      2,
      `${embedded.join(', ')} ${verb} for the embedded store; with --target the node's own settings apply (set them on speedlayer shard, or on npm run cluster for a local cluster)`,
    );
  }
}

/** What to replay and where to. */
export interface TargetReplayOptions {
  readonly paths: readonly string[];
  readonly read: Omit<ReadOptions, 'fromLine'>;
  /** `host:port` of a node serving Ingest. */
  readonly target: string;
  readonly logger: Logger;
  readonly client?: Omit<IngestClientOptions, 'credentials'>;
  /**
   * Stops taking batches; those in flight are still acknowledged, and Finish is not called
   * unless it had begun.
   */
  readonly signal?: AbortSignal;
  /**
   * How long the node may take to accept the first connection before the replay fails
   * as unreachable. @default 10 s, or the client's stall timeout when that is shorter
   */
  readonly connectTimeoutMs?: number;
  /** Called after every acknowledged batch. */
  readonly onProgress?: (progress: { records: number; accepted: number; rejected: number }) => void;
  /** Called once, as `signal` aborts, with what the replay still waits for before it ends. */
  readonly onStop?: (stop: TargetReplayStop) => void;
}

/**
 * What a stopped replay waits for: the batches it has sent and the node has not yet
 * acknowledged, or, once every batch is acknowledged, the Finish under way (which a stop
 * does not cancel, since the node may already be closing the periods).
 */
export type TargetReplayStop =
  | { readonly waitingFor: 'batches'; readonly inFlight: number }
  | { readonly waitingFor: 'finish' };

/** The outcome of a replay into a cluster. */
export interface TargetReplaySummary {
  /** Records read and acknowledged (events and unreadable records). */
  readonly records: number;
  readonly accepted: number;
  /** Rejected events and unreadable records, by reason. */
  readonly rejected: Partial<Record<RejectReason, number>>;
  /** The node's watermark after Finish; null when it routed nothing or the replay was interrupted. */
  readonly watermarkMs: number | null;
  readonly target: string;
  readonly batches: number;
  readonly reconnects: number;
  readonly seconds: number;
  readonly eventsPerSecond: number;
  readonly interrupted: boolean;
}

/**
 * Replays event files into the cluster through one node and, unless interrupted, asks it
 * to close every period it has seen.
 *
 * @throws IngestClientError when the node cannot be reached or refuses the batches;
 *   running the replay again sends only what the node has not counted
 */
export async function runTargetReplay(options: TargetReplayOptions): Promise<TargetReplaySummary> {
  // Input problems (missing files, unknown formats) surface before the node is called.
  const sources = await identifySources(options.paths);
  await planReadable([...sources.keys()], options.read);

  const logger = options.logger.child({ component: 'replay', target: options.target });
  logger.info({ sources: [...sources.values()] }, 'replay started');
  const client = new IngestClient(options.target, options.logger, options.client);
  const started = performance.now();
  const rejected: Partial<Record<RejectReason, number>> = {};
  let records = 0;
  let accepted = 0;
  let taken = 0;
  let acknowledged = 0;
  let finishing = false;
  const count = (reason: RejectReason): void => {
    rejected[reason] = (rejected[reason] ?? 0) + 1;
  };
  const onAbort = (): void => {
    const stop: TargetReplayStop = finishing
      ? { waitingFor: 'finish' }
      : { waitingFor: 'batches', inFlight: taken - acknowledged };
    logger.info(stop, 'replay stopping');
    options.onStop?.(stop);
  };
  options.signal?.addEventListener('abort', onAbort, { once: true });

  try {
    // A wrong address or a node that is down fails here, in seconds; once connected, a
    // lost node is waited for up to the stall timeout.
    const deadlineMs = options.client?.deadlineMs ?? Number.POSITIVE_INFINITY;
    const connectTimeoutMs = Math.min(
      options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
      options.client?.stallTimeoutMs ?? CONNECT_TIMEOUT_MS,
      deadlineMs,
    );
    const connected = await client.connect(connectTimeoutMs, options.signal).catch((err) => {
      if (connectTimeoutMs < deadlineMs) throw err;
      throw new IngestClientError(
        'deadline-exceeded',
        `the deadline of ${deadlineMs} ms passed before ${options.target} accepted a connection: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
    });
    if (!connected) {
      const summary = emptySummary(options.target, (performance.now() - started) / 1000);
      logger.info({ seconds: summary.seconds }, 'replay interrupted before it connected');

      return summary;
    }

    const read = replayRequests(sources, options.read);
    const requests = takeUntilStopped(read, options.signal, () => taken++);
    const totals = await client.send(requests, {
      signal: options.signal,
      onAck: (outcome, request) => {
        acknowledged++;
        records += request.events.length + request.unreadable.length;
        accepted += outcome.accepted;
        for (const r of outcome.rejected) count(r.reason);
        for (const u of request.unreadable) count(rejectReasonFromWire(u.reason));
        options.onProgress?.({ records, accepted, rejected: records - accepted });
      },
    });
    // A stop that came after the last batch was taken still means: leave the periods open.
    const interrupted = totals.interrupted || options.signal?.aborted === true;
    finishing = !interrupted;
    const watermarkMs = interrupted ? null : await client.finish();

    const seconds = (performance.now() - started) / 1000;
    const summary: TargetReplaySummary = {
      records,
      accepted,
      rejected,
      watermarkMs,
      target: options.target,
      batches: totals.batches,
      reconnects: totals.reconnects,
      seconds,
      eventsPerSecond: records / seconds,
      interrupted,
    };
    // The child logger carries the target already; a second `target` key would be ambiguous.
    const { target: _bound, ...logged } = summary;
    logger.info(logged, interrupted ? 'replay interrupted' : 'replay finished');

    return summary;
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
    client.close();
  }
}

/** How long the first connection may take by default. */
const CONNECT_TIMEOUT_MS = 10_000;

/** The summary of a replay stopped before anything was sent. */
function emptySummary(target: string, seconds: number): TargetReplaySummary {
  return {
    records: 0,
    accepted: 0,
    rejected: {},
    watermarkMs: null,
    target,
    batches: 0,
    reconnects: 0,
    seconds,
    eventsPerSecond: 0,
    interrupted: true,
  };
}

/**
 * The requests until `signal` aborts, each counted as it is taken. A request read after
 * the stop is not sent, so the batches in flight at the stop are all it waits for.
 */
async function* takeUntilStopped<T>(
  requests: AsyncIterable<T>,
  signal: AbortSignal | undefined,
  onTake: () => void,
): AsyncGenerator<T> {
  for await (const request of requests) {
    if (signal?.aborted === true) return;

    onTake();
    yield request;
  }
}

/** The line that tells a person, at a stop, what the replay still waits for. */
export function formatStopping(stop: TargetReplayStop): string {
  const again = '(Ctrl-C again to quit at once)';
  if (stop.waitingFor === 'finish') {
    return `finishing: every batch is acknowledged; waiting for the node to close its periods ${again}`;
  }
  if (stop.inFlight === 0) return 'stopping: no batch in flight';

  const batches = plural(stop.inFlight, 'batch', 'batches');

  return `stopping: waiting for ${batches} in flight to be acknowledged ${again}`;
}

/** The end-of-replay summary for people, in the embedded replay's layout. */
export function formatTargetSummary(s: TargetReplaySummary): string {
  const reasons = REJECT_REASONS.filter((r) => s.rejected[r] !== undefined)
    .map((reason) => `    ${reason}: ${s.rejected[reason]}`)
    .join('\n');
  const total = Object.values(s.rejected).reduce((a, b) => a + b, 0);
  const watermark = s.interrupted
    ? 'not moved (interrupted: periods stay open)'
    : s.watermarkMs === null
      ? 'none (the node routed no event)'
      : `${isoOrNumber(s.watermarkMs)} (every period before it is closed)`;

  return [
    `records read:     ${s.records}`,
    `accepted:         ${s.accepted}`,
    `rejected:         ${total}${reasons === '' ? '' : `\n${reasons}`}`,
    `watermark:        ${watermark}`,
    `target:           ${s.target} (${plural(s.batches, 'batch', 'batches')}, ${plural(s.reconnects, 'reconnect')})`,
    `time:             ${s.seconds.toFixed(2)} s`,
    `events/second:    ${Math.round(s.eventsPerSecond)}`,
    '',
  ].join('\n');
}

function isoOrNumber(ms: number): string {
  const date = new Date(ms);

  return Number.isNaN(date.getTime()) ? `${ms} ms` : date.toISOString();
}
