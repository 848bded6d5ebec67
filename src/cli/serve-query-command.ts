import { Command, Option } from 'commander';

import { durationFlag } from '../config/index.js';
import { createLogger } from '../observability/index.js';
import { startQueryServer } from '../transport/query-server.js';
import { STOP_SIGNALS, hostPart, nextSignal, portFlag } from './process-support.js';
import { openWarehouse, withStoreFlags, type StoreFlags } from './warehouse-options.js';

interface ServeQueryFlags extends StoreFlags {
  host: string;
  port: number;
  pollInterval: number;
  logLevel: string;
}

export function serveQueryCommand(): Command {
  const command = new Command('serve-query')
    .description(
      'serve the Query gRPC service (with health checking and reflection) over the store until SIGINT or SIGTERM',
    )
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'port to listen on; 0 picks a free one', portFlag, 7400)
    .addOption(
      new Option(
        '--poll-interval <duration>',
        'how often WatchVersions streams look for new versions',
      )
        .argParser(durationFlag)
        .default(500, '500ms'),
    )
    .option('--log-level <level>', 'pino log level on stderr', 'info');
  withStoreFlags(command);

  return command.action(async (flags: ServeQueryFlags) => {
    const logger = createLogger({ level: flags.logLevel, component: 'query-service' });
    const warehouse = await openWarehouse(flags);

    try {
      const server = await startQueryServer({
        warehouse,
        address: `${hostPart(flags.host)}:${flags.port}`,
        pollIntervalMs: flags.pollInterval,
        logger,
      });
      const signal = await nextSignal(STOP_SIGNALS);
      logger.info({ signal }, 'stop signal received');
      await server.close();
    } finally {
      await warehouse.close();
    }
  });
}
