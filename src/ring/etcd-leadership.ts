/**
 * Leader election in etcd, the same algorithm as etcd's Go client (and etcd3's
 * `Election`, whose key layout it shares): each candidate puts a key named after its
 * lease under the election prefix, and the candidate whose key has the lowest creation
 * revision leads. A candidate waits for the deletion of the key created just before its
 * own, then checks again.
 *
 * It does not use etcd3's `Campaign`, which hides its lease and its key's revision, nor
 * its `ElectionObserver`, which can report the wrong leader (see `currentLeader`).
 */
import { EventEmitter } from 'node:events';

import type { Namespace, Watcher } from 'etcd3';

import type {
  LeaderInfo,
  Leadership,
  LeadershipEvents,
  LeadershipState,
} from './coordination-store.js';
import { RingError } from './errors.js';
import {
  cancelWatcher,
  fromEtcdError,
  revisionNumber,
  withTimeout,
  type EtcdContext,
  type Lifecycle,
} from './etcd-support.js';
import { LeaseKeeper } from './lease-keeper.js';
import { StateMachine, type TransitionTable } from './state-machine.js';

const LEADERSHIP_MOVES: TransitionTable<LeadershipState> = {
  campaigning: ['leading', 'resigning', 'lost'],
  leading: ['resigning', 'lost'],
  resigning: ['resigned'],
  resigned: [],
  lost: [],
};

/**
 * The leader right now: a fresh range read of the lowest creation revision under the
 * prefix, the same query as etcd3's `Election.leader()`, which returns only the value.
 */
export async function readLeader(ns: Namespace, prefix: string): Promise<LeaderInfo | undefined> {
  const result = await ns.getAll().prefix(prefix).sort('Create', 'Ascend').limit(1).exec();
  const kv = result.kvs[0];
  if (kv === undefined) return undefined;

  return {
    candidateId: kv.value.toString(),
    fencingToken: revisionNumber(kv.create_revision),
    leaseId: String(kv.lease),
  };
}

export interface CampaignContext extends EtcdContext, Lifecycle {
  readonly prefix: string;
  /** Aborted when the caller gives up or the store closes. */
  readonly signal: AbortSignal;
}

export class EtcdLeadership extends EventEmitter<LeadershipEvents> implements Leadership {
  private readonly machine: StateMachine<LeadershipState>;
  private keyWatcher: Watcher | undefined;
  private closing: Promise<void> | undefined;
  /** Rejects when the campaign must stop: lease lost, caller aborted, store closed. */
  private readonly stopped: Promise<never>;
  private stop: (error: RingError) => void = () => undefined;

  private constructor(
    private readonly ctx: CampaignContext,
    readonly candidateId: string,
    readonly key: string,
    readonly leaseId: string,
    readonly fencingToken: number,
    private readonly keeper: LeaseKeeper,
  ) {
    super();
    this.machine = new StateMachine('leadership', LEADERSHIP_MOVES, 'campaigning', (from, to) =>
      this.emit('state', to, from),
    );
    this.stopped = new Promise<never>((_, reject) => {
      this.stop = reject;
    });
    this.stopped.catch(() => undefined);
  }

  /** Joins the election and resolves once this candidate leads. */
  static async campaign(
    ctx: CampaignContext,
    candidateId: string,
    ttlSeconds: number,
  ): Promise<EtcdLeadership> {
    const keeper = new LeaseKeeper(ctx.ns, ttlSeconds);
    let leadership: EtcdLeadership | undefined;

    try {
      const leaseId = await keeper.grant();
      const key = `${ctx.prefix}${leaseId}`;
      const created = await ctx.ns
        .if(key, 'Create', '==', 0)
        .then(ctx.ns.put(key).value(candidateId).lease(leaseId))
        .commit();
      if (!created.succeeded) {
        throw new RingError(
          'corrupt-state',
          `election key ${key} already existed under a newly granted lease`,
        );
      }

      // A one-put transaction's revision is the revision that created the key.
      leadership = new EtcdLeadership(
        ctx,
        candidateId,
        key,
        leaseId,
        revisionNumber(created.header.revision),
        keeper,
      );
      leadership.followStops();

      const electedAt = await leadership.waitUntilElected();
      await leadership.watchKey(electedAt);
      ctx.track(leadership);
      if (!leadership.machine.transition(['campaigning'], 'leading')) {
        throw leadership.stoppedReason();
      }
    } catch (err) {
      const error =
        keeper.lost ?? (ctx.signal.aborted ? closedError() : fromEtcdError('campaigning', err));
      await (leadership === undefined
        ? keeper.revoke().catch(() => undefined)
        : leadership.abandon(error));
      throw error;
    }

    ctx.logger.info(
      { candidateId, fencingToken: leadership.fencingToken, leaseId: leadership.leaseId },
      'leadership acquired',
    );

    return leadership;
  }

  get state(): LeadershipState {
    return this.machine.state;
  }

  /** Revokes the lease: the key goes at once and the next candidate is elected. Safe to call twice. */
  resign(): Promise<void> {
    this.closing ??= this.revokeLease();

    return this.closing;
  }

  close(): Promise<void> {
    return this.resign();
  }

  private async revokeLease(): Promise<void> {
    const resigning = this.machine.transition(['campaigning', 'leading'], 'resigning');
    this.stop(closedError());
    await this.stopWatching();
    this.ctx.forget(this);
    if (!resigning) return;

    try {
      await this.keeper.revoke();
      this.ctx.logger.info(
        { candidateId: this.candidateId, fencingToken: this.fencingToken },
        'leadership resigned',
      );
    } finally {
      this.machine.transition(['resigning'], 'resigned');
    }
  }

  /**
   * Loops until this key has the lowest creation revision. Returns the revision at which
   * that was read; the key is watched for deletion from just after it.
   *
   * Each round is one read, so that "our key exists" and "nothing older exists" hold at
   * the same revision: our key and the one created just before it, newest first.
   */
  private async waitUntilElected(): Promise<number> {
    for (;;) {
      const read = await this.race(
        this.ctx.ns
          .getAll()
          .prefix(this.ctx.prefix)
          .maxCreateRevision(String(this.fencingToken))
          .sort('Create', 'Descend')
          .limit(2)
          .exec(),
      );
      const [own, predecessor] = read.kvs;
      if (own?.key.toString() !== this.key) {
        throw new RingError(
          'lease-lost',
          `the election key of ${this.candidateId} disappeared while campaigning`,
        );
      }
      if (predecessor === undefined) return revisionNumber(read.header.revision);

      await this.race(
        this.waitForDelete(predecessor.key.toString(), revisionNumber(read.header.revision) + 1),
      );
    }
  }

  private async waitForDelete(key: string, fromRevision: number): Promise<void> {
    const watcher = this.ctx.ns
      .watch()
      .key(key)
      .startRevision(String(fromRevision))
      .only('delete')
      .watcher();
    try {
      await new Promise<void>((resolve, reject) => {
        watcher.once('delete', () => resolve());
        watcher.once('error', reject);
        this.stopped.catch(reject);
      });
    } finally {
      await cancelWatcher(watcher, this.ctx.requestTimeoutMs);
    }
  }

  /** While leading, a deletion of the key (expiry, revoke, an operator) ends the leadership. */
  private async watchKey(fromRevision: number): Promise<void> {
    const watcher = this.ctx.ns
      .watch()
      .key(this.key)
      .startRevision(String(fromRevision + 1))
      .only('delete')
      .watcher();
    this.keyWatcher = watcher;
    watcher.on('delete', () =>
      this.lose(new RingError('lease-lost', `the election key of ${this.candidateId} was deleted`)),
    );
    // Without the watch nothing tells us the key is gone: treat it as lost.
    watcher.on('error', (err) => this.lose(fromEtcdError('watching the election key', err)));

    const connected = new Promise<void>((resolve) => watcher.once('connected', () => resolve()));
    await this.race(withTimeout(connected, this.ctx.requestTimeoutMs, 'watching the election key'));
  }

  private followStops(): void {
    const onAbort = (): void => this.stop(closedError());
    if (this.ctx.signal.aborted) onAbort();
    else this.ctx.signal.addEventListener('abort', onAbort, { once: true });

    const lost = this.keeper.lost;
    if (lost !== undefined) this.lose(lost);
    else this.keeper.once('lost', (err) => this.lose(err));
  }

  private race<T>(promise: Promise<T>): Promise<T> {
    return Promise.race([promise, this.stopped]);
  }

  private stoppedReason(): RingError {
    return this.keeper.lost ?? closedError();
  }

  /**
   * Ends a campaign that did not come to lead: the caller gets the error, so no 'lost'
   * event. A lost lease is only released; otherwise the lease is revoked so that the key
   * does not wait for its TTL.
   */
  private async abandon(error: RingError): Promise<void> {
    this.stop(error);
    await this.stopWatching();
    this.ctx.forget(this);

    if (this.keeper.lost !== undefined || error.kind === 'lease-lost') {
      this.machine.transition(['campaigning'], 'lost');
      this.keeper.release();
      return;
    }

    this.machine.transition(['campaigning'], 'resigning');
    await this.keeper.revoke().catch(() => undefined);
    this.machine.transition(['resigning'], 'resigned');
  }

  private lose(error: RingError): void {
    this.stop(error);
    if (!this.machine.transition(['leading'], 'lost')) return;

    this.keeper.release();
    void this.stopWatching();
    this.ctx.forget(this);
    this.ctx.logger.warn(
      { candidateId: this.candidateId, fencingToken: this.fencingToken, err: error },
      'leadership lost',
    );
    this.emit('lost', error);
  }

  private async stopWatching(): Promise<void> {
    const watcher = this.keyWatcher;
    this.keyWatcher = undefined;
    if (watcher !== undefined) await cancelWatcher(watcher, this.ctx.requestTimeoutMs);
  }
}

function closedError(): RingError {
  return new RingError('closed', 'the campaign was cancelled or its store closed');
}
