/**
 * The Query gRPC service (query.proto) over the warehouse: what dashboards, reports and
 * engineers read the published numbers through. Beside it the server runs the standard
 * gRPC health service (`grpc.health.v1.Health`) and server reflection, so that probes and
 * tools such as `grpcurl -plaintext HOST:PORT list` work without the proto files.
 *
 * Every answer comes from the warehouse's pre-aggregated rows. Every failure leaves
 * through {@link toGrpcStatus}, with an ErrorDetail in the trailer.
 */
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';

import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import type { Logger } from 'pino';

import { MAX_EVENT_MS, MIN_EVENT_MS } from '../ingest/index.js';
import { describePeriod, periodStart } from '../periods/index.js';
import {
  InvalidFilingError,
  NotPublishedError,
  type VersionRow,
  type Warehouse,
} from '../sink/index.js';
import { SERVER_KEEPALIVE_OPTIONS } from './keepalive.js';
import {
  addSpeedlayerService,
  currentRowToWire,
  filingRowToWire,
  filingViewToWire,
  loadSpeedlayerProtos,
  periodFromWire,
  periodRangeFromWire,
  rejectSummaryToWire,
  versionRowToWire,
  type CreateFilingRequestWire,
  type CreateFilingResponseWireInput,
  type QueryHandlers,
  type RejectsRequestWire,
  type VersionRowWireInput,
  type WatchVersionsRequestWire,
} from './proto.js';
import { QueryError, asQueryError, toGrpcStatus } from './query-errors.js';
import { bindInsecure, reflectionDefinition, shutdownWithin } from './grpc-server-support.js';
import type { ServedService } from './served-service.js';
import { VersionCursor } from './version-cursor.js';

/** What the service reads and writes: the warehouse's query side. */
export type QueryWarehouse = Pick<
  Warehouse,
  'queryCurrent' | 'queryHistory' | 'listFilings' | 'fileCurrent' | 'rejectSummary'
>;

export interface QueryServerOptions {
  /** The warehouse to serve. The server does not own it: close it after the server. */
  readonly warehouse: QueryWarehouse;
  /** `host:port` to listen on; port 0 picks a free port. @default '127.0.0.1:0' */
  readonly address?: string;
  /** How often each WatchVersions stream polls the version history. @default 500 */
  readonly pollIntervalMs?: number;
  /** See {@link VersionCursor}: how late a version may commit and still be streamed. @default 60_000 */
  readonly reorderWindowMs?: number;
  /** How long close() lets calls in flight finish before it cancels them. @default 10_000 */
  readonly shutdownGraceMs?: number;
  /** Merged over {@link SERVER_KEEPALIVE_OPTIONS} by {@link startQueryServer}. */
  readonly serverOptions?: grpc.ServerOptions;
  /** Lifecycle and failure lines; bind `component` before passing it. @default silent */
  readonly logger?: Logger;
}

interface ResolvedQueryServerOptions {
  readonly warehouse: QueryWarehouse;
  readonly address: string;
  readonly pollIntervalMs: number;
  readonly reorderWindowMs: number;
  readonly shutdownGraceMs: number;
  readonly logger: Logger | undefined;
}

/** A running Query service. */
export interface QueryServer {
  /** `host:port` with the port actually bound. */
  readonly address: string;
  /** WatchVersions streams open now. */
  readonly openWatches: number;
  /**
   * Drains and stops: reports NOT_SERVING, ends every WatchVersions stream with
   * UNAVAILABLE (clients resume with `since_written_at_ms`), refuses new calls and waits
   * up to the grace time for the calls in flight. Safe to call twice.
   */
  close(): Promise<void>;
}

const QUERY_SERVICE = 'speedlayer.v1.Query';

/** The services health checking reports on, '' being the server as a whole. */
const SERVED = ['', QUERY_SERVICE] as const;

/** Largest `examples_per_reason` a Rejects call may ask for. */
export const MAX_EXAMPLES_PER_REASON = 1000;

/** How WatchVersions streams end: the client went away, or the server is draining. */
type WatchEnd = 'cancelled' | 'shutdown';

export function resolveQueryServerOptions(options: QueryServerOptions): ResolvedQueryServerOptions {
  const resolved = {
    warehouse: options.warehouse,
    address: options.address ?? '127.0.0.1:0',
    pollIntervalMs: options.pollIntervalMs ?? 500,
    reorderWindowMs: options.reorderWindowMs ?? 60_000,
    shutdownGraceMs: options.shutdownGraceMs ?? 10_000,
    logger: options.logger,
  };
  for (const field of ['pollIntervalMs', 'reorderWindowMs', 'shutdownGraceMs'] as const) {
    const value = resolved[field];
    // A poll interval of 0 would query the warehouse in a tight loop.
    const least = field === 'pollIntervalMs' ? 1 : 0;
    if (!Number.isFinite(value) || value < least) {
      throw new QueryError(
        'invalid-argument',
        `${field} must be at least ${least} ms, got ${value}`,
      );
    }
  }

  return resolved;
}

/**
 * The Query service to be served beside others on one port (a shard process serves it
 * next to Shard and Ingest). `address` is not used: the hosting server listens. Draining
 * ends every WatchVersions stream with UNAVAILABLE.
 */
export function queryService(options: QueryServerOptions): ServedService {
  const resolved = resolveQueryServerOptions(options);
  const watches = new Set<AbortController>();

  return {
    name: QUERY_SERVICE,
    protoFile: 'speedlayer/v1/query.proto',
    register: (server) =>
      addSpeedlayerService(server, loadSpeedlayerProtos().query, queryHandlers(resolved, watches)),
    drain: () => {
      for (const watch of watches) watch.abort('shutdown' satisfies WatchEnd);
    },
  };
}

/** Starts the Query service with health checking and reflection, listening on `address`. */
export async function startQueryServer(options: QueryServerOptions): Promise<QueryServer> {
  const resolved = resolveQueryServerOptions(options);
  const server = new grpc.Server({ ...SERVER_KEEPALIVE_OPTIONS, ...options.serverOptions });
  const watches = new Set<AbortController>();

  addSpeedlayerService(server, loadSpeedlayerProtos().query, queryHandlers(resolved, watches));
  const health = new HealthImplementation(
    Object.fromEntries(SERVED.map((service) => [service, 'SERVING'])),
  );
  health.addToServer(server);
  new ReflectionService(reflectionDefinition(['speedlayer/v1/query.proto']), {
    services: ['speedlayer.v1.Query', 'grpc.health.v1.Health'],
  }).addToServer(server);

  const address = await bindInsecure(
    server,
    resolved.address,
    (message) => new QueryError('unavailable', message),
  );
  resolved.logger?.info({ address }, 'query service listening');

  let closing: Promise<void> | undefined;
  const drain = async (): Promise<void> => {
    resolved.logger?.info({ address, watches: watches.size }, 'query service draining');
    for (const service of SERVED) health.setStatus(service, 'NOT_SERVING');
    for (const watch of watches) watch.abort('shutdown' satisfies WatchEnd);

    await shutdownWithin(server, resolved.shutdownGraceMs);
    resolved.logger?.info({ address }, 'query service stopped');
  };

  return {
    address,
    get openWatches() {
      return watches.size;
    },
    close: () => (closing ??= drain()),
  };
}

// --- handlers -------------------------------------------------------------------------------

function queryHandlers(
  options: ResolvedQueryServerOptions,
  watches: Set<AbortController>,
): QueryHandlers {
  const { warehouse, logger } = options;

  return {
    Current: unary('Current', logger, async (request) => {
      const rows = await warehouse.queryCurrent(periodRangeFromWire(request.range));

      return { rows: rows.map(currentRowToWire) };
    }),
    History: unary('History', logger, async (request) => {
      const rows = await warehouse.queryHistory(periodRangeFromWire(request.range));

      return { rows: rows.map(versionRowToWire) };
    }),
    ListFilings: unary('ListFilings', logger, async () => {
      const filings = await warehouse.listFilings();

      return { filings: filings.map(filingViewToWire) };
    }),
    CreateFiling: unary('CreateFiling', logger, (request) => createFiling(warehouse, request)),
    Rejects: unary('Rejects', logger, async (request) => {
      const summary = await warehouse.rejectSummary(examplesPerReason(request));

      return { reasons: rejectSummaryToWire(summary) };
    }),
    WatchVersions: (call) => watchVersions(call, options, watches),
  };
}

/** A unary handler from an async function; a failure answers with its mapped status. */
function unary<Req, Res>(
  method: string,
  logger: Logger | undefined,
  handle: (request: Req) => Promise<Res>,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    handle(call.request).then(
      (response) => callback(null, response),
      (error: unknown) => callback(failedCall(method, error, logger)),
    );
  };
}

/** The status of a failed call, logged by how much an operator needs to know. */
function failedCall(method: string, error: unknown, logger: Logger | undefined): grpc.StatusObject {
  const failure = asQueryError(error);
  const fields = { method, code: failure.code, err: failure };
  if (failure.kind === 'internal') {
    logger?.error(fields, 'query call failed');
  } else if (failure.kind === 'unavailable') {
    logger?.warn(fields, 'query call failed');
  } else {
    logger?.debug(fields, 'query call refused');
  }

  return toGrpcStatus(failure);
}

/**
 * Files the period's current published version; the warehouse refuses an unpublished
 * period, in the same statement that would file it.
 */
async function createFiling(
  warehouse: QueryWarehouse,
  request: CreateFilingRequestWire,
): Promise<CreateFilingResponseWireInput> {
  const period = periodFromWire(request.period);
  if (periodStart(period.type, period.startMs) !== period.startMs) {
    throw new QueryError(
      'invalid-argument',
      `${period.startMs} is not the start of a ${period.type}`,
    );
  }
  // No period holds events outside these years, and a date beyond them may not even print.
  if (period.startMs < periodStart(period.type, MIN_EVENT_MS) || period.startMs > MAX_EVENT_MS) {
    throw new QueryError(
      'invalid-argument',
      `${period.startMs} is outside the years 0000 to 9999 that event times may have`,
    );
  }

  const filing = await warehouse
    .fileCurrent({
      periodType: period.type,
      periodStartMs: period.startMs,
      filedBy: request.filed_by,
      note: request.note,
    })
    .catch((err: unknown) => {
      if (err instanceof NotPublishedError) {
        throw new QueryError('not-published', err.message, { cause: err });
      }
      if (err instanceof InvalidFilingError) {
        throw new QueryError('invalid-argument', err.message, { cause: err });
      }
      throw err;
    });

  return { filing: filingRowToWire(filing) };
}

function examplesPerReason(request: RejectsRequestWire): number {
  const asked = request.examples_per_reason;
  if (asked > MAX_EXAMPLES_PER_REASON) {
    throw new QueryError(
      'invalid-argument',
      `examples_per_reason ${asked} is above the limit of ${MAX_EXAMPLES_PER_REASON}`,
    );
  }

  // 0 is proto3's "not set": the server's default.
  return asked === 0 ? 3 : asked;
}

// --- WatchVersions ---------------------------------------------------------------------------

/**
 * Streams the versions as they are written (see {@link VersionCursor} for the order and
 * its limits). The response headers go out once the stream has read its starting point:
 * a client that waits for them knows that every version written afterwards reaches it.
 * A failed read of the history ends the stream with its status, and a drain with
 * UNAVAILABLE; either way the client resumes with `since_written_at_ms`.
 */
function watchVersions(
  call: grpc.ServerWritableStream<WatchVersionsRequestWire, VersionRowWireInput>,
  options: ResolvedQueryServerOptions,
  watches: Set<AbortController>,
): void {
  const controller = new AbortController();
  watches.add(controller);
  call.on('cancelled', () => controller.abort('cancelled' satisfies WatchEnd));

  void pollVersions(call, options, controller.signal)
    .catch((error: unknown) => {
      const end = controller.signal.reason as WatchEnd | undefined;
      if (end === 'cancelled') {
        return;
      }

      const failure =
        end === 'shutdown'
          ? new QueryError(
              'unavailable',
              'the query service is shutting down; resume with since_written_at_ms',
            )
          : error;
      call.emit('error', failedCall('WatchVersions', failure, options.logger));
    })
    .finally(() => watches.delete(controller));
}

/** Polls the history until `signal` aborts, writing each new version once. */
async function pollVersions(
  call: grpc.ServerWritableStream<WatchVersionsRequestWire, VersionRowWireInput>,
  options: ResolvedQueryServerOptions,
  signal: AbortSignal,
): Promise<never> {
  const range = periodRangeFromWire(call.request.range);
  const cursor = new VersionCursor({
    sinceWrittenAtMs: call.request.since_written_at_ms,
    reorderWindowMs: options.reorderWindowMs,
  });

  // Each poll reads only what was written from the cursor's horizon on (an index on
  // written_at); the first one, with no `since`, reads the range to find the newest.
  const poll = (): Promise<VersionRow[]> =>
    options.warehouse.queryHistory(range, { writtenSinceMs: cursor.horizonMs });
  const first = cursor.advance(await poll());
  signal.throwIfAborted();
  call.sendMetadata(new grpc.Metadata());
  await writeAll(call, first, signal);

  for (;;) {
    await sleep(options.pollIntervalMs, undefined, { signal });
    const fresh = cursor.advance(await poll());
    signal.throwIfAborted();
    await writeAll(call, fresh, signal);
  }
}

async function writeAll(
  call: grpc.ServerWritableStream<WatchVersionsRequestWire, VersionRowWireInput>,
  rows: readonly VersionRow[],
  signal: AbortSignal,
): Promise<void> {
  for (const row of rows) {
    if (!call.write(versionRowToWire(row))) {
      await once(call, 'drain', { signal });
    }
  }
}
