/**
 * The Coordinator service (coordinator.proto): `Status` tells who leads, which ring the
 * rounds run on, and which partitions hold numbers back. Any process with etcd access
 * can answer it from the record the leader stores there, so the handlers take a status
 * source rather than a coordinator.
 *
 * - {@link addStatusService} adds the service to any grpc.Server (a shard serves it with
 *   one call, naming {@link COORDINATOR_SERVICE} and {@link COORDINATOR_PROTO_FILE} in its
 *   health and reflection services);
 * - {@link startCoordinatorServer} runs it on a server of its own, with health checking
 *   and reflection, as `speedlayer coordinator --port` does.
 *
 * A source that fails answers UNAVAILABLE (etcd out of reach) or INTERNAL, with an
 * ErrorDetail in the trailer that {@link StatusClient} reads back.
 */

import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';

import type { Logger } from '../observability/index.js';
import {
  isRingError,
  type CoordinationStore,
  type PartitionStatusRecord,
  type StatusRecord,
} from '../ring/index.js';
import { SERVER_KEEPALIVE_OPTIONS } from './keepalive.js';
import {
  PROTO_DIR,
  addSpeedlayerService,
  loadSpeedlayerProtos,
  type CoordinatorHandlers,
  type ErrorDetailWire,
  type StatusResponseWire,
} from './proto.js';
import { bindInsecure, reflectionDefinition, shutdownWithin } from './grpc-server-support.js';
import type { ServedService } from './served-service.js';
import { errorDetailTrailer } from './status-details.js';

/** The service's full name, for health checking and reflection. */
export const COORDINATOR_SERVICE = 'speedlayer.v1.Coordinator';
/** The service's proto file, relative to `PROTO_DIR`, for reflection. */
export const COORDINATOR_PROTO_FILE = 'speedlayer/v1/coordinator.proto';

const HEALTH_SERVICE = 'grpc.health.v1.Health';
const SERVED = ['', COORDINATOR_SERVICE] as const;

/** Where the status comes from: a leader's own record, or the one stored in etcd. */
export type StatusSource = () => Promise<StatusRecord | undefined>;

/** The status as any process with etcd access reads it (see `CoordinationStore.readStatus`). */
export function storeStatusSource(store: Pick<CoordinationStore, 'readStatus'>): StatusSource {
  return () => store.readStatus();
}

/** One partition as the Status call tells it. */
export interface PartitionStatusView {
  readonly partition: number;
  /** '' when there is no ring. */
  readonly shardId: string;
  readonly reported: boolean;
  readonly watermarkMs?: number;
}

/** What a Status call answers, in domain terms. */
export interface StatusView {
  /** The process that answered. */
  readonly answeredBy: string;
  /** '' while no leader is elected. */
  readonly leaderId: string;
  /** 0 while no leader is elected. */
  readonly fencingToken: number;
  readonly ringEpoch: number;
  readonly partitionCount: number;
  readonly globalWatermarkMs?: number;
  readonly missingPartitions: readonly number[];
  readonly partitions: readonly PartitionStatusView[];
  /** Absent before the leader's first round. */
  readonly lastRoundAtMs?: number;
}

export interface StatusServiceOptions {
  readonly source: StatusSource;
  /** This process's name, e.g. the coordinator's candidate id or the shard's id. */
  readonly answeredBy: string;
  /** Failures of the source. @default silent */
  readonly logger?: Logger;
}

/** The Coordinator service's handlers. */
export function statusHandlers(options: StatusServiceOptions): CoordinatorHandlers {
  return {
    Status: (_call, callback) => {
      options.source().then(
        (record) => callback(null, statusToWire(record, options.answeredBy)),
        (error: unknown) => {
          const failure = statusFailure(error);
          options.logger?.warn({ err: error, code: failure.code }, 'status call failed');
          callback(failure);
        },
      );
    },
  };
}

/** Adds the Coordinator service to `server`; its health and reflection are the caller's. */
export function addStatusService(server: grpc.Server, options: StatusServiceOptions): void {
  addSpeedlayerService(server, loadSpeedlayerProtos().coordinator, statusHandlers(options));
}

/** The Coordinator service, to be served beside others (a shard's port; see {@link ServedService}). */
export function statusService(options: StatusServiceOptions): ServedService {
  return {
    name: COORDINATOR_SERVICE,
    protoFile: COORDINATOR_PROTO_FILE,
    register: (server) => addStatusService(server, options),
  };
}

export function statusToWire(
  record: StatusRecord | undefined,
  answeredBy: string,
): StatusResponseWire {
  if (record === undefined) {
    return {
      answered_by: answeredBy,
      leader_id: '',
      fencing_token: 0,
      ring_epoch: 0,
      partition_count: 0,
      missing_partitions: [],
      partitions: [],
    };
  }

  return {
    answered_by: answeredBy,
    leader_id: record.leaderId,
    fencing_token: record.fencingToken,
    ring_epoch: record.ringEpoch,
    partition_count: record.partitionCount,
    ...(record.globalWatermarkMs === undefined
      ? {}
      : { global_watermark_ms: record.globalWatermarkMs }),
    missing_partitions: [...record.missingPartitions],
    partitions: record.partitions.map(partitionToWire),
    ...(record.lastRoundAtMs === undefined ? {} : { last_round_at_ms: record.lastRoundAtMs }),
  };
}

export function statusFromWire(wire: StatusResponseWire): StatusView {
  return {
    answeredBy: wire.answered_by,
    leaderId: wire.leader_id,
    fencingToken: wire.fencing_token,
    ringEpoch: wire.ring_epoch,
    partitionCount: wire.partition_count,
    ...(wire.global_watermark_ms == null ? {} : { globalWatermarkMs: wire.global_watermark_ms }),
    missingPartitions: [...wire.missing_partitions],
    partitions: wire.partitions.map((p) => ({
      partition: p.partition,
      shardId: p.shard_id,
      reported: p.reported,
      ...(p.watermark_ms == null ? {} : { watermarkMs: p.watermark_ms }),
    })),
    ...(wire.last_round_at_ms == null ? {} : { lastRoundAtMs: wire.last_round_at_ms }),
  };
}

function partitionToWire(p: PartitionStatusRecord): StatusResponseWire['partitions'][number] {
  return {
    partition: p.partition,
    shard_id: p.shardId,
    reported: p.reported,
    ...(p.watermarkMs === undefined ? {} : { watermark_ms: p.watermarkMs }),
  };
}

/** Stable codes of a failed Status call. */
export const STATUS_ERROR_CODES = {
  /** The status could not be read (etcd out of reach): try again. */
  unavailable: 'SL-STATUS-001',
  /** The status could not be made (a corrupt record, a bug): an operator must look. */
  internal: 'SL-STATUS-002',
} as const;

/** A source's failure as the status the call answers with. */
function statusFailure(error: unknown): grpc.StatusObject {
  const retryable = isRingError(error) ? error.retryable : false;
  const kind = retryable ? 'unavailable' : 'internal';
  const code = retryable ? grpc.status.UNAVAILABLE : grpc.status.INTERNAL;
  const why = error instanceof Error ? error.message : String(error);
  const message = `[${STATUS_ERROR_CODES[kind]}] the status cannot be read: ${why}`;
  const detail: ErrorDetailWire = {
    code: STATUS_ERROR_CODES[kind],
    message,
    retryable,
    ring_epoch: 0,
    owner_hint: '',
  };

  return { code, details: message, metadata: errorDetailTrailer(code, detail) };
}

// --- a server of its own --------------------------------------------------------------------

export interface CoordinatorServerOptions extends StatusServiceOptions {
  /** `host:port`; port 0 picks a free port. */
  readonly address: string;
  /** How long close() lets calls in flight finish before cancelling them. @default 5_000 */
  readonly shutdownGraceMs?: number;
}

/** A running Coordinator service. */
export interface CoordinatorServer {
  /** `host:port` with the port actually bound. */
  readonly address: string;
  /** Reports NOT_SERVING, refuses new calls and lets those in flight finish. Safe to call twice. */
  close(): Promise<void>;
}

/** Starts the Coordinator service with health checking and reflection on `address`. */
export async function startCoordinatorServer(
  options: CoordinatorServerOptions,
): Promise<CoordinatorServer> {
  const server = new grpc.Server(SERVER_KEEPALIVE_OPTIONS);
  addStatusService(server, options);
  const health = new HealthImplementation(
    Object.fromEntries(SERVED.map((service) => [service, 'SERVING'])),
  );
  health.addToServer(server);
  new ReflectionService(reflectionDefinition([COORDINATOR_PROTO_FILE]), {
    services: [COORDINATOR_SERVICE, HEALTH_SERVICE],
  }).addToServer(server);

  const address = await bindInsecure(
    server,
    options.address,
    (message, cause) => new Error(message, { cause }),
  );
  options.logger?.info({ address }, 'coordinator service listening');

  let closing: Promise<void> | undefined;
  const drain = async (): Promise<void> => {
    for (const service of SERVED) health.setStatus(service, 'NOT_SERVING');
    await shutdownWithin(server, options.shutdownGraceMs ?? 5_000);
    options.logger?.info({ address }, 'coordinator service stopped');
  };

  return { address, close: () => (closing ??= drain()) };
}
