import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Command } from 'commander';

import { resolveEngineSettings } from '../config/index.js';
import { runReplay } from '../embedded/replay.js';
import { createLogger } from '../observability/index.js';
import { formatCurrent } from '../query/index.js';
import { Warehouse } from '../sink/warehouse.js';
import type { CliIo } from './io.js';
import { formatSummary } from './replay-command.js';

/** The dataset shipped in the repository for the demo (see its README for the licence). */
export const DEMO_DATASET = fileURLToPath(
  new URL('../../datasets/elastic-apache-logs/apache_logs', import.meta.url),
);

export function demoCommand(io: CliIo): Command {
  return new Command('demo')
    .description(
      'replay the bundled real access log (10,000 requests, May 2015) and print its DAU and WAU',
    )
    .option(
      '--data-dir <dir>',
      'keep the data here (default: a temporary directory, removed afterwards)',
    )
    .option('--log-level <level>', 'pino log level on stderr', 'warn')
    .action(async (flags: { dataDir?: string; logLevel: string }) => {
      const dataDir =
        flags.dataDir ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'speedlayer-demo-')));
      try {
        io.stdout.write(
          `replaying ${path.relative(process.cwd(), DEMO_DATASET)} into ${dataDir}\n`,
        );
        const summary = await runReplay({
          paths: [DEMO_DATASET],
          read: { format: 'combined' },
          dataDir,
          settings: resolveEngineSettings({ watermarkMode: 'event-time' }),
          logger: createLogger({ level: flags.logLevel }),
        });
        io.stdout.write(formatSummary(summary));

        const warehouse = await Warehouse.open({ dataDir });
        try {
          io.stdout.write('\nDaily active users (DAU)\n');
          io.stdout.write(
            formatCurrent(await warehouse.queryCurrent({ periodType: 'day' }), 'table'),
          );
          io.stdout.write('\nWeekly active users (WAU, ISO weeks)\n');
          io.stdout.write(
            formatCurrent(await warehouse.queryCurrent({ periodType: 'week' }), 'table'),
          );
        } finally {
          await warehouse.close();
        }
      } finally {
        if (flags.dataDir === undefined) await fs.rm(dataDir, { recursive: true, force: true });
      }
    });
}
