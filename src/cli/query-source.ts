/**
 * Where the read commands (`query`, `file`, `filings`, `rejects`) get their rows: the
 * warehouse itself, or with `--target` the Query gRPC service of a running
 * `serve-query`. Both give the same domain rows, so the output is the same.
 */
import type { Command } from 'commander';

import type {
  CurrentRow,
  DeadLetterSummary,
  FileCurrentArgs,
  FilingRow,
  FilingView,
  PeriodRange,
  VersionRow,
} from '../sink/index.js';
import { QueryClient } from '../transport/query-client.js';
import { openWarehouse, withStoreFlags, type StoreFlags } from './warehouse-options.js';
import { CommandExit } from './io.js';
import { targetFlag } from './process-support.js';

/** What the read commands need, from either place. */
export interface QuerySource {
  current(range: PeriodRange): Promise<CurrentRow[]>;
  history(range: PeriodRange): Promise<VersionRow[]>;
  filings(): Promise<FilingView[]>;
  file(args: FileCurrentArgs): Promise<FilingRow>;
  rejects(examplesPerReason: number): Promise<DeadLetterSummary>;
}

export interface SourceFlags extends StoreFlags {
  target?: string;
}

/** Adds --target and the store flags to a command. */
export function withSourceFlags(command: Command): Command {
  command.option(
    '--target <host:port>',
    'use the Query gRPC service at this address (serve-query, or a cluster node) instead of opening the store',
    targetFlag,
  );

  return withStoreFlags(command);
}

/**
 * Runs `fn` over the source the flags name and closes it afterwards. `command` tells
 * whether a store flag was typed beside --target, which is refused rather than ignored.
 */
export async function withQuerySource<T>(
  flags: SourceFlags,
  command: Command,
  fn: (source: QuerySource) => Promise<T>,
): Promise<T> {
  if (flags.target !== undefined) {
    const typed = ['dataDir', 'postgres', 'postgresSchema'].filter(
      (name) => command.getOptionValueSource(name) === 'cli',
    );
    if (typed.length > 0) {
      throw new CommandExit(
        2,
        `--target reads through the Query service; leave out ${typed.map(flagName).join(', ')}`,
      );
    }

    const client = await QueryClient.connect(flags.target);
    try {
      return await fn(client);
    } finally {
      client.close();
    }
  }

  const warehouse = await openWarehouse(flags, true);
  try {
    return await fn({
      current: (range) => warehouse.queryCurrent(range),
      history: (range) => warehouse.queryHistory(range),
      filings: () => warehouse.listFilings(),
      file: (args) => warehouse.fileCurrent(args),
      rejects: (examplesPerReason) => warehouse.rejectSummary(examplesPerReason),
    });
  } finally {
    await warehouse.close();
  }
}

/** `postgresSchema` -> `--postgres-schema`. */
function flagName(option: string): string {
  return `--${option.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}
