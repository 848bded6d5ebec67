import { Command, Option } from 'commander';

import {
  byteSizeFlag,
  choiceFlag,
  durationFlag,
  integerFlag,
  resolveEngineSettings,
} from '../config/index.js';
import { runReplay, type ReplayOptions, type ReplaySummary } from '../embedded/replay.js';
import type { InputFormat, RejectReason, TimeFormat } from '../ingest/types.js';
import { createLogger } from '../observability/index.js';
import { CommandExit, type CliIo } from './io.js';
import { progressBar, withStopSignal } from './replay-progress.js';
import {
  checkTargetFlags,
  formatStopping,
  formatTargetSummary,
  runTargetReplay,
  waitForPublication,
  withTargetFlags,
  type TargetFlags,
} from './replay-target.js';
import { withStoreFlags, type StoreFlags } from './warehouse-options.js';

interface ReplayFlags extends StoreFlags, TargetFlags {
  userField?: string;
  timeField?: string;
  timeFormat: TimeFormat;
  receiveTimeField?: string;
  receiveTimeFormat: TimeFormat;
  eventIdField?: string;
  format?: InputFormat;
  allowedLateness?: number;
  restatementHorizon?: number;
  maxFutureSkew?: number;
  maxOutOfOrderness?: number;
  partitions?: number;
  memoryBudget?: number;
  roundInterval: number;
  logLevel: string;
  progress: boolean;
}

/** Adds the engine flags (lateness, horizon, skew, partitions, memory) to a command. */
export function withEngineFlags(command: Command): Command {
  return command
    .option(
      '--allowed-lateness <duration>',
      'how long a period stays open after its end (default 10m)',
      durationFlag,
    )
    .option(
      '--restatement-horizon <duration>',
      'how far behind the watermark an event may restate its period (default 35d)',
      durationFlag,
    )
    .option(
      '--max-future-skew <duration>',
      'how far past its receive time an event time may be (default 5m)',
      durationFlag,
    )
    .option(
      '--max-out-of-orderness <duration>',
      'how far the watermark trails the latest event time or clock (default 0s)',
      durationFlag,
    )
    .option('--partitions <n>', 'partitions P, fixed per data directory (default 16)', integerFlag)
    .option(
      '--memory-budget <size>',
      'memory for sets before closed periods spill to disk (default 1GiB)',
      byteSizeFlag,
    );
}

export function replayCommand(io: CliIo): Command {
  const command = new Command('replay')
    .description(
      'replay event files (NDJSON, CSV, combined access logs; plain or gzip) to the end, close every period and write the rows; with --target, into a cluster through one node',
    )
    .argument('<paths...>', 'files or directories')
    .option('--user-field <path>', 'user id field: a dotted path (NDJSON) or a column (CSV)')
    .option('--time-field <path>', 'event time field, like --user-field')
    .option(
      '--time-format <format>',
      'iso, epoch-s, epoch-ms, or auto',
      choiceFlag(['iso', 'epoch-s', 'epoch-ms', 'auto'] as const),
      'auto',
    )
    .option(
      '--receive-time-field <path>',
      'receive time field: replay in receive-time order with the watermark following that clock',
    )
    .option(
      '--receive-time-format <format>',
      'how receive times are written: iso, epoch-s, epoch-ms, or auto',
      choiceFlag(['iso', 'epoch-s', 'epoch-ms', 'auto'] as const),
      'auto',
    )
    .option('--event-id-field <path>', 'event id field')
    .option(
      '--format <format>',
      'ndjson, csv or combined, when the file name does not tell',
      choiceFlag(['ndjson', 'csv', 'combined'] as const),
    )
    .addOption(
      new Option(
        '--round-interval <duration>',
        'wall time between checkpoints and coordinator rounds',
      )
        .argParser(durationFlag)
        .default(5000, '5s'),
    )
    .option('--log-level <level>', 'pino log level on stderr', 'info')
    .option('--no-progress', 'no progress bar');
  withEngineFlags(command);
  withStoreFlags(command);
  withTargetFlags(command);

  return command.action(async (paths: string[], flags: ReplayFlags) => {
    checkTargetFlags(command, flags);
    // Ctrl-C or SIGTERM: finish the batches in flight, and stop; a second one exits at once.
    if (flags.target !== undefined) {
      const target = flags.target;
      await withStopSignal((signal) => replayToTarget(paths, target, flags, io, signal));
      return;
    }

    const summary = await withStopSignal((signal) => replay(paths, flags, io, signal));
    io.stdout.write(formatSummary(summary));
    if (summary.interrupted) {
      throw new CommandExit(130, 'replay interrupted; run the same command again to resume');
    }
    if (summary.records > 0 && summary.accepted === 0) {
      throw new CommandExit(2, allRejected(summary.rejected, 'see `speedlayer rejects`'));
    }
  });
}

async function replayToTarget(
  paths: string[],
  target: string,
  flags: ReplayFlags,
  io: CliIo,
  signal: AbortSignal,
): Promise<void> {
  const bar = progressBar(io, flags.progress);
  let summary;
  try {
    summary = await runTargetReplay({
      paths,
      read: readOptions(flags),
      target,
      logger: createLogger({ level: bar === null ? flags.logLevel : 'warn' }),
      client: { deadlineMs: flags.deadline, stallTimeoutMs: flags.stallTimeout },
      signal,
      onProgress:
        bar === null
          ? undefined
          : (p) => bar.update(p.records, { accepted: p.accepted, rejected: p.rejected }),
      // The wait for a node that is down can last up to the stall timeout: say what it is.
      onStop: (stop) => {
        bar?.stop();
        io.stderr.write(`${formatStopping(stop)}\n`);
      },
    });
  } finally {
    bar?.stop();
  }

  io.stdout.write(formatTargetSummary(summary));
  if (flags.wait === true && !summary.interrupted && summary.watermarkMs !== null) {
    const started = Date.now();
    const roundAtMs = await waitForPublication(target, summary.watermarkMs, {
      timeoutMs: flags.waitTimeout ?? 300_000,
      signal,
    });
    if (roundAtMs === undefined) {
      throw new CommandExit(130, 'stopped waiting for the numbers to be published');
    }
    const waited = ((Date.now() - started) / 1000).toFixed(1);
    io.stdout.write(
      `published:        every period before the watermark (round at ${new Date(roundAtMs).toISOString()}, waited ${waited} s)\n`,
    );
  }
  if (summary.interrupted) {
    throw new CommandExit(
      130,
      'replay interrupted; run the same command again: batches the node acknowledged are not counted twice',
    );
  }
  if (summary.records > 0 && summary.accepted === 0) {
    throw new CommandExit(
      2,
      allRejected(summary.rejected, "see the node's dead letters (`speedlayer rejects --target`)"),
    );
  }
}

/** Why every record may have been rejected, from the reasons they were rejected for. */
export function allRejected(
  rejected: Partial<Record<RejectReason, number>>,
  where: string,
): string {
  const reasons = Object.entries(rejected)
    .filter(([, n]) => (n ?? 0) > 0)
    .map(([reason]) => reason);
  const timing = reasons.length > 0 && reasons.every((r) => r === 'too_old' || r === 'future');
  const hint = timing
    ? 'the event times are behind the watermark by more than the restatement horizon, or ahead of the clock: a live (wall-clock) node takes only recent events'
    : 'wrong --format or fields?';

  return `every record was rejected (${reasons.join(', ')}); ${where}: ${hint}`;
}

function readOptions(flags: ReplayFlags): ReplayOptions['read'] {
  return {
    format: flags.format,
    userField: flags.userField,
    timeField: flags.timeField,
    timeFormat: flags.timeFormat,
    receiveTimeField: flags.receiveTimeField,
    receiveTimeFormat: flags.receiveTimeFormat,
    eventIdField: flags.eventIdField,
  };
}

async function replay(
  paths: string[],
  flags: ReplayFlags,
  io: CliIo,
  signal: AbortSignal,
): Promise<ReplaySummary> {
  const settings = resolveEngineSettings({
    partitions: flags.partitions,
    allowedLatenessMs: flags.allowedLateness,
    restatementHorizonMs: flags.restatementHorizon,
    maxFutureSkewMs: flags.maxFutureSkew,
    maxOutOfOrdernessMs: flags.maxOutOfOrderness,
    memoryBudgetBytes: flags.memoryBudget,
    watermarkMode: flags.receiveTimeField === undefined ? 'event-time' : 'clock',
  });
  const bar = progressBar(io, flags.progress);

  try {
    return await runReplay({
      paths,
      read: readOptions(flags),
      dataDir: flags.dataDir,
      postgresUrl: flags.postgres,
      postgresSchema: flags.postgresSchema,
      settings,
      roundIntervalMs: flags.roundInterval,
      signal,
      logger: createLogger({ level: bar === null ? flags.logLevel : 'warn' }),
      onProgress:
        bar === null
          ? undefined
          : (p) => bar.update(p.records, { accepted: p.accepted, rejected: p.rejected }),
    });
  } finally {
    bar?.stop();
  }
}

/** The end-of-replay summary for people. */
export function formatSummary(s: ReplaySummary): string {
  const rejected = Object.entries(s.rejected)
    .map(([reason, n]) => `    ${reason}: ${n}`)
    .join('\n');
  const total = Object.values(s.rejected).reduce((a, b) => a + b, 0);

  return [
    `records read:     ${s.records}${s.resumed === null ? '' : ` (resumed: done earlier: ${s.resumed})`}`,
    `accepted:         ${s.accepted}`,
    `rejected:         ${total}${rejected === '' ? '' : `\n${rejected}`}`,
    `distinct users:   ${s.distinctUsers} (all replays into this data directory)`,
    `time:             ${s.seconds.toFixed(2)} s`,
    `events/second:    ${Math.round(s.eventsPerSecond)}`,
    '',
  ].join('\n');
}
