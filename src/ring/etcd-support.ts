/**
 * Small helpers shared by the etcd adapter: bounded waits, error mapping, and the
 * context every handle gets from its store.
 */
import {
  EtcdAuthenticationFailedError,
  EtcdInvalidAuthTokenError,
  EtcdPermissionDeniedError,
  GRPCUnauthenticatedError,
  type Namespace,
  type Watcher,
} from 'etcd3';
import type { Logger } from 'pino';

import { RingError } from './errors.js';

/** What a store hands to the memberships, leaderships and watches it creates. */
export interface EtcdContext {
  /** The store's namespace: every key below is relative to its prefix. */
  readonly ns: Namespace;
  /** Bound for every unary call and for cancelling a watch. */
  readonly requestTimeoutMs: number;
  readonly logger: Logger;
}

/** Something a store closes when it closes. */
export interface Closable {
  close(): Promise<void>;
}

/**
 * How a handle joins the set of things its store closes, and leaves it once it has
 * ended on its own (lost, released, resigned).
 */
export interface Lifecycle {
  /** Throws 'closed' once the store is closing: the caller must then undo what it did. */
  readonly track: (child: Closable) => void;
  readonly forget: (child: Closable) => void;
}

/** Turns whatever an etcd call threw into a RingError; RingErrors pass through. */
export function fromEtcdError(what: string, error: unknown): RingError {
  if (error instanceof RingError) return error;

  const message = error instanceof Error ? error.message : String(error);
  // Timeouts, lost connections and an open circuit breaker pass; credentials do not heal.
  const retryable = !(
    error instanceof EtcdPermissionDeniedError ||
    error instanceof EtcdAuthenticationFailedError ||
    error instanceof EtcdInvalidAuthTokenError ||
    error instanceof GRPCUnauthenticatedError
  );

  return new RingError('unavailable', `${what}: ${message}`, { cause: error, retryable });
}

/** Resolves like `promise`, or rejects with 'unavailable' after `timeoutMs`. */
export async function withTimeout<T>(
  promise: Promise<T>,
  timeoutMs: number,
  what: string,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(new RingError('unavailable', `${what}: no answer from etcd within ${timeoutMs} ms`)),
      timeoutMs,
    );
  });

  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Stops a watcher's events at once and asks etcd to cancel it. etcd3 waits for etcd to
 * confirm the cancel, which never comes over a dead connection, so the wait is bounded;
 * closing the client ends the stream in any case.
 */
export async function cancelWatcher(watcher: Watcher, timeoutMs: number): Promise<void> {
  watcher.removeAllListeners();
  // A watcher that emits 'error' with no listener would throw inside etcd3.
  watcher.on('error', () => undefined);

  try {
    await withTimeout(watcher.cancel(), timeoutMs, 'cancelling a watch');
  } catch {
    // Nothing more to do: the watch has no listeners, and the stream ends with the client.
  }
}

/** An etcd revision (an int64 as a decimal string) as a number. */
export function revisionNumber(revision: string | number): number {
  const n = Number(revision);
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RingError(
      'corrupt-state',
      `etcd returned revision ${revision}, which is not a safe integer`,
    );
  }

  return n;
}
