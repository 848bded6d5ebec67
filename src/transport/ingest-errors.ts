/**
 * Failures of the Ingest service as a node answers them: a status code, the message, and
 * an ErrorDetail (common.proto) in the `grpc-status-details-bin` trailer, so that a
 * client reads a stable code rather than the message text. A rejected event is never a
 * failure: it is a Rejection in the acknowledgement.
 */
import * as grpc from '@grpc/grpc-js';

import { isShardError } from '../shard/errors.js';
import { WireFormatError, type ErrorDetailWire } from './proto.js';
import { errorDetailTrailer } from './status-details.js';

/** What went wrong with an Ingest call, sorted by what the client must do. */
export type IngestErrorKind = 'invalid-argument' | 'unavailable' | 'internal';

interface KindInfo {
  readonly code: string;
  readonly status: grpc.status;
  readonly retryable: boolean;
}

const KINDS: Readonly<Record<IngestErrorKind, KindInfo>> = {
  // The request breaks its contract (no batch id, too many events): the client must change it.
  'invalid-argument': {
    code: 'SL-INGEST-001',
    status: grpc.status.INVALID_ARGUMENT,
    retryable: false,
  },
  // The node has no ring yet, is draining, or cannot store dead letters: send the same
  // batch again later, here or to another node; counts never change twice.
  unavailable: { code: 'SL-INGEST-002', status: grpc.status.UNAVAILABLE, retryable: true },
  // A bug: an operator must look.
  internal: { code: 'SL-INGEST-003', status: grpc.status.INTERNAL, retryable: false },
};

/** A failed Ingest call; `kind` and `code` are stable. */
export class IngestError extends Error {
  readonly kind: IngestErrorKind;
  /** The operator-facing code, e.g. `SL-INGEST-001`; the message starts with it in brackets. */
  readonly code: string;
  readonly retryable: boolean;

  constructor(kind: IngestErrorKind, message: string, options: ErrorOptions = {}) {
    const info = KINDS[kind];
    super(`[${info.code}] ${message}`, options);
    this.name = 'IngestError';
    this.kind = kind;
    this.code = info.code;
    this.retryable = info.retryable;
  }
}

/** Any failure of an Ingest handler as the status it answers with. */
export function ingestStatus(error: unknown): grpc.StatusObject {
  const failure = asIngestError(error);
  const status = KINDS[failure.kind].status;
  const detail: ErrorDetailWire = {
    code: failure.code,
    message: failure.message,
    retryable: failure.retryable,
    ring_epoch: 0,
    owner_hint: '',
  };

  return { code: status, details: failure.message, metadata: errorDetailTrailer(status, detail) };
}

/** The failure as an IngestError: a broken wire contract is invalid, a closed router unavailable. */
export function asIngestError(error: unknown): IngestError {
  if (error instanceof IngestError) return error;
  if (error instanceof WireFormatError) {
    return new IngestError('invalid-argument', error.message, { cause: error });
  }
  if (isShardError(error) && error.retryable) {
    return new IngestError('unavailable', error.message, { cause: error });
  }

  const text = error instanceof Error ? error.message : String(error);

  return new IngestError('internal', text, { cause: error });
}
