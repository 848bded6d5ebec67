/**
 * Failures of the Shard service, mapped once on each side of the wire:
 *
 * - a shard answers every failure with {@link toGrpcStatus}: a status code, the message,
 *   and an ErrorDetail in the `grpc-status-details-bin` trailer (see status-details.ts);
 * - a client turns every failure back into a typed error with {@link rethrowGrpcError},
 *   reading the detail's stable code, never the message text.
 */
import * as grpc from '@grpc/grpc-js';

import { ShardError, shardErrorKindOf, type ShardErrorKind } from '../shard/errors.js';
import { WireFormatError, type ErrorDetailWire } from './proto.js';
import { errorDetailTrailer, readErrorDetail } from './status-details.js';

/** The one place where a kind becomes a gRPC status code. */
const GRPC_STATUS: Readonly<Record<ShardErrorKind, grpc.status>> = {
  'not-owner': grpc.status.FAILED_PRECONDITION,
  'partition-moving': grpc.status.FAILED_PRECONDITION,
  'epoch-mismatch': grpc.status.FAILED_PRECONDITION,
  'stale-fencing-token': grpc.status.FAILED_PRECONDITION,
  'sequence-gap': grpc.status.FAILED_PRECONDITION,
  unavailable: grpc.status.UNAVAILABLE,
  'store-failed': grpc.status.UNAVAILABLE,
  'invalid-argument': grpc.status.INVALID_ARGUMENT,
  internal: grpc.status.INTERNAL,
};

/**
 * Status codes that come without an ErrorDetail when the call never reached a handler
 * or its answer never came back: the shard is down, slow or overloaded. Any other status
 * without a detail is a broken contract.
 */
const UNAVAILABLE_STATUS: ReadonlySet<grpc.status> = new Set([
  grpc.status.UNAVAILABLE,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.CANCELLED,
  grpc.status.RESOURCE_EXHAUSTED,
]);

// --- server side -------------------------------------------------------------------------

/**
 * Any failure as the status a Shard handler answers with. Shard errors keep their kind
 * and fields; a broken wire contract is INVALID_ARGUMENT with SL-WIRE-001; anything
 * else is INTERNAL with SL-SHARD-010.
 */
export function toGrpcStatus(error: unknown): grpc.StatusObject {
  const { code, detail } = classify(error);

  return { code, details: detail.message, metadata: errorDetailTrailer(code, detail) };
}

function classify(error: unknown): { code: grpc.status; detail: ErrorDetailWire } {
  if (error instanceof ShardError) {
    return {
      code: GRPC_STATUS[error.kind],
      detail: {
        code: error.code,
        message: error.message,
        retryable: error.retryable,
        ring_epoch: error.ringEpoch ?? 0,
        owner_hint: error.ownerHint ?? '',
        ...(error.partition === undefined ? {} : { partition: error.partition }),
      },
    };
  }

  if (error instanceof WireFormatError) {
    return { code: grpc.status.INVALID_ARGUMENT, detail: plainDetail(error.code, error.message) };
  }

  const internal = new ShardError('internal', errorText(error));

  return { code: grpc.status.INTERNAL, detail: plainDetail(internal.code, internal.message) };
}

function plainDetail(code: string, message: string): ErrorDetailWire {
  return { code, message, retryable: false, ring_epoch: 0, owner_hint: '' };
}

// --- client side -------------------------------------------------------------------------

/**
 * Turns a failed Shard call back into the typed error the shard raised, and throws it:
 * a {@link ShardError} of the same kind and fields, or a {@link WireFormatError}. A
 * failure without a detail (the shard is down, the deadline passed) becomes
 * 'unavailable'; any other becomes 'internal'. `call` names the call in the message,
 * e.g. `Report to shard 10.0.3.7:7400`.
 */
export function rethrowGrpcError(error: unknown, call: string): never {
  throw toShardError(error, call);
}

/** What {@link rethrowGrpcError} throws, for callers that collect rather than throw. */
export function toShardError(error: unknown, call: string): Error {
  if (!isServiceError(error)) {
    return new ShardError('internal', `${call} failed: ${errorText(error)}`, { cause: error });
  }

  const detail = readErrorDetail(error.metadata);
  if (detail !== undefined) {
    return errorOfDetail(detail, error);
  }

  const kind = UNAVAILABLE_STATUS.has(error.code) ? 'unavailable' : 'internal';
  const status = grpc.status[error.code] ?? String(error.code);

  return new ShardError(kind, `${call} failed: ${status} ${error.details}`, { cause: error });
}

function errorOfDetail(detail: ErrorDetailWire, cause: grpc.ServiceError): Error {
  const text = withoutCode(detail.message, detail.code);
  if (detail.code === 'SL-WIRE-001') {
    return new WireFormatError(text);
  }

  const kind = shardErrorKindOf(detail.code);
  if (kind === undefined) {
    return new ShardError('internal', detail.message, { cause });
  }

  const aboutRing =
    kind === 'not-owner' || kind === 'partition-moving' || kind === 'epoch-mismatch';

  return new ShardError(kind, text, {
    cause,
    retryable: detail.retryable,
    ...(detail.partition === undefined ? {} : { partition: detail.partition }),
    ...(aboutRing ? { ringEpoch: detail.ring_epoch } : {}),
    ...(detail.owner_hint === '' ? {} : { ownerHint: detail.owner_hint }),
  });
}

/** The message without its `[code] ` prefix, which the rebuilt error adds again. */
function withoutCode(message: string, code: string): string {
  const prefix = `[${code}] `;

  return message.startsWith(prefix) ? message.slice(prefix.length) : message;
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

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
