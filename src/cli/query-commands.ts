import { Command } from 'commander';

import { choiceFlag, instantFlag, periodTypeFlag } from '../config/index.js';
import type { PeriodType } from '../periods/index.js';
import {
  formatCurrent,
  formatFilings,
  formatHistory,
  formatRejects,
  type OutputFormat,
} from '../query/index.js';
import type { Warehouse } from '../sink/warehouse.js';
import type { CliIo } from './io.js';
import { openWarehouse, withStoreFlags, type StoreFlags } from './warehouse-options.js';

const formatFlag = choiceFlag(['table', 'csv', 'json'] as const);

interface QueryFlags extends StoreFlags {
  period?: PeriodType;
  from?: number;
  to?: number;
  format: OutputFormat;
  history: boolean;
}

async function withWarehouse<T>(flags: StoreFlags, fn: (w: Warehouse) => Promise<T>): Promise<T> {
  const warehouse = await openWarehouse(flags);
  try {
    return await fn(warehouse);
  } finally {
    await warehouse.close();
  }
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
  withStoreFlags(command);

  return command.action(async (flags: QueryFlags) => {
    const range = { periodType: flags.period, fromMs: flags.from, toMs: flags.to };
    const text = await withWarehouse(flags, async (w) =>
      flags.history
        ? formatHistory(await w.queryHistory(range), flags.format)
        : formatCurrent(await w.queryCurrent(range), flags.format),
    );
    io.stdout.write(text);
  });
}

interface FileFlags extends StoreFlags {
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
  withStoreFlags(command);

  return command.action(async (flags: FileFlags) => {
    const filing = await withWarehouse(flags, (w) =>
      w.fileCurrent({
        periodType: flags.period,
        periodStartMs: flags.start,
        filedBy: flags.by,
        note: flags.note,
      }),
    );
    io.stdout.write(
      `filed #${filing.filingId}: ${filing.periodType} ${new Date(filing.periodStartMs).toISOString()} = ${filing.distinctUsers} (version ${filing.version}) by ${filing.filedBy}\n`,
    );
  });
}

export function filingsCommand(io: CliIo): Command {
  const command = new Command('filings')
    .description("list every filing beside its period's current number, version and the difference")
    .option('--format <format>', 'table, csv or json', formatFlag, 'table');
  withStoreFlags(command);

  return command.action(async (flags: StoreFlags & { format: OutputFormat }) => {
    io.stdout.write(
      await withWarehouse(flags, async (w) => formatFilings(await w.listFilings(), flags.format)),
    );
  });
}

export function rejectsCommand(io: CliIo): Command {
  const command = new Command('rejects')
    .description('dead-letter counts by reason, with a few examples of each')
    .option('--format <format>', 'table, csv or json', formatFlag, 'table')
    .option('--examples <n>', 'examples per reason', (v) => Number(v), 3);
  withStoreFlags(command);

  return command.action(async (flags: StoreFlags & { format: OutputFormat; examples: number }) => {
    io.stdout.write(
      await withWarehouse(flags, async (w) =>
        formatRejects(await w.rejectSummary(flags.examples), flags.format),
      ),
    );
  });
}
