import { Command } from 'commander';

import { choiceFlag, instantFlag, periodTypeFlag } from '../config/index.js';
import { isoSeconds, periodStart, type PeriodType } from '../periods/index.js';
import {
  formatCurrent,
  formatFilings,
  formatHistory,
  formatRejects,
  type OutputFormat,
} from '../query/index.js';
import { filingTextProblem } from '../sink/index.js';
import { MAX_EXAMPLES_PER_REASON } from '../transport/query-server.js';
import { CommandExit, type CliIo } from './io.js';
import { withQuerySource, withSourceFlags, type SourceFlags } from './query-source.js';

const formatFlag = choiceFlag(['table', 'csv', 'json'] as const);

function examplesFlag(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < 0 || n > MAX_EXAMPLES_PER_REASON) {
    throw new Error(`not a whole number from 0 to ${MAX_EXAMPLES_PER_REASON}: '${value}'`);
  }

  return n;
}

interface QueryFlags extends SourceFlags {
  period?: PeriodType;
  from?: number;
  to?: number;
  format: OutputFormat;
  history: boolean;
}

export function queryCommand(io: CliIo): Command {
  const command = new Command('query')
    .description(
      'print the current rows (or, with --history, every version) of the selected periods',
    )
    .option('--period <type>', 'hour, day or week (all when left out)', periodTypeFlag)
    .option('--from <instant>', 'first period start to include (ISO-8601 or a date)', instantFlag)
    .option('--to <instant>', 'period starts before this instant', instantFlag)
    .option('--format <format>', 'table, csv or json', formatFlag, 'table')
    .option('--history', 'list every version, with its status, reason and time', false);
  withSourceFlags(command);

  return command.action(async (flags: QueryFlags, self: Command) => {
    if (flags.from !== undefined && flags.to !== undefined && flags.from >= flags.to) {
      throw new CommandExit(2, '[SL-CLI-002] --from must be before --to');
    }
    const range = { periodType: flags.period, fromMs: flags.from, toMs: flags.to };
    const text = await withQuerySource(flags, self, async (source) =>
      flags.history
        ? formatHistory(await source.history(range), flags.format)
        : formatCurrent(await source.current(range), flags.format),
    );
    io.stdout.write(text);
  });
}

interface FileFlags extends SourceFlags {
  period: PeriodType;
  start: number;
  by: string;
  note?: string;
}

export function fileCommand(io: CliIo): Command {
  const command = new Command('file')
    .description(
      "record a period's current published version as filed (reported outside); filings never change",
    )
    .requiredOption('--period <type>', 'hour, day or week', periodTypeFlag)
    .requiredOption('--start <instant>', 'the period start (ISO-8601 or a date)', instantFlag)
    .requiredOption('--by <name>', 'who filed it')
    .option('--note <text>', 'free text, e.g. where it was reported');
  withSourceFlags(command);

  return command.action(async (flags: FileFlags, self: Command) => {
    if (periodStart(flags.period, flags.start) !== flags.start) {
      throw new CommandExit(
        2,
        `[SL-CLI-003] ${isoSeconds(flags.start)} is not the start of a ${flags.period}`,
      );
    }
    const problem =
      filingTextProblem('filed_by', flags.by, '--by') ??
      (flags.note === undefined ? undefined : filingTextProblem('note', flags.note, '--note'));
    if (problem !== undefined) throw new CommandExit(2, `[SL-CLI-004] ${problem}`);
    const filing = await withQuerySource(flags, self, (source) =>
      source.file({
        periodType: flags.period,
        periodStartMs: flags.start,
        filedBy: flags.by,
        note: flags.note,
      }),
    );
    io.stdout.write(
      `filed #${filing.filingId}: ${filing.periodType} ${isoSeconds(filing.periodStartMs)} = ${filing.distinctUsers} (version ${filing.version}) by ${filing.filedBy}\n`,
    );
  });
}

export function filingsCommand(io: CliIo): Command {
  const command = new Command('filings')
    .description("list every filing beside its period's current number, version and the difference")
    .option('--format <format>', 'table, csv or json', formatFlag, 'table');
  withSourceFlags(command);

  return command.action(async (flags: SourceFlags & { format: OutputFormat }, self: Command) => {
    io.stdout.write(
      await withQuerySource(flags, self, async (source) =>
        formatFilings(await source.filings(), flags.format),
      ),
    );
  });
}

export function rejectsCommand(io: CliIo): Command {
  const command = new Command('rejects')
    .description('dead-letter counts by reason, with a few examples of each')
    .option('--format <format>', 'table, csv or json', formatFlag, 'table')
    .option(
      '--examples <n>',
      `examples per reason, 0 to ${MAX_EXAMPLES_PER_REASON}`,
      examplesFlag,
      3,
    );
  withSourceFlags(command);

  return command.action(
    async (flags: SourceFlags & { format: OutputFormat; examples: number }, self: Command) => {
      io.stdout.write(
        await withQuerySource(flags, self, async (source) =>
          formatRejects(await source.rejects(flags.examples), flags.format),
        ),
      );
    },
  );
}
