/**
 * `speedlayer coordinator`: the coordinator process role. A {@link CoordinatorService}
 * over the warehouse campaigns in etcd, and while elected writes the ring and runs rounds
 * against the shards; while another process leads it stands by. Each listener is opt-in:
 *
 * - `--port`: the Coordinator service (`Status`), with health checking and reflection;
 *   a standby answers it too, from the status the leader stores in etcd;
 * - `--query-port`: the Query service over the same warehouse, on a server of its own;
 * - `--metrics-port`: Prometheus metrics at `/metrics` (see `coordinator-metrics.ts`).
 */
import { Command, Option } from 'commander';

import { CoordinatorMetrics } from '../coordinator/coordinator-metrics.js';
import { CoordinatorService } from '../coordinator/coordinator-service.js';
import { ENGINE_DEFAULTS, durationFlag, formatDuration } from '../config/index.js';
import {
  createLogger,
  createMetricsRegistry,
  startMetricsServer,
  type MetricsServer,
} from '../observability/index.js';
import { MIN_LEASE_TTL_SECONDS } from '../ring/index.js';
import { startQueryServer, type QueryServer } from '../transport/query-server.js';
import { startCoordinatorServer, type CoordinatorServer } from '../transport/status-service.js';
import { CommandExit } from './io.js';
import {
  hostPart,
  nextSignal,
  partitionCountFlag,
  portFlag,
  positiveIntegerFlag,
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
  initialShards: number;
  host: string;
  port?: number;
  queryHost: string;
  queryPort?: number;
  metricsHost: string;
  metricsPort?: number;
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
    .option(
      '--initial-shards <n>',
      'shards that must be registered before the first ring is written over them',
      positiveIntegerFlag,
      1,
    )
    .option('--host <host>', 'address the Coordinator service listens on', '127.0.0.1')
    .option(
      '--port <port>',
      'serve the Coordinator service (Status, health, reflection) on this port; 0 picks a free one',
      portFlag,
    )
    .option('--query-host <host>', 'address the Query service listens on', '127.0.0.1')
    .option('--query-port <port>', 'also serve the Query service on this port', portFlag)
    .option('--metrics-host <host>', 'address the metrics endpoint listens on', '127.0.0.1')
    .option(
      '--metrics-port <port>',
      'serve Prometheus metrics at http://HOST:PORT/metrics; 0 picks a free one',
      portFlag,
    )
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
    checkPorts(flags);

    // The service names its own component; the process's own lines say 'coordinator'.
    const base = createLogger({ level: flags.logLevel });
    const logger = base.child({ component: 'coordinator' });
    const signal = nextSignal();
    const warehouse = await openWarehouse(flags);
    let query: QueryServer | undefined;
    let status: CoordinatorServer | undefined;
    let metrics: MetricsServer | undefined;
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
        initialShards: flags.initialShards,
        logger: base,
      });
      // The service gives up by itself only on a failure no retry fixes.
      const gaveUp = new Promise<'gave-up'>((resolve) =>
        service?.on('state', (to) => {
          if (to === 'stopping') resolve('gave-up');
        }),
      );
      if (flags.metricsPort !== undefined) {
        const registry = createMetricsRegistry({
          labels: { role: 'coordinator', candidate_id: flags.id },
        });
        new CoordinatorMetrics(registry).observe(service);
        metrics = await startMetricsServer({
          registry,
          host: flags.metricsHost,
          port: flags.metricsPort,
          logger,
        });
      }
      await service.start();
      if (flags.port !== undefined) {
        const source = service;
        status = await startCoordinatorServer({
          address: `${hostPart(flags.host)}:${flags.port}`,
          source: () => source.status(),
          answeredBy: flags.id,
          logger: base.child({ component: 'coordinator-server' }),
        });
      }
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
      await status?.close();
      await service?.close();
      await query?.close();
      await metrics?.close();
      await warehouse.close();
      logger.info({ candidateId: flags.id }, 'coordinator stopped');
    }
  });
}

/** Two listeners on one fixed host and port would fail at the second bind, less clearly. */
function checkPorts(flags: CoordinatorFlags): void {
  const listeners = [
    { flag: '--port', host: flags.host, port: flags.port },
    { flag: '--query-port', host: flags.queryHost, port: flags.queryPort },
    { flag: '--metrics-port', host: flags.metricsHost, port: flags.metricsPort },
  ].filter((l) => l.port !== undefined && l.port !== 0);

  for (const [i, a] of listeners.entries()) {
    const clash = listeners.slice(i + 1).find((b) => b.port === a.port && b.host === a.host);
    if (clash !== undefined) {
      throw new CommandExit(
        2,
        `${a.flag} and ${clash.flag} are both ${a.host}:${a.port}: give each its own port`,
      );
    }
  }
}
