import { Command, Option } from 'commander';

import { durationFlag, integerFlag } from '../config/index.js';
import { createLogger } from '../observability/index.js';
import { startQueryServer } from '../transport/query-server.js';
import { openWarehouse, withStoreFlags, type StoreFlags } from './warehouse-options.js';

interface ServeQueryFlags extends StoreFlags {
  host: string;
  port: number;
  pollInterval: number;
  logLevel: string;
}

/** Signals that make `serve-query` drain and exit; a second one ends the process at once. */
const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];

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

function portFlag(value: string): number {
  const port = integerFlag(value);
  if (port < 0 || port > 65_535) throw new Error(`not a port: '${value}' (0 to 65535)`);

  return port;
}

/** An IPv6 host goes in brackets before `:port`. */
function hostPart(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

/**
 * Resolves with the first of `signals` the process receives. Its handlers are removed
 * then, so that a second signal during the drain ends the process the default way.
 */
function nextSignal(signals: readonly NodeJS.Signals[]): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      for (const s of signals) process.off(s, onSignal);
      resolve(signal);
    };
    for (const s of signals) process.on(s, onSignal);
  });
}
