/**
 * A shard's registration in etcd: one key under `shards/`, bound to a lease that this
 * process keeps alive.
 */
import { EventEmitter } from 'node:events';

import type { Watcher } from 'etcd3';

import type { Membership, MembershipEvents, MembershipState } from './coordination-store.js';
import { RingError } from './errors.js';
import {
  cancelWatcher,
  fromEtcdError,
  revisionNumber,
  withTimeout,
  type EtcdContext,
  type Lifecycle,
} from './etcd-support.js';
import { shardKey } from './etcd-keys.js';
import { LeaseKeeper } from './lease-keeper.js';
import { StateMachine, type TransitionTable } from './state-machine.js';

/** Options of {@link EtcdMembership.register}. */
export interface RegisterShardOptions {
  /**
   * When the key is held by another live lease but holds exactly the same record (same
   * shard id and address), move it to the new lease instead of refusing with
   * 'shard-taken'. Only safe when the caller has proved that the previous holder is gone,
   * e.g. it now listens on that very address itself: a restarted process then takes its
   * place without the shard ever leaving the list (which would make the coordinator write
   * a ring without it). @default false
   */
  readonly takeOverSameRecord?: boolean;
}

/** What a shard key holds. */
export interface ShardRecord {
  readonly shardId: string;
  readonly address: string;
}

const MEMBERSHIP_MOVES: TransitionTable<MembershipState> = {
  registered: ['releasing', 'lost'],
  releasing: ['released'],
  released: [],
  lost: [],
};

const SHARD_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,252}$/;

export function checkShardId(shardId: string): void {
  if (!SHARD_ID.test(shardId)) {
    throw new RingError(
      'invalid-argument',
      `shard id ${JSON.stringify(shardId)} must be 1-253 letters, digits, '.', '_', ':' or '-', starting with a letter or digit`,
    );
  }
}

export class EtcdMembership extends EventEmitter<MembershipEvents> implements Membership {
  private readonly machine: StateMachine<MembershipState>;
  private keyWatcher: Watcher | undefined;
  private lostError: RingError | undefined;
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly ctx: EtcdContext,
    readonly shardId: string,
    readonly address: string,
    readonly leaseId: string,
    private readonly keeper: LeaseKeeper,
    private readonly lifecycle: Lifecycle,
  ) {
    super();
    this.machine = new StateMachine(
      'shard membership',
      MEMBERSHIP_MOVES,
      'registered',
      (from, to) => this.emit('state', to, from),
    );
  }

  /**
   * Puts the shard key under a new lease, unless a live lease already holds it: then
   * 'shard-taken' (retryable: the previous incarnation's lease expires within its TTL).
   * With `takeOverSameRecord`, a key that holds exactly this record (same id, same
   * address) is moved to the new lease instead, in one transaction, so that the shard
   * never leaves the list (see {@link RegisterShardOptions}).
   */
  static async register(
    ctx: EtcdContext,
    record: ShardRecord,
    ttlSeconds: number,
    lifecycle: Lifecycle,
    options: RegisterShardOptions = {},
  ): Promise<EtcdMembership> {
    checkShardId(record.shardId);
    const keeper = new LeaseKeeper(ctx.ns, ttlSeconds);
    let membership: EtcdMembership | undefined;

    try {
      const leaseId = await keeper.grant();
      const key = shardKey(record.shardId);
      const value = JSON.stringify(record);
      let result = await ctx.ns
        .if(key, 'Create', '==', 0)
        .then(ctx.ns.put(key).value(value).lease(leaseId))
        .else(ctx.ns.get(key))
        .commit();
      let holder = result.responses[0]?.response_range?.kvs[0]?.value.toString() ?? 'unknown';
      if (!result.succeeded && options.takeOverSameRecord === true && holder === value) {
        result = await ctx.ns
          .if(key, 'Value', '==', value)
          .then(ctx.ns.put(key).value(value).lease(leaseId))
          .else(ctx.ns.get(key))
          .commit();
        holder = result.responses[0]?.response_range?.kvs[0]?.value.toString() ?? 'unknown';
        if (result.succeeded) {
          ctx.logger.info(
            { shardId: record.shardId, address: record.address },
            'shard key taken over from a previous incarnation',
          );
        }
      }
      if (!result.succeeded) {
        throw new RingError(
          'shard-taken',
          `shard ${record.shardId} is already registered under another live lease (${holder})`,
        );
      }

      membership = new EtcdMembership(
        ctx,
        record.shardId,
        record.address,
        leaseId,
        keeper,
        lifecycle,
      );
      await membership.watchKey(revisionNumber(result.header.revision));
      lifecycle.track(membership);
      membership.followLease();
      if (membership.lostError !== undefined) throw membership.lostError;
      ctx.logger.info(
        { shardId: record.shardId, address: record.address, leaseId, ttlSeconds },
        'shard registered',
      );

      return membership;
    } catch (err) {
      if (membership !== undefined) lifecycle.forget(membership);
      await membership?.stopWatching();
      await keeper.revoke().catch(() => undefined);
      throw keeper.lost ?? fromEtcdError(`registering shard ${record.shardId}`, err);
    }
  }

  get state(): MembershipState {
    return this.machine.state;
  }

  /** Revokes the lease, so that the shard disappears from the list at once. Safe to call twice. */
  release(): Promise<void> {
    this.closing ??= this.revokeLease();

    return this.closing;
  }

  close(): Promise<void> {
    return this.release();
  }

  private async revokeLease(): Promise<void> {
    const releasing = this.machine.transition(['registered'], 'releasing');
    await this.stopWatching();
    this.lifecycle.forget(this);
    if (!releasing) return;

    try {
      await this.keeper.revoke();
      this.ctx.logger.info({ shardId: this.shardId, leaseId: this.leaseId }, 'shard released');
    } finally {
      this.machine.transition(['releasing'], 'released');
    }
  }

  /** Watches the shard key from just after its creation, so that no deletion goes unseen. */
  private async watchKey(createdRevision: number): Promise<void> {
    const watcher = this.ctx.ns
      .watch()
      .key(shardKey(this.shardId))
      .startRevision(String(createdRevision + 1))
      .only('delete')
      .watcher();
    this.keyWatcher = watcher;
    watcher.on('delete', () =>
      this.lose(new RingError('lease-lost', `the key of shard ${this.shardId} was deleted`)),
    );
    // Without the watch nothing tells us the key is gone: treat it as lost.
    watcher.on('error', (err) =>
      this.lose(fromEtcdError(`watching the key of shard ${this.shardId}`, err)),
    );

    const connected = new Promise<void>((resolve) => watcher.once('connected', () => resolve()));
    await withTimeout(
      connected,
      this.ctx.requestTimeoutMs,
      `watching the key of shard ${this.shardId}`,
    );
  }

  private followLease(): void {
    const lost = this.keeper.lost;
    if (lost !== undefined) this.lose(lost);
    else this.keeper.once('lost', (err) => this.lose(err));
  }

  private lose(error: RingError): void {
    if (!this.machine.transition(['registered'], 'lost')) return;

    this.lostError = error;
    this.keeper.release();
    void this.stopWatching();
    this.lifecycle.forget(this);
    this.ctx.logger.warn(
      { shardId: this.shardId, leaseId: this.leaseId, err: error },
      'shard membership lost',
    );
    this.emit('lost', error);
  }

  private async stopWatching(): Promise<void> {
    const watcher = this.keyWatcher;
    this.keyWatcher = undefined;
    if (watcher !== undefined) await cancelWatcher(watcher, this.ctx.requestTimeoutMs);
  }
}
