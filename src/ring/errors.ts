/**
 * What went wrong in the ring and coordination layer, sorted by what the caller must
 * do. Each kind has a stable operator-facing code that prefixes the message.
 */
export type RingErrorKind =
  | 'stale-epoch'
  | 'lease-lost'
  | 'shard-taken'
  | 'not-leader'
  | 'invalid-argument'
  | 'corrupt-state'
  | 'unavailable'
  | 'closed'
  | 'illegal-transition';

interface KindInfo {
  readonly code: string;
  readonly retryable: boolean;
}

const KINDS: Readonly<Record<RingErrorKind, KindInfo>> = {
  // Someone else wrote the ring first: re-read it and recompute; the same write never succeeds.
  'stale-epoch': { code: 'SL-RING-001', retryable: false },
  // The lease behind a membership or leadership is gone: register or campaign again.
  'lease-lost': { code: 'SL-RING-002', retryable: true },
  // Another live lease holds this shard id, e.g. the previous incarnation of this pod,
  // whose lease expires within its TTL: retry after a while.
  'shard-taken': { code: 'SL-RING-003', retryable: true },
  // The write was guarded by a leadership that is no longer held: stop acting as leader.
  'not-leader': { code: 'SL-RING-004', retryable: false },
  'invalid-argument': { code: 'SL-RING-005', retryable: false },
  // What etcd holds under the prefix does not parse: an operator must look.
  'corrupt-state': { code: 'SL-RING-006', retryable: false },
  // etcd did not answer in time or refused the connection: back off and retry.
  unavailable: { code: 'SL-RING-007', retryable: true },
  closed: { code: 'SL-RING-008', retryable: false },
  // A bug: a state machine was asked for a move it does not allow.
  'illegal-transition': { code: 'SL-RING-009', retryable: false },
};

export interface RingErrorOptions extends ErrorOptions {
  /** Overrides the kind's default, e.g. for an etcd error that no retry can fix. */
  readonly retryable?: boolean;
  /** The ring epoch etcd holds, on 'stale-epoch'. */
  readonly currentEpoch?: number;
}

/** An error of the ring and coordination layer; `code` and `kind` are stable. */
export class RingError extends Error {
  readonly kind: RingErrorKind;
  /** The operator-facing code, e.g. `SL-RING-001`; the message starts with it in brackets. */
  readonly code: string;
  /** Whether the same call may succeed later without the caller changing anything. */
  readonly retryable: boolean;
  readonly currentEpoch: number | undefined;

  constructor(kind: RingErrorKind, message: string, options: RingErrorOptions = {}) {
    const info = KINDS[kind];
    super(
      `[${info.code}] ${message}`,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = 'RingError';
    this.kind = kind;
    this.code = info.code;
    this.retryable = options.retryable ?? info.retryable;
    this.currentEpoch = options.currentEpoch;
  }
}

export function isRingError(error: unknown, kind?: RingErrorKind): error is RingError {
  return error instanceof RingError && (kind === undefined || error.kind === kind);
}
