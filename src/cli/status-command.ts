/**
 * `speedlayer status --target HOST:PORT`: asks a coordinator (leader or standby) who
 * leads and what holds numbers back, and prints it as a table or JSON.
 *
 * Exit codes: 0 when the status was read, whatever it says; with `--check`, 3 when
 * numbers are held back (no leader elected, no round run yet, or partitions missing), so
 * that scripts and probes can act on it; 1 when the coordinator cannot be asked; 2 when
 * --target is not host:port.
 */
import { Command, Option } from 'commander';

import { choiceFlag, durationFlag } from '../config/index.js';
import { isoSeconds } from '../periods/index.js';
import { fetchStatus } from '../transport/status-client.js';
import type { StatusView } from '../transport/status-service.js';
import { CommandExit, type CliIo } from './io.js';
import { plural, targetFlag } from './process-support.js';

type StatusFormat = 'table' | 'json';

interface StatusFlags {
  target: string;
  format: StatusFormat;
  check: boolean;
  timeout: number;
}

/** The exit code of `status --check` when numbers are held back. */
export const HELD_BACK_EXIT_CODE = 3;

export function statusCommand(io: CliIo): Command {
  return new Command('status')
    .description(
      'print who leads, the ring epoch, the global watermark and the partitions that hold numbers back, as a coordinator answers it',
    )
    .requiredOption(
      '--target <host:port>',
      "a coordinator's gRPC address (its --port), or a shard's",
      targetFlag,
    )
    .option('--format <format>', 'table or json', choiceFlag(['table', 'json'] as const), 'table')
    .option(
      '--check',
      `exit ${HELD_BACK_EXIT_CODE} when numbers are held back: no leader, no round yet, or partitions missing`,
      false,
    )
    .addOption(
      new Option('--timeout <duration>', 'how long to wait for the answer')
        .argParser(durationFlag)
        .default(5000, '5s'),
    )
    .action(async (flags: StatusFlags) => {
      const view = await fetchStatus(flags.target, { timeoutMs: flags.timeout });
      io.stdout.write(flags.format === 'json' ? formatJson(view) : formatTable(view, Date.now()));

      const reason = heldBackReason(view);
      if (flags.check && reason !== undefined) {
        throw new CommandExit(HELD_BACK_EXIT_CODE, `numbers are held back: ${reason}`);
      }
    });
}

/** Why no final or restated number can be published now, or undefined when they can. */
export function heldBackReason(view: StatusView): string | undefined {
  if (view.leaderId === '') return 'no coordinator is elected';
  if (view.lastRoundAtMs === undefined) return `${view.leaderId} has run no round yet`;
  if (view.missingPartitions.length > 0) {
    return `${plural(view.missingPartitions.length, 'partition')} missing`;
  }

  return undefined;
}

function formatJson(view: StatusView): string {
  return `${JSON.stringify({ ...view, heldBack: heldBackReason(view) ?? null }, null, 2)}\n`;
}

/** A header of key/value lines, the missing partitions by shard, then one row per partition. */
export function formatTable(view: StatusView, nowMs: number): string {
  const header: [string, string][] = [
    ['answered by', view.answeredBy],
    [
      'leader',
      view.leaderId === ''
        ? 'none elected: nothing is published'
        : `${view.leaderId} (fencing token ${view.fencingToken})`,
    ],
    ['ring epoch', view.ringEpoch === 0 ? 'none yet' : String(view.ringEpoch)],
    ['partitions', String(view.partitionCount)],
    [
      'last round',
      view.lastRoundAtMs === undefined
        ? 'none yet under this leader'
        : `${isoMillis(view.lastRoundAtMs)} (${ago(nowMs - view.lastRoundAtMs)})`,
    ],
    ['global watermark', watermarkLine(view)],
    ['missing', missingLine(view)],
  ];
  const width = Math.max(...header.map(([key]) => key.length));
  const lines = header.map(([key, value]) => `${key.padEnd(width)}  ${value}`);

  const rows = view.partitions.map((p) => [
    String(p.partition),
    p.shardId === '' ? '-' : p.shardId,
    p.reported ? 'yes' : view.missingPartitions.includes(p.partition) ? 'MISSING' : 'no',
    p.watermarkMs === undefined ? '-' : isoMillis(p.watermarkMs),
  ]);
  const table =
    rows.length === 0 ? [] : ['', ...grid(['partition', 'shard', 'reported', 'watermark'], rows)];

  return `${[...lines, ...table].join('\n')}\n`;
}

function watermarkLine(view: StatusView): string {
  if (view.globalWatermarkMs !== undefined) return isoMillis(view.globalWatermarkMs);

  if (view.lastRoundAtMs === undefined) return 'unknown: no round yet';

  return view.missingPartitions.length === 0
    ? 'none yet: a partition has no watermark yet'
    : 'unknown: the last round was not complete';
}

function missingLine(view: StatusView): string {
  if (view.missingPartitions.length === 0) return 'none';

  const byShard = new Map<string, number[]>();
  for (const partition of view.missingPartitions) {
    const shardId = view.partitions[partition]?.shardId || 'unassigned';
    byShard.set(shardId, [...(byShard.get(shardId) ?? []), partition]);
  }
  const owners = [...byShard].map(
    ([shard, ps]) => `${shard} (${plural(ps.length, 'partition')}: ${ps.join(', ')})`,
  );

  return `${owners.join('; ')}: final and restated numbers are held back until they report`;
}

function grid(columns: readonly string[], rows: readonly string[][]): string[] {
  const widths = columns.map((c, i) => Math.max(c.length, ...rows.map((r) => r[i]?.length ?? 0)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, i) => cell.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();

  return [line(columns), ...rows.map(line)];
}

function isoMillis(ms: number): string {
  return ms % 1000 === 0 ? isoSeconds(ms) : new Date(ms).toISOString();
}

function ago(ms: number): string {
  if (ms < 1000) return 'just now';
  if (ms < 120_000) return `${Math.round(ms / 1000)}s ago`;

  return `${Math.round(ms / 60_000)}m ago`;
}
