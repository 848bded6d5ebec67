/**
 * `speedlayer shard`: the shard process role. It registers its membership in etcd, waits
 * for the ring the elected coordinator writes, holds the partitions the ring assigns to
 * it in a {@link PartitionHost}, and serves them with a {@link ShardServer}. With a
 * warehouse (--postgres) the same port also serves Ingest, judged by this node's router
 * and routed to the partitions' owners, and Query. Every shard's port also answers
 * Coordinator.Status, from the record the leader keeps in etcd.
 *
 * When the ring changes, the shard reopens its host under the new epoch with the
 * partitions the ring now gives it (see {@link RingAssignment}): partitions reach it with
 * their state through the Shard service's Adopt before the coordinator switches the ring
 * (docs/cluster.md, "Partition handoff"), and the state of partitions that moved away is
 * dropped when the host reopens.
 *
 * With `--metrics-port` the shard serves Prometheus metrics at `/metrics` (see
 * `src/transport/shard-metrics.ts`), from the start, so that a shard waiting for its ring
 * is visible too.
 */
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { Command, Option } from 'commander';

import {
  ENGINE_DEFAULTS,
  byteSizeFlag,
  defaultDataDir,
  durationFlag,
  formatDuration,
} from '../config/index.js';
import {
  createLogger,
  createMetricsRegistry,
  startMetricsServer,
  type Logger,
  type MetricsServer,
  type Registry,
} from '../observability/index.js';
import {
  EtcdCoordinationStore,
  MIN_LEASE_TTL_SECONDS,
  RingError,
  isRingError,
  type Membership,
  type Ring,
  type Subscription,
} from '../ring/index.js';
import { PartitionHost } from '../shard/partition-host.js';
import { RingAssignment } from '../shard/ring-assignment.js';
import { INGEST_SERVICE } from '../transport/ingest-server.js';
import { RingView } from '../transport/routing-table.js';
import type { ServedService } from '../transport/served-service.js';
import { ShardMetrics } from '../transport/shard-metrics.js';
import { ShardServer } from '../transport/shard-server.js';
import { statusService } from '../transport/status-service.js';
import { CommandExit } from './io.js';
import {
  hostPart,
  nextSignal,
  partitionCountFlag,
  portFlag,
  urlListFlag,
} from './process-support.js';
import {
  ShardIngest,
  ingestSettingsOf,
  withIngestFlags,
  type IngestFlags,
} from './shard-ingest.js';

interface ShardFlags extends IngestFlags {
  id: string;
  etcd: string[];
  cluster: string;
  partitions: number;
  dataDir: string;
  host: string;
  port: number;
  advertise?: string;
  metricsHost: string;
  metricsPort?: number;
  allowedLateness: number;
  memoryBudget: number;
  leaseTtl: number;
  routerSilence: number;
  logLevel: string;
}

/** How long to wait between attempts to register while a previous lease holds the id. */
const REGISTER_RETRY_MS = 250;

const HANDOFF_NOTE = `
Ring changes: when the ring in etcd changes, the shard logs 'ring changed' and reopens
its partitions under the new epoch. The coordinator moves a partition only after its
state was copied here (Shard.Adopt); partitions that moved away are dropped from this
shard's store when it reopens.

Restarts: a shard restarted with a fixed --port (and no --advertise) takes its
registration over from its previous incarnation at once; otherwise it waits for the
previous lease to expire (--lease-ttl) before it registers again.

Ingest: with --postgres (or SPEEDLAYER_POSTGRES_URL) the port also serves
speedlayer.v1.Ingest and speedlayer.v1.Query. Events are judged here (--watermark,
--restatement-horizon, --max-future-skew, --max-out-of-orderness), routed to the
shards that own their partitions, and acknowledged once durable there; rejected ones
go to the dead-letter table. The router's position is kept in <data-dir>/router.json.
Without a warehouse the shard serves the Shard service only.

Metrics: with --metrics-port, Prometheus metrics at http://HOST:PORT/metrics, labelled
role="shard" and shard_id: ingest batches by outcome, events accepted and rejected by
reason, unreadable records, routed batches delivered, retried and queued by owner,
partitions owned, ring epoch, known users, events applied here, and resent batches
acknowledged again without applying.`;

export function shardCommand(): Command {
  const command = new Command('shard')
    .description(
      'run a shard: register in etcd, wait for the ring to assign partitions, and serve them over gRPC (Shard service, health, reflection) until SIGINT or SIGTERM',
    )
    .requiredOption('--id <id>', "this shard's id in the ring (stable across restarts)")
    .requiredOption('--etcd <urls>', 'etcd client URLs, comma-separated', urlListFlag)
    .requiredOption(
      '--cluster <name>',
      'cluster name: the etcd keys live under /speedlayer/<name>/',
    )
    .requiredOption('--partitions <P>', 'partition count P of the cluster', partitionCountFlag)
    .option(
      '--data-dir <dir>',
      'data directory of the partition state; SPEEDLAYER_DATA_DIR sets the default',
      defaultDataDir(),
    )
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'port to listen on; 0 picks a free one', portFlag, 0)
    .option(
      '--advertise <host:port>',
      'address other processes reach this shard at (default: the bound address)',
    )
    .option('--metrics-host <host>', 'address the metrics endpoint listens on', '127.0.0.1')
    .option(
      '--metrics-port <port>',
      'serve Prometheus metrics at http://HOST:PORT/metrics; 0 picks a free one',
      portFlag,
    )
    .addOption(
      new Option('--allowed-lateness <duration>', 'how long a period stays open after it ends')
        .argParser(durationFlag)
        .default(ENGINE_DEFAULTS.allowedLatenessMs, '10m'),
    )
    .addOption(
      new Option('--memory-budget <size>', 'memory for sets and dictionaries before spilling')
        .argParser(byteSizeFlag)
        .default(ENGINE_DEFAULTS.memoryBudgetBytes, '1GiB'),
    )
    .addOption(
      new Option('--lease-ttl <duration>', 'TTL of the membership lease in etcd')
        .argParser(durationFlag)
        .default(5000, '5s'),
    )
    .addOption(
      new Option(
        '--router-silence <duration>',
        "a router not heard from for this long stops holding this shard's partitions back",
      )
        .argParser(durationFlag)
        .default(10_000, '10s'),
    )
    .option('--log-level <level>', 'pino log level on stderr', 'info')
    .addHelpText('after', HANDOFF_NOTE);
  withIngestFlags(command);

  return command.action(async (flags: ShardFlags) => {
    await runShard(flags, createLogger({ level: flags.logLevel }));
  });
}

/** Why the shard stops: a signal (exit 0) or a failure it cannot recover from (exit 1). */
type StopReason = { signal: NodeJS.Signals } | { error: unknown };

/** `base` goes to the coordination store, which names its own component. */
async function runShard(flags: ShardFlags, base: Logger): Promise<void> {
  const logger = base.child({ component: 'shard' });
  const leaseTtlSeconds = Math.ceil(flags.leaseTtl / 1000);
  if (leaseTtlSeconds < MIN_LEASE_TTL_SECONDS) {
    throw new CommandExit(
      2,
      `--lease-ttl must be at least ${MIN_LEASE_TTL_SECONDS}s, got ${formatDuration(flags.leaseTtl)}`,
    );
  }
  // Checked before anything opens, so that a wrong flag stops the shard at once.
  ingestSettingsOf(flags, flags.partitions, flags.allowedLateness);
  checkPorts(flags);

  let stop!: (reason: StopReason) => void;
  const stopped = new Promise<StopReason>((resolve) => (stop = resolve));
  void nextSignal().then((signal) => stop({ signal }));
  let stopping = false;
  void stopped.then(() => (stopping = true));

  const shard = new ShardRole(flags, logger, base, (error) => stop({ error }));
  try {
    await Promise.race([shard.start(() => stopping), stopped]);
    const reason = await stopped;
    if ('signal' in reason) logger.info({ signal: reason.signal }, 'stop signal received');
    else logger.error({ err: reason.error }, 'shard failed; stopping');
    await shard.drain();
    if ('error' in reason) {
      const text = reason.error instanceof Error ? reason.error.message : String(reason.error);
      throw new CommandExit(1, text);
    }
  } catch (err) {
    await shard.drain().catch(() => undefined);
    throw err;
  }
}

/** The running parts of one shard process, and how they start, follow the ring and drain. */
class ShardRole {
  private host: PartitionHost | undefined;
  private server: ShardServer | undefined;
  private store: EtcdCoordinationStore | undefined;
  private membership: Membership | undefined;
  private subscription: Subscription | undefined;
  private shardsSubscription: Subscription | undefined;
  /** The ring and the shards' addresses, as the ingest router routes by them. */
  private readonly routing = new RingView();
  private ingest: ShardIngest | undefined;
  /** With --metrics-port: this process's metrics and their endpoint. */
  private readonly metrics: ShardMetrics | undefined;
  private metricsServer: MetricsServer | undefined;
  /** The partitions the ring assigns to this shard, once the server runs. */
  private assignment: RingAssignment | undefined;
  /** Ring changes are handled one at a time, in order. */
  private queue: Promise<void> = Promise.resolve();
  private draining: Promise<void> | undefined;
  private starting: Promise<void> | undefined;

  constructor(
    private readonly flags: ShardFlags,
    private readonly logger: Logger,
    private readonly baseLogger: Logger,
    private readonly fail: (error: unknown) => void,
  ) {
    if (flags.metricsPort !== undefined) {
      this.metrics = new ShardMetrics(shardRegistry(flags.id));
      this.metrics.observeHost(() => this.server?.host ?? this.host);
    }
  }

  private get stateDir(): string {
    return path.join(this.flags.dataDir, 'shard');
  }

  /**
   * Listens (NOT_SERVING) over an empty host so that the address is known, registers the
   * membership, and follows the ring. Resolves once the ring is watched.
   */
  start(isStopping: () => boolean): Promise<void> {
    this.starting ??= this.begin(isStopping);

    return this.starting;
  }

  private async begin(isStopping: () => boolean): Promise<void> {
    const f = this.flags;
    await this.serveMetrics();
    this.host = await this.openHost([], 0);
    this.ingest = await this.openIngest();
    this.server = await ShardServer.start({
      host: this.host,
      address: `${hostPart(f.host)}:${f.port}`,
      logger: this.logger,
      serving: false,
      services: [...(this.ingest?.services ?? []), this.statusService()],
      metrics: this.metrics,
    });
    if (this.ingest !== undefined) {
      this.server.setServiceServing(INGEST_SERVICE, this.ingest.router.ready);
    }
    const address = f.advertise ?? this.server.address;
    this.assignment = new RingAssignment({
      shardId: f.id,
      partitionCount: f.partitions,
      slot: this.server,
      open: (partitions, ringEpoch) => this.openHost(partitions, ringEpoch, true),
      logger: this.logger,
    });

    this.store = await EtcdCoordinationStore.open({
      endpoints: f.etcd,
      clusterName: f.cluster,
      logger: this.baseLogger,
    });
    // A shard with another partition count must not register: the leader would plan moves
    // to it, fail them and bump the ring epoch before the shard found out from the ring.
    const ring = await this.store.readRing();
    if (ring !== undefined && ring.partitions !== f.partitions) {
      throw new Error(
        `[SL-CONFIG-001] the ring in etcd has ${ring.partitions} partitions; this shard was started with --partitions ${f.partitions}`,
      );
    }
    // A fixed port bound by this process proves that the previous holder of the address is gone.
    const takeOverSameRecord = f.port !== 0 && f.advertise === undefined;
    for (let attempt = 1; ; attempt++) {
      try {
        this.membership = await this.store.registerShard(
          f.id,
          address,
          Math.ceil(f.leaseTtl / 1000),
          { takeOverSameRecord },
        );
        break;
      } catch (err) {
        if (isStopping() || !(isRingError(err) && err.retryable)) throw err;
        if (attempt === 1) {
          this.logger.info(
            { shardId: f.id, reason: err.message },
            'shard id still registered (a previous lease, or etcd unavailable); retrying',
          );
        }
        await sleep(REGISTER_RETRY_MS);
      }
    }
    if (isStopping()) return;
    this.membership.once('lost', (err) => this.fail(err));
    // A shard that starts is a member: a decommission that it outlived is over.
    if ((await this.store.listLeaving()).includes(f.id)) {
      await this.store.clearLeaving(f.id);
      this.logger.info(
        { shardId: f.id },
        'leaving mark cleared: this shard takes partitions again',
      );
    }
    this.logger.info({ shardId: f.id, address }, 'waiting for ring assignment');

    this.subscription = await this.store.watchRing((ring) => {
      this.routing.setRing(ring);
      this.queue = this.queue.then(() => this.onRing(ring)).catch((err: unknown) => this.fail(err));
    });
    this.subscription.on('failure', (err) =>
      this.logger.warn({ err }, 'ring watch failed; retrying'),
    );
    if (this.ingest !== undefined) {
      // The ingest router reaches the other owners at the addresses they registered.
      this.shardsSubscription = await this.store.watchShards((shards) =>
        this.routing.setAddresses(shards),
      );
      this.shardsSubscription.on('failure', (err) =>
        this.logger.warn({ err }, 'shard membership watch failed; retrying'),
      );
    }
  }

  /** The metrics endpoint, with --metrics-port. */
  private async serveMetrics(): Promise<void> {
    const f = this.flags;
    if (this.metrics === undefined || f.metricsPort === undefined) return;

    this.metricsServer = await startMetricsServer({
      registry: this.metrics.registry,
      host: f.metricsHost,
      port: f.metricsPort,
      logger: this.logger,
    });
  }

  /** Coordinator.Status on this port, answered from the leader's record in etcd. */
  private statusService(): ServedService {
    return statusService({
      source: () => {
        const store = this.store;
        if (store === undefined) {
          return Promise.reject(
            new RingError('unavailable', 'this shard is not connected to etcd yet'),
          );
        }

        return store.readStatus();
      },
      answeredBy: this.flags.id,
      logger: this.logger,
    });
  }

  /** The Ingest and Query services, when a warehouse is given; logs that ingest is off otherwise. */
  private async openIngest(): Promise<ShardIngest | undefined> {
    const f = this.flags;
    if (f.postgres === undefined) {
      this.logger.info(
        { shardId: f.id },
        'ingest off: no --postgres, so this port serves the Shard service only',
      );
      return undefined;
    }

    const ingest = await ShardIngest.open(f, {
      nodeId: f.id,
      dataDir: f.dataDir,
      settings: ingestSettingsOf(f, f.partitions, f.allowedLateness),
      ring: this.routing,
      localHost: () => this.server?.host,
      logger: this.baseLogger,
      metrics: this.metrics,
    });
    this.routing.onChange(() => this.server?.setServiceServing(INGEST_SERVICE, true));

    return ingest;
  }

  /** Stops the server, checkpoints and closes the host, releases the membership. */
  drain(): Promise<void> {
    this.draining ??= this.shutdown();

    return this.draining;
  }

  private async shutdown(): Promise<void> {
    await this.starting?.catch(() => undefined);
    await this.subscription?.close().catch((err: unknown) => this.warn(err, 'closing ring watch'));
    await this.shardsSubscription
      ?.close()
      .catch((err: unknown) => this.warn(err, 'closing membership watch'));
    await this.queue;
    await this.server?.close();
    // After the server: calls in flight had the grace time to be acknowledged.
    await this.ingest?.close().catch((err: unknown) => this.warn(err, 'closing ingest'));
    const host = this.server?.host ?? this.host;
    if (host !== undefined) {
      await host.checkpoint().catch((err: unknown) => this.warn(err, 'final checkpoint failed'));
      await host.close();
    }
    await this.membership?.release().catch((err: unknown) => this.warn(err, 'release failed'));
    await this.store?.close();
    // Last: the counts of the drain are there to be scraped until the end.
    await this.metricsServer?.close();
    this.logger.info({ shardId: this.flags.id }, 'shard stopped');
  }

  private async onRing(ring: Ring): Promise<void> {
    if (this.draining !== undefined) return;
    const next = await (this.assignment as RingAssignment).apply(ring);
    if (next === undefined) return;

    const server = this.server as ShardServer;
    this.host = next;
    server.setServing(true);
    this.logger.info(
      {
        shardId: this.flags.id,
        ringEpoch: next.ringEpoch,
        partitions: next.partitions,
        address: this.flags.advertise ?? server.address,
      },
      'shard serving',
    );
  }

  /** `dropUnheld`: under a ring; not while waiting for the first (see PartitionHostOptions). */
  private async openHost(
    partitions: number[],
    ringEpoch: number,
    dropUnheld = false,
  ): Promise<PartitionHost> {
    const host = await PartitionHost.open({
      stateDir: this.stateDir,
      partitionCount: this.flags.partitions,
      partitions,
      ringEpoch,
      dropUnheld,
      allowedLatenessMs: this.flags.allowedLateness,
      senderSilenceMs: this.flags.routerSilence,
      memoryBudgetBytes: this.flags.memoryBudget,
      logger: this.logger,
    });
    host.once('failed', (err) => this.fail(err));

    return host;
  }

  private warn(err: unknown, message: string): void {
    this.logger.warn({ err }, message);
  }
}

/** The registry of one shard process: every series labelled with the role and the shard id. */
function shardRegistry(shardId: string): Registry {
  return createMetricsRegistry({ labels: { role: 'shard', shard_id: shardId } });
}

/** The gRPC port and the metrics port on one fixed host and port would fail at the second bind. */
function checkPorts(flags: ShardFlags): void {
  const { host, port, metricsHost, metricsPort } = flags;
  if (metricsPort === undefined || metricsPort === 0 || port === 0) return;
  if (metricsPort !== port || metricsHost !== host) return;

  throw new CommandExit(
    2,
    `--port and --metrics-port are both ${host}:${port}: give each its own port`,
  );
}
