/**
 * How a call of the ingest client fails, and which failures of a node are worth sending
 * the same batches again for.
 */
import * as grpc from '@grpc/grpc-js';

import { readErrorDetail } from './status-details.js';

export type IngestClientErrorKind =
  | 'unavailable'
  | 'deadline-exceeded'
  | 'refused'
  | 'protocol'
  | 'invalid-input'
  | 'closed';

const CLIENT_ERROR_CODES: Readonly<Record<IngestClientErrorKind, string>> = {
  // Nothing was acknowledged for the stall timeout: the node is down or stuck.
  unavailable: 'SL-INGEST-101',
  // The overall deadline passed with batches unacknowledged.
  'deadline-exceeded': 'SL-INGEST-102',
  // The node answered with an error that sending again cannot change (e.g. INVALID_ARGUMENT).
  refused: 'SL-INGEST-103',
  // The node broke the contract: an acknowledgement for no batch in flight, or counts that
  // do not add up to the batch.
  protocol: 'SL-INGEST-104',
  // The input broke the client's rules (a batch id twice in flight), or could not be read.
  'invalid-input': 'SL-INGEST-105',
  closed: 'SL-INGEST-106',
};

/** Why a send() or finish() failed; unacknowledged batches may be sent again later. */
export class IngestClientError extends Error {
  readonly code: string;

  constructor(
    readonly kind: IngestClientErrorKind,
    message: string,
    options?: ErrorOptions,
  ) {
    const code = CLIENT_ERROR_CODES[kind];
    super(`[${code}] ${message}`, options);
    this.name = 'IngestClientError';
    this.code = code;
  }
}

/**
 * Codes after which the same batches may be sent again: the node is down, restarting,
 * draining, overloaded, or the connection broke. A failure that carries an ErrorDetail
 * is judged by the detail's `retryable` instead.
 */
const RETRYABLE_STATUS: ReadonlySet<grpc.status> = new Set([
  grpc.status.UNAVAILABLE,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.CANCELLED,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.ABORTED,
]);

/** A reset HTTP/2 stream or connection comes as INTERNAL with one of these texts. */
const RESET_TEXT = /RST_STREAM|ECONNRESET|connection (reset|dropped|closed)|socket hang up/i;

/** Whether the same request may succeed if sent again. */
export function isRetryable(error: unknown): boolean {
  if (!isServiceError(error)) return false;

  const detail = readErrorDetail(error.metadata);
  if (detail !== undefined) return detail.retryable;

  return (
    RETRYABLE_STATUS.has(error.code) ||
    (error.code === grpc.status.INTERNAL && RESET_TEXT.test(error.details))
  );
}

export function refused(method: string, error: unknown): IngestClientError {
  const status = isServiceError(error) ? `${grpc.status[error.code] ?? error.code} ` : '';

  return new IngestClientError('refused', `${method} refused: ${status}${errorText(error)}`, {
    cause: error,
  });
}

function isServiceError(error: unknown): error is grpc.ServiceError {
  return (
    error instanceof Error &&
    'code' in error &&
    typeof error.code === 'number' &&
    'metadata' in error
  );
}

export function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}

export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
