/**
 * The Shard service over a partition host: nodes route partition batches to it, and the
 * coordinator gathers reports and counts from it and acknowledges what it published. The
 * same server answers standard gRPC health checks and server reflection, so that probes
 * and grpcurl work against a shard, and may serve other services on the same port (see
 * {@link ServedService}): a shard process adds Ingest and Query.
 */

import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';

import type { Logger } from '../observability/index.js';
import { ShardError, isShardError } from '../shard/errors.js';
import type { PartitionHost } from '../shard/partition-host.js';
import type { PartitionBatch } from '../shard/types.js';
import { firstMisplacedUser } from '../shard/user-hash.js';
import { SERVER_KEEPALIVE_OPTIONS } from './keepalive.js';
import { reflectionDefinition } from './grpc-server-support.js';
import type { ServedService } from './served-service.js';
import { toGrpcStatus } from './shard-errors.js';
import {
  addSpeedlayerService,
  loadSpeedlayerProtos,
  partitionAckFromWire,
  partitionBatchFromWire,
  partitionCountsToWire,
  periodKeyFromWire,
  reportToWire,
  WireFormatError,
  type ShardHandlers,
} from './proto.js';
import { SHARD_MAX_MESSAGE_BYTES } from './shard-client.js';
import { shardHandoffHandlers } from './shard-handoff.js';
import type { ShardMetrics } from './shard-metrics.js';

const SHARD_SERVICE = 'speedlayer.v1.Shard';
const HEALTH_SERVICE = 'grpc.health.v1.Health';
/** What the shard's own health follows: the server as a whole ('') and the Shard service. */
const SHARD_SERVED = ['', SHARD_SERVICE];

export interface ShardServerOptions {
  /** The partitions to serve. The server does not own the host: closing it leaves the host open. */
  readonly host: PartitionHost;
  /** Where to listen, `host:port`; port 0 takes a free port. */
  readonly address: string;
  readonly logger: Logger;
  /** How long {@link ShardServer.close} lets calls in flight finish before cancelling them. @default 5000 */
  readonly shutdownGraceMs?: number;
  /** @default insecure */
  readonly credentials?: grpc.ServerCredentials;
  /** Passed to grpc-js. @default a 64 MiB receive limit */
  readonly serverOptions?: grpc.ServerOptions;
  /**
   * What health checks answer at first: SERVING, or NOT_SERVING until
   * {@link ShardServer.setServing} (a shard process waiting for its ring assignment).
   * @default true
   */
  readonly serving?: boolean;
  /**
   * Other services on the same port, each listed by health checking (with its own
   * status, see {@link ShardServer.setServiceServing}) and reflection. @default none
   */
  readonly services?: readonly ServedService[];
  /** Where the events that routed batches apply here are counted. @default not counted */
  readonly metrics?: ShardMetrics;
}

/** A running Shard service, with health checking and reflection. */
export class ShardServer {
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly server: grpc.Server,
    private readonly health: HealthImplementation,
    private readonly options: ShardServerOptions,
    private readonly current: { host: PartitionHost },
    /** The port it listens on; the one the system picked when asked for port 0. */
    readonly port: number,
    private readonly onFailed: (err: ShardError) => void,
  ) {}

  /** The host the calls go to now. */
  get host(): PartitionHost {
    return this.current.host;
  }

  /** Binds the address and serves until {@link close}. */
  static async start(options: ShardServerOptions): Promise<ShardServer> {
    const logger = options.logger;
    const server = new grpc.Server({
      'grpc.max_receive_message_length': SHARD_MAX_MESSAGE_BYTES,
      ...SERVER_KEEPALIVE_OPTIONS,
      ...options.serverOptions,
    });

    const current = { host: options.host };
    addSpeedlayerService(
      server,
      loadSpeedlayerProtos().shard,
      shardHandlers(() => current.host, logger, options.metrics),
    );
    const extras = options.services ?? [];
    for (const service of extras) service.register(server);
    const status = options.serving === false ? 'NOT_SERVING' : 'SERVING';
    const health = new HealthImplementation({
      ...Object.fromEntries(SHARD_SERVED.map((service) => [service, status])),
      ...Object.fromEntries(
        extras.map((s) => [s.name, s.serving === false ? 'NOT_SERVING' : 'SERVING']),
      ),
    });
    health.addToServer(server);
    new ReflectionService(
      reflectionDefinition(['speedlayer/v1/shard.proto', ...extras.map((s) => s.protoFile)]),
      {
        services: [SHARD_SERVICE, HEALTH_SERVICE, ...extras.map((s) => s.name)],
      },
    ).addToServer(server);

    const onFailed = (err: ShardError): void => {
      logger.error({ err }, 'partition state store failed; the shard must restart');
      for (const service of SHARD_SERVED) health.setStatus(service, 'NOT_SERVING');
    };
    options.host.on('failed', onFailed);

    try {
      const port = await bind(server, options);
      const shard = new ShardServer(server, health, options, current, port, onFailed);
      logger.info(
        {
          address: shard.address,
          partitions: options.host.partitions,
          ringEpoch: options.host.ringEpoch,
          services: [SHARD_SERVICE, ...extras.map((s) => s.name)],
        },
        'shard server listening',
      );

      return shard;
    } catch (err) {
      options.host.off('failed', onFailed);
      server.forceShutdown();
      throw err;
    }
  }

  /** `host:port` as bound, e.g. `127.0.0.1:40311`. */
  get address(): string {
    const given = this.options.address;

    return `${given.slice(0, given.lastIndexOf(':'))}:${this.port}`;
  }

  /**
   * Sends every call from now on to `next` and returns the host it replaces, which stays
   * open: the caller closes it (a shard reopening its partitions under a new ring epoch).
   * Calls already running on the old host finish there.
   */
  replaceHost(next: PartitionHost): PartitionHost {
    const previous = this.current.host;
    previous.off('failed', this.onFailed);
    next.on('failed', this.onFailed);
    this.current.host = next;

    return previous;
  }

  /** What health checks answer for the server and the Shard service from now on (ignored once closing). */
  setServing(serving: boolean): void {
    if (this.closing !== undefined) return;
    for (const service of SHARD_SERVED)
      this.health.setStatus(service, serving ? 'SERVING' : 'NOT_SERVING');
  }

  /** What health checks answer for one of the other services from now on (ignored once closing). */
  setServiceServing(name: string, serving: boolean): void {
    if (this.closing !== undefined) return;
    if (!(this.options.services ?? []).some((s) => s.name === name)) {
      throw new Error(`${name} is not served here`);
    }
    this.health.setStatus(name, serving ? 'SERVING' : 'NOT_SERVING');
  }

  /**
   * Reports NOT_SERVING, refuses new calls, lets calls in flight finish within the grace
   * time and cancels the rest. Leaves the host open. Safe to call twice.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();

    return this.closing;
  }

  private async shutdown(): Promise<void> {
    const extras = this.options.services ?? [];
    for (const service of [...SHARD_SERVED, ...extras.map((s) => s.name)]) {
      this.health.setStatus(service, 'NOT_SERVING');
    }
    for (const service of extras) service.drain?.();
    this.current.host.off('failed', this.onFailed);

    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, this.options.shutdownGraceMs ?? 5000);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });

    this.options.logger.info({ address: this.address }, 'shard server stopped');
  }
}

/**
 * The Shard service's handlers over `target`: a host, or a function that returns the
 * host to use for each call.
 */
export function shardHandlers(
  target: PartitionHost | (() => PartitionHost),
  logger: Logger,
  metrics?: ShardMetrics,
): ShardHandlers {
  const hostOf = typeof target === 'function' ? target : (): PartitionHost => target;

  return {
    ...shardHandoffHandlers(hostOf, logger),
    Route: unary('Route', logger, async (request) => {
      const host = hostOf();
      checkEpoch(host, request.ring_epoch);
      const batch = partitionBatchFromWire(request.batch);
      checkPlacement(batch, host.partitionCount);
      const stamp = { senderId: request.sender_id, sequence: request.sequence };
      const outcome = await host.route(stamp, batch);
      metrics?.noteRouted(outcome, batch.length);

      return {
        partition: outcome.partition,
        sequence: outcome.sequence,
        duplicate: outcome.duplicate,
        ...(Number.isFinite(outcome.watermarkMs) ? { watermark_ms: outcome.watermarkMs } : {}),
      };
    }),

    Report: unary('Report', logger, async (request) => {
      const host = hostOf();
      checkEpoch(host, request.ring_epoch);
      const reports = await host.reports(request.partitions);

      return { ring_epoch: host.ringEpoch, reports: reports.map(reportToWire) };
    }),

    Counts: unary('Counts', logger, async (request) => {
      const host = hostOf();
      checkEpoch(host, request.ring_epoch);
      const keys = request.periods.map(periodKeyFromWire);
      const counts = await host.counts(keys, request.partitions);

      return {
        ring_epoch: host.ringEpoch,
        partitions: counts.map((c) => partitionCountsToWire(c.partition, c.counts)),
      };
    }),

    Acknowledge: unary('Acknowledge', logger, async (request) => {
      const host = hostOf();
      checkEpoch(host, request.ring_epoch);
      const acks = request.acks.map(partitionAckFromWire);
      await host.acknowledge(acks, { fencingToken: request.fencing_token, round: request.round });

      return {};
    }),

    Checkpoint: unary('Checkpoint', logger, async (request) => {
      const host = hostOf();
      checkEpoch(host, request.ring_epoch);
      await host.checkpoint();

      return { ring_epoch: host.ringEpoch, partitions: host.partitions };
    }),
  };
}

/** A unary handler: runs `handle` and answers with its result or its mapped error. */
function unary<Req, Res>(
  method: string,
  logger: Logger,
  handle: (request: Req) => Promise<Res>,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    handle(call.request).then(
      (response) => callback(null, response),
      (err: unknown) => {
        // Refusals are the caller's to act on; anything unexpected is ours.
        if (isShardError(err) && err.kind !== 'internal') {
          logger.debug({ method, err }, 'shard call refused');
        } else if (err instanceof WireFormatError) {
          // The sender logs it at error, once, and retries it until an operator acts.
          logger.warn({ method, err }, 'shard call refused: malformed request');
        } else {
          logger.error({ method, err }, 'shard call failed');
        }
        callback(toGrpcStatus(err));
      },
    );
  };
}

/** Refuses a batch holding a user id that is not this partition's, or not its slot hash. */
function checkPlacement(batch: PartitionBatch, partitionCount: number): void {
  const misplaced = firstMisplacedUser(
    batch.userIds,
    batch.slotHashes,
    batch.partition,
    partitionCount,
  );
  if (misplaced === undefined) return;

  const problems: string[] = [];
  if (misplaced.partition !== batch.partition) {
    problems.push(`hashes to partition ${misplaced.partition}`);
  }
  if (misplaced.wrongSlotHash) problems.push('was sent with a slot hash that is not its own');
  throw new WireFormatError(
    `partition ${batch.partition} batch: the user id at ${misplaced.index} ${problems.join(' and ')} (P = ${partitionCount}); ` +
      'the sender partitions user ids differently from this shard',
  );
}

function checkEpoch(host: PartitionHost, ringEpoch: number): void {
  if (ringEpoch === host.ringEpoch) return;

  throw new ShardError(
    'epoch-mismatch',
    `call made under ring epoch ${ringEpoch}; this shard holds ring epoch ${host.ringEpoch}`,
    { ringEpoch: host.ringEpoch },
  );
}

function bind(server: grpc.Server, options: ShardServerOptions): Promise<number> {
  const credentials = options.credentials ?? grpc.ServerCredentials.createInsecure();

  return new Promise((resolve, reject) =>
    server.bindAsync(options.address, credentials, (err, port) =>
      err
        ? reject(
            new ShardError('unavailable', `cannot listen on ${options.address}: ${err.message}`, {
              cause: err,
            }),
          )
        : resolve(port),
    ),
  );
}
