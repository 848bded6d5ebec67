import { existsSync } from 'node:fs';
import path from 'node:path';

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
    .option(
      '--data-dir <dir>',
      'data directory (state, and the embedded store); SPEEDLAYER_DATA_DIR sets the default',
      defaultDataDir(),
    )
    .option(
      '--postgres <url>',
      'PostgreSQL server for the rows instead of the embedded store; SPEEDLAYER_POSTGRES_URL sets the default',
      defaultPostgresUrl(),
    )
    .option(
      '--postgres-schema <name>',
      'schema for the tables on the PostgreSQL server (created if missing)',
    );
}

/**
 * Opens the warehouse the flags name. With `mustExist`, an embedded store that
 * was never created is an error, not a new empty store (a mistyped --data-dir).
 */
export async function openWarehouse(flags: StoreFlags, mustExist = false): Promise<Warehouse> {
  if (
    mustExist &&
    flags.postgres === undefined &&
    !existsSync(path.join(flags.dataDir, 'warehouse'))
  ) {
    throw new Error(
      `[SL-CLI-001] no speedlayer data in '${flags.dataDir}': run replay first, or name the directory with --data-dir`,
    );
  }

  return Warehouse.open(
    flags.postgres === undefined
      ? { dataDir: flags.dataDir }
      : { postgresUrl: flags.postgres, schema: flags.postgresSchema },
  );
}
