/**
 * An etcd lease kept alive, with a local deadline that says when it may already have
 * expired on the server.
 */
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';

import { EtcdLeaseInvalidError, type Lease, type Namespace } from 'etcd3';

import { RingError } from './errors.js';
import { fromEtcdError } from './etcd-support.js';

/** etcd grants no lease shorter than 2 s; asking for 1 s silently yields 2 s. */
export const MIN_LEASE_TTL_SECONDS = 2;

export interface LeaseKeeperEvents {
  lost: [error: RingError];
}

/**
 * Keeps one lease alive through etcd3's keepalive loop and declares it lost on the first
 * of:
 *
 * - etcd answers a keepalive with TTL 0, or refuses the lease (revoked or expired);
 * - the local deadline passes: no keepalive has been confirmed for the last TTL seconds,
 *   counted from when that keepalive was sent. etcd expires a lease TTL seconds after it
 *   received the last keepalive, which is no earlier than we sent it, so once the
 *   deadline passes the lease may be gone and another process may hold what it held.
 *   etcd3 itself only gives up after 2 x TTL of silence.
 *
 * After 'lost' the keepalive loop is stopped; 'lost' is emitted at most once.
 */
export class LeaseKeeper extends EventEmitter<LeaseKeeperEvents> {
  private readonly lease: Lease;
  private readonly grantedId: Promise<string>;
  /** Monotonic send times of keepalives that etcd has not answered yet, oldest first. */
  private readonly unanswered: number[] = [];
  private confirmedSentAtMs: number;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private lostError: RingError | undefined;
  private stopped = false;
  private granted = false;

  constructor(
    ns: Namespace,
    readonly ttlSeconds: number,
  ) {
    super();
    checkTtl(ttlSeconds);

    this.confirmedSentAtMs = performance.now();
    this.lease = ns.lease(ttlSeconds);
    this.lease.on('lost', (err) => {
      // A failed grant also emits 'lost'; grant() rejects with what actually happened.
      if (this.granted) this.fail(lostByEtcd(err));
    });
    this.lease.on('keepaliveFired', () => this.unanswered.push(performance.now()));
    this.lease.on('keepaliveSucceeded', () => this.confirm());
    // A new or failed stream will never answer what was sent on the old one.
    this.lease.on('keepaliveEstablished', () => this.unanswered.splice(0));
    this.lease.on('keepaliveFailed', () => this.unanswered.splice(0));
    this.grantedId = this.lease.grant().then(
      (id) => {
        this.granted = true;
        return String(id);
      },
      (err: unknown) => Promise.reject(fromEtcdError('granting a lease', err)),
    );
    // The caller awaits grant(); this only keeps an unawaited rejection from being unhandled.
    this.grantedId.catch(() => undefined);
    this.armDeadline();
  }

  /** The lease id, a decimal int64, once etcd has granted it. */
  grant(): Promise<string> {
    return this.grantedId;
  }

  /** Why the lease was lost, or undefined while it is not. */
  get lost(): RingError | undefined {
    return this.lostError;
  }

  /** Stops the keepalives and lets the lease expire within its TTL. Safe to call twice. */
  release(): void {
    this.stop();
    this.lease.release();
  }

  /**
   * Stops the keepalives and revokes the lease, which deletes its keys at once. If etcd
   * does not answer, the lease still expires within its TTL; this then rejects with
   * 'unavailable'.
   */
  async revoke(): Promise<void> {
    this.stop();
    try {
      await this.lease.revoke();
    } catch (err) {
      throw fromEtcdError(`revoking a lease (it expires within ${this.ttlSeconds} s)`, err);
    }
  }

  private confirm(): void {
    const sentAtMs = this.unanswered.shift();
    if (sentAtMs === undefined || sentAtMs <= this.confirmedSentAtMs) return;

    this.confirmedSentAtMs = sentAtMs;
    this.armDeadline();
  }

  private armDeadline(): void {
    clearTimeout(this.deadlineTimer);
    if (this.stopped) return;

    const expiresAtMs = this.confirmedSentAtMs + this.ttlSeconds * 1000;
    this.deadlineTimer = setTimeout(
      () => {
        if (performance.now() < expiresAtMs) {
          this.armDeadline();
          return;
        }

        this.fail(
          new RingError(
            'lease-lost',
            `no keepalive was confirmed within the lease TTL of ${this.ttlSeconds} s`,
          ),
        );
      },
      Math.max(0, expiresAtMs - performance.now()),
    );
  }

  private fail(error: RingError): void {
    if (this.stopped) return;

    this.lostError = error;
    this.release();
    this.emit('lost', error);
  }

  private stop(): void {
    this.stopped = true;
    clearTimeout(this.deadlineTimer);
    this.deadlineTimer = undefined;
    this.unanswered.splice(0);
  }
}

function checkTtl(ttlSeconds: number): void {
  if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds < MIN_LEASE_TTL_SECONDS) {
    throw new RingError(
      'invalid-argument',
      `a lease TTL must be a whole number of seconds, at least ${MIN_LEASE_TTL_SECONDS}; got ${ttlSeconds}`,
    );
  }
}

function lostByEtcd(err: Error): RingError {
  const reason =
    err instanceof EtcdLeaseInvalidError
      ? 'etcd no longer knows the lease'
      : 'etcd reports the lease lost';

  return new RingError('lease-lost', `${reason}: ${err.message}`, { cause: err });
}
