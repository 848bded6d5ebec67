/**
 * What went wrong on a shard, sorted by what the caller must do. Each kind has a stable
 * operator-facing code that prefixes the message. The codes SL-SHARD-001 and -002 are
 * taken by invariant checks of the partition state (plain errors: stop and page).
 */
export type ShardErrorKind =
  | 'not-owner'
  | 'partition-moving'
  | 'epoch-mismatch'
  | 'stale-fencing-token'
  | 'sequence-gap'
  | 'unavailable'
  | 'store-failed'
  | 'invalid-argument'
  | 'internal';

interface KindInfo {
  readonly code: string;
  readonly retryable: boolean;
}

const KINDS: Readonly<Record<ShardErrorKind, KindInfo>> = {
  // The shard does not hold the partition: re-route, to the owner hint when there is one.
  'not-owner': { code: 'SL-SHARD-003', retryable: false },
  // Caller and shard hold different ring epochs: one of them must catch up with the ring.
  'epoch-mismatch': { code: 'SL-SHARD-004', retryable: false },
  // An acknowledgement from a coordinator that has been deposed: it must stop acting.
  'stale-fencing-token': { code: 'SL-SHARD-005', retryable: false },
  // A routed batch skips a sequence: the sender must first resend the batch before it.
  'sequence-gap': { code: 'SL-SHARD-006', retryable: false },
  // The shard did not answer in time, refused the connection or is closing: back off and retry.
  unavailable: { code: 'SL-SHARD-007', retryable: true },
  // The state store failed under a write: memory may be ahead of disk, so the shard refuses
  // everything until it restarts and recovers from its store. A restarted shard answers.
  'store-failed': { code: 'SL-SHARD-008', retryable: true },
  'invalid-argument': { code: 'SL-SHARD-009', retryable: false },
  // Anything else: a bug or a broken contract that an operator must look at.
  internal: { code: 'SL-SHARD-010', retryable: false },
  // The partition is being handed to another shard: the same call succeeds at its new owner
  // once the next ring names it (the owner hint), or here again if the move is aborted.
  'partition-moving': { code: 'SL-SHARD-011', retryable: true },
};

export interface ShardErrorOptions extends ErrorOptions {
  /** Overrides the kind's default, e.g. for a not-owner error that names the owner. */
  readonly retryable?: boolean;
  /** The partition the failure is about. */
  readonly partition?: number;
  /** The ring epoch the shard holds, on 'not-owner', 'partition-moving' and 'epoch-mismatch'. */
  readonly ringEpoch?: number;
  /** Where the owner of `partition` listens, when the shard knows it. */
  readonly ownerHint?: string;
}

/** An error of a shard or of a call to one; `code` and `kind` are stable. */
export class ShardError extends Error {
  readonly kind: ShardErrorKind;
  /** The operator-facing code, e.g. `SL-SHARD-003`; the message starts with it in brackets. */
  readonly code: string;
  /** Whether the same call may succeed later without the caller changing anything. */
  readonly retryable: boolean;
  readonly partition: number | undefined;
  readonly ringEpoch: number | undefined;
  readonly ownerHint: string | undefined;

  constructor(kind: ShardErrorKind, message: string, options: ShardErrorOptions = {}) {
    const info = KINDS[kind];
    super(
      `[${info.code}] ${message}`,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = 'ShardError';
    this.kind = kind;
    this.code = info.code;
    this.retryable = options.retryable ?? info.retryable;
    this.partition = options.partition;
    this.ringEpoch = options.ringEpoch;
    this.ownerHint = options.ownerHint;
  }
}

export function isShardError(error: unknown, kind?: ShardErrorKind): error is ShardError {
  return error instanceof ShardError && (kind === undefined || error.kind === kind);
}

/** The kind whose code is `code`, or undefined for a code that is not a shard error's. */
export function shardErrorKindOf(code: string): ShardErrorKind | undefined {
  for (const [kind, info] of Object.entries(KINDS)) {
    if (info.code === code) return kind as ShardErrorKind;
  }

  return undefined;
}
