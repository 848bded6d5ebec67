/**
 * Failures of the Query service, on both sides of the wire.
 *
 * The server turns every failure into a gRPC status with {@link toGrpcStatus}: a status
 * code, the message, and an `ErrorDetail` (common.proto) in the `grpc-status-details-bin`
 * trailer (see status-details.ts). The client turns the status back into a
 * {@link QueryError} with {@link rethrowGrpcError}, reading the detail's code, never the
 * message text.
 */
import * as grpc from '@grpc/grpc-js';

import { WireFormatError, type ErrorDetailWire } from './proto.js';
import { errorDetailTrailer, readErrorDetail } from './status-details.js';

/** What went wrong in a query, sorted by what the caller must do. */
export type QueryErrorKind =
  | 'invalid-argument'
  | 'not-published'
  | 'unavailable'
  | 'cancelled'
  | 'internal';

interface KindInfo {
  readonly code: string;
  readonly retryable: boolean;
}

const KINDS: Readonly<Record<QueryErrorKind, KindInfo>> = {
  // The request breaks its contract: the caller must change it.
  'invalid-argument': { code: 'SL-QUERY-001', retryable: false },
  // Filing a period that has no published version: wait until the period closes.
  'not-published': { code: 'SL-QUERY-002', retryable: false },
  // The service or its warehouse cannot be reached, or the server is draining.
  unavailable: { code: 'SL-QUERY-003', retryable: true },
  // The caller cancelled the call or closed its client.
  cancelled: { code: 'SL-QUERY-004', retryable: false },
  // A bug or a broken store: an operator must look.
  internal: { code: 'SL-QUERY-005', retryable: false },
};

/** The one place where a kind becomes a gRPC status code. */
const GRPC_STATUS: Readonly<Record<QueryErrorKind, grpc.status>> = {
  'invalid-argument': grpc.status.INVALID_ARGUMENT,
  'not-published': grpc.status.FAILED_PRECONDITION,
  unavailable: grpc.status.UNAVAILABLE,
  cancelled: grpc.status.CANCELLED,
  internal: grpc.status.INTERNAL,
};

export interface QueryErrorOptions extends ErrorOptions {
  /** Overrides the kind's code, e.g. `SL-WIRE-001` relayed from a server. */
  readonly code?: string;
  /** Overrides the kind's default. */
  readonly retryable?: boolean;
  /** The gRPC status the failure arrived with, on the client side. */
  readonly grpcStatus?: grpc.status;
}

/** A failure of the Query service; `kind` and `code` are stable. */
export class QueryError extends Error {
  readonly kind: QueryErrorKind;
  /** The operator-facing code, e.g. `SL-QUERY-002`; the message starts with it in brackets. */
  readonly code: string;
  /** Whether the same call may succeed later; only idempotent calls are ever retried. */
  readonly retryable: boolean;
  /** The gRPC status the failure arrived with; undefined on the server side. */
  readonly grpcStatus: grpc.status | undefined;

  constructor(kind: QueryErrorKind, message: string, options: QueryErrorOptions = {}) {
    const code = options.code ?? KINDS[kind].code;
    const prefix = `[${code}] `;
    // A message relayed from a server already carries its code.
    super(
      message.startsWith(prefix) ? message : `${prefix}${message}`,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = 'QueryError';
    this.kind = kind;
    this.code = code;
    this.retryable = options.retryable ?? KINDS[kind].retryable;
    this.grpcStatus = options.grpcStatus;
  }
}

export function isQueryError(error: unknown, kind?: QueryErrorKind): error is QueryError {
  return error instanceof QueryError && (kind === undefined || error.kind === kind);
}

// --- server side -------------------------------------------------------------------------

/**
 * Any failure as the status a handler answers with: the code of its kind, its message,
 * and its ErrorDetail in the `grpc-status-details-bin` trailer.
 */
export function toGrpcStatus(error: unknown): grpc.StatusObject {
  const failure = asQueryError(error);
  const code = GRPC_STATUS[failure.kind];
  const detail: ErrorDetailWire = {
    code: failure.code,
    message: failure.message,
    retryable: failure.retryable,
    ring_epoch: 0,
    owner_hint: '',
  };

  return { code, details: failure.message, metadata: errorDetailTrailer(code, detail) };
}

/** Any failure as a QueryError: typed failures keep their kind, the rest become internal. */
export function asQueryError(error: unknown): QueryError {
  if (error instanceof QueryError) {
    return error;
  }

  if (error instanceof WireFormatError) {
    return new QueryError('invalid-argument', error.message, { code: error.code, cause: error });
  }

  const message = error instanceof Error ? error.message : String(error);
  if (isUnreachable(error)) {
    return new QueryError('unavailable', `the warehouse cannot be reached: ${message}`, {
      cause: error,
    });
  }

  return new QueryError('internal', `the query failed: ${message}`, { cause: error });
}

/** Socket errno codes that mean the warehouse's server is out of reach. */
const UNREACHABLE_ERRNO = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENOTFOUND',
  'EPIPE',
  'ETIMEDOUT',
]);

/**
 * Whether a warehouse failure means "out of reach" rather than "broken", from the
 * structured codes node and PostgreSQL give (errno, SQLSTATE class 08 "connection
 * exception", 57P01-57P03 "server shutting down").
 */
function isUnreachable(error: unknown): boolean {
  if (typeof error !== 'object' || error === null || !('code' in error)) {
    return false;
  }

  const code = error.code;
  if (typeof code !== 'string') {
    return false;
  }

  return UNREACHABLE_ERRNO.has(code) || code.startsWith('08') || /^57P0[123]$/.test(code);
}

// --- client side -------------------------------------------------------------------------

/**
 * Turns a failed call into a typed error and throws it. The ErrorDetail of a speedlayer
 * server decides the kind; a status without one (from a proxy, or from the channel
 * itself) is sorted by its code. Anything that is not a gRPC failure is thrown as it is.
 */
export function rethrowGrpcError(error: unknown, method: string): never {
  throw toQueryError(error, method);
}

/** What {@link rethrowGrpcError} throws, for callers that report rather than throw. */
export function toQueryError(error: unknown, method: string): unknown {
  if (!isServiceError(error)) {
    return error;
  }

  const detail = readErrorDetail(error.metadata);
  if (detail !== undefined) {
    return new QueryError(kindOfCode(detail.code) ?? kindOfStatus(error.code), detail.message, {
      code: detail.code,
      retryable: detail.retryable,
      grpcStatus: error.code,
      cause: error,
    });
  }

  const status = grpc.status[error.code] ?? String(error.code);
  const message = `Query.${method} failed: ${status} ${error.details}`;

  return new QueryError(kindOfStatus(error.code), message, {
    grpcStatus: error.code,
    cause: error,
  });
}

function kindOfCode(code: string): QueryErrorKind | undefined {
  return (Object.keys(KINDS) as QueryErrorKind[]).find((kind) => KINDS[kind].code === code);
}

/**
 * The kind of a status that came without an ErrorDetail. DEADLINE_EXCEEDED counts as
 * unavailable: a read may be repeated, but a CreateFiling that timed out may still have
 * been made, which is why no client repeats CreateFiling (see query.proto).
 */
function kindOfStatus(status: grpc.status): QueryErrorKind {
  switch (status) {
    case grpc.status.INVALID_ARGUMENT:
    case grpc.status.OUT_OF_RANGE:
      return 'invalid-argument';
    case grpc.status.UNAVAILABLE:
    case grpc.status.RESOURCE_EXHAUSTED:
    case grpc.status.DEADLINE_EXCEEDED:
      return 'unavailable';
    case grpc.status.CANCELLED:
      return 'cancelled';
    default:
      return 'internal';
  }
}

function isServiceError(error: unknown): error is grpc.ServiceError {
  return (
    error instanceof Error &&
    'code' in error &&
    typeof error.code === 'number' &&
    'metadata' in error &&
    error.metadata instanceof grpc.Metadata
  );
}
