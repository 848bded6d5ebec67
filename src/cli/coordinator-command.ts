/**
 * `speedlayer coordinator`: the coordinator process role. A {@link CoordinatorService}
 * over the warehouse campaigns in etcd, and while elected writes the ring and runs rounds
 * against the shards; while another process leads it stands by. With --query-port it
 * also serves the Query service over the same warehouse.
 */
import { Command, Option } from 'commander';

import { CoordinatorService } from '../coordinator/coordinator-service.js';
import { ENGINE_DEFAULTS, durationFlag, formatDuration } from '../config/index.js';
import { createLogger } from '../observability/index.js';
import { MIN_LEASE_TTL_SECONDS } from '../ring/index.js';
import { startQueryServer, type QueryServer } from '../transport/query-server.js';
import { CommandExit } from './io.js';
import {
  hostPart,
  nextSignal,
  partitionCountFlag,
  portFlag,
  urlListFlag,
} from './process-support.js';
import { openWarehouse, withStoreFlags, type StoreFlags } from './warehouse-options.js';

interface CoordinatorFlags extends StoreFlags {
  id: string;
  etcd: string[];
  cluster: string;
  partitions: number;
  allowedLateness: number;
  roundInterval: number;
  leaseTtl: number;
  queryHost: string;
  queryPort?: number;
  logLevel: string;
}

export function coordinatorCommand(): Command {
  const command = new Command('coordinator')
    .description(
      'run a coordinator: campaign in etcd; while elected, write the ring and publish rounds to the warehouse; until SIGINT or SIGTERM',
    )
    .requiredOption('--id <id>', "this coordinator's name in the election, e.g. the pod name")
    .requiredOption('--etcd <urls>', 'etcd client URLs, comma-separated', urlListFlag)
    .requiredOption(
      '--cluster <name>',
      'cluster name: the etcd keys live under /speedlayer/<name>/',
    )
    .requiredOption('--partitions <P>', 'partition count P of the cluster', partitionCountFlag)
    .addOption(
      new Option('--allowed-lateness <duration>', 'how long a period stays open after it ends')
        .argParser(durationFlag)
        .default(ENGINE_DEFAULTS.allowedLatenessMs, '10m'),
    )
    .addOption(
      new Option('--round-interval <duration>', 'how often the leader runs a round')
        .argParser(durationFlag)
        .default(1000, '1s'),
    )
    .addOption(
      new Option('--lease-ttl <duration>', 'TTL of the election lease in etcd')
        .argParser(durationFlag)
        .default(5000, '5s'),
    )
    .option('--query-host <host>', 'address the Query service listens on', '127.0.0.1')
    .option('--query-port <port>', 'also serve the Query service on this port', portFlag)
    .option('--log-level <level>', 'pino log level on stderr', 'info');
  withStoreFlags(command);

  return command.action(async (flags: CoordinatorFlags) => {
    const leaseTtlSeconds = Math.ceil(flags.leaseTtl / 1000);
    if (leaseTtlSeconds < MIN_LEASE_TTL_SECONDS) {
      throw new CommandExit(
        2,
        `--lease-ttl must be at least ${MIN_LEASE_TTL_SECONDS}s, got ${formatDuration(flags.leaseTtl)}`,
      );
    }
    if (flags.roundInterval <= 0) throw new CommandExit(2, '--round-interval must be positive');

    // The service names its own component; the process's own lines say 'coordinator'.
    const base = createLogger({ level: flags.logLevel });
    const logger = base.child({ component: 'coordinator' });
    const signal = nextSignal();
    const warehouse = await openWarehouse(flags);
    let query: QueryServer | undefined;
    let service: CoordinatorService | undefined;

    try {
      service = new CoordinatorService({
        coordination: { endpoints: flags.etcd, clusterName: flags.cluster },
        sink: warehouse,
        candidateId: flags.id,
        partitions: flags.partitions,
        allowedLatenessMs: flags.allowedLateness,
        roundIntervalMs: flags.roundInterval,
        leaseTtlSeconds,
        logger: base,
      });
      // The service gives up by itself only on a failure no retry fixes.
      const gaveUp = new Promise<'gave-up'>((resolve) =>
        service?.on('state', (to) => {
          if (to === 'stopping') resolve('gave-up');
        }),
      );
      await service.start();
      if (flags.queryPort !== undefined) {
        query = await startQueryServer({
          warehouse,
          address: `${hostPart(flags.queryHost)}:${flags.queryPort}`,
          logger: base.child({ component: 'query-service' }),
        });
      }

      const reason = await Promise.race([signal, gaveUp]);
      if (reason === 'gave-up') {
        throw new CommandExit(1, 'the coordinator service stopped on an unrecoverable failure');
      }
      logger.info({ signal: reason }, 'stop signal received');
    } finally {
      await service?.close();
      await query?.close();
      await warehouse.close();
      logger.info({ candidateId: flags.id }, 'coordinator stopped');
    }
  });
}
