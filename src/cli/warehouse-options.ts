import type { Command } from 'commander';

import { defaultDataDir, defaultPostgresUrl } from '../config/index.js';
import { Warehouse } from '../sink/warehouse.js';

export interface StoreFlags {
  dataDir: string;
  postgres?: string;
  postgresSchema?: string;
}

/** Adds --data-dir and --postgres to a command. */
export function withStoreFlags(command: Command): Command {
  return command
    .option('--data-dir <dir>', 'data directory (state, and the embedded store)', defaultDataDir())
    .option(
      '--postgres <url>',
      'PostgreSQL server for the rows instead of the embedded store',
      defaultPostgresUrl(),
    )
    .option(
      '--postgres-schema <name>',
      'schema for the tables on the PostgreSQL server (created if missing)',
    );
}

/** Opens the warehouse the flags name. */
export function openWarehouse(flags: StoreFlags): Promise<Warehouse> {
  return Warehouse.open(
    flags.postgres === undefined
      ? { dataDir: flags.dataDir }
      : { postgresUrl: flags.postgres, schema: flags.postgresSchema },
  );
}
