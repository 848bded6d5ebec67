/**
 * The coordination store: shard membership, the ring and the coordinator's election,
 * as the rest of speedlayer sees them (the port), and the etcd adapter behind it.
 *
 * What the store keeps where in etcd is described in `etcd-keys.ts`.
 */
import { randomUUID } from 'node:crypto';

import { Etcd3, type ComparatorBuilder, type Namespace } from 'etcd3';
import type { Logger } from 'pino';

import { silentLogger } from '../observability/index.js';
import { RingError } from './errors.js';
import {
  LEAVING_PREFIX,
  PENDING_RING_KEY,
  RING_KEY,
  SHARDS_PREFIX,
  STATUS_KEY,
  electionPrefix,
  encodeRing,
  parseShard,
  parseStoredRing,
  type StoredRing,
} from './etcd-keys.js';
import { EtcdLeadership, readLeader } from './etcd-leadership.js';
import { EtcdPendingRing } from './etcd-pending-ring.js';
import { EtcdMembership, checkShardId, type RegisterShardOptions } from './etcd-membership.js';
import {
  fromEtcdError,
  revisionNumber,
  type Closable,
  type EtcdContext,
  type Lifecycle,
} from './etcd-support.js';
import { RefreshingWatch, type RefreshingWatchOptions } from './refreshing-watch.js';
import { assertValidRing, shardsOf, type Ring } from './ring.js';
import { encodeStatus, judgeStatus, parseStatus, type StatusRecord } from './status-record.js';

export type { RegisterShardOptions } from './etcd-membership.js';

// ---------------------------------------------------------------------------------------
// The port
// ---------------------------------------------------------------------------------------

/** The typed event methods of a handle. */
export interface Emitter<Events extends Record<keyof Events, unknown[]>> {
  on<E extends keyof Events>(event: E, listener: (...args: Events[E]) => void): this;
  once<E extends keyof Events>(event: E, listener: (...args: Events[E]) => void): this;
  off<E extends keyof Events>(event: E, listener: (...args: Events[E]) => void): this;
}

/** A registered shard, as listed. */
export interface ShardInfo {
  readonly shardId: string;
  /** Where other processes reach it, e.g. `10.0.3.7:7400`. */
  readonly address: string;
  /** The lease its registration lives on (a decimal int64). */
  readonly leaseId: string;
  /** The etcd revision that created its key; a re-registration has a higher one. */
  readonly registeredRevision: number;
}

/** The elected leader, as read from etcd. */
export interface LeaderInfo {
  readonly candidateId: string;
  /** The creation revision of its election key: higher for every later leader. */
  readonly fencingToken: number;
  readonly leaseId: string;
}

/**
 * - `registered`: the key exists and its lease is kept alive;
 * - `releasing` → `released`: {@link Membership.release} revoked the lease;
 * - `lost`: the lease expired or was revoked elsewhere, or the key was deleted. Other
 *   processes may already see the shard as gone. Terminal: register again.
 */
export type MembershipState = 'registered' | 'releasing' | 'released' | 'lost';

export interface MembershipEvents {
  /** The membership ended without {@link Membership.release}; emitted once. */
  lost: [error: RingError];
  state: [to: MembershipState, from: MembershipState];
}

/** A shard's registration, alive while its lease is. */
export interface Membership extends Emitter<MembershipEvents> {
  readonly shardId: string;
  readonly address: string;
  readonly leaseId: string;
  readonly state: MembershipState;
  /**
   * Revokes the lease, so that the shard leaves the list at once. Rejects with
   * 'unavailable' when etcd does not answer: the lease then expires within its TTL.
   * Safe to call twice.
   */
  release(): Promise<void>;
  /** Same as {@link release}. */
  close(): Promise<void>;
}

/**
 * - `campaigning`: waiting for every older candidate to go (a handle is only handed out
 *   once it leads);
 * - `leading`: the key has the lowest creation revision and the lease is confirmed alive;
 * - `resigning` → `resigned`: {@link Leadership.resign} revoked the lease;
 * - `lost`: the lease expired or was revoked, the key was deleted, or no keepalive was
 *   confirmed within the TTL. A newer leader may exist. Terminal: campaign again.
 */
export type LeadershipState = 'campaigning' | 'leading' | 'resigning' | 'resigned' | 'lost';

export interface LeadershipEvents {
  /** Leadership ended without {@link Leadership.resign}; emitted once. Stop acting as leader. */
  lost: [error: RingError];
  state: [to: LeadershipState, from: LeadershipState];
}

/** Being the elected coordinator. */
export interface Leadership extends Emitter<LeadershipEvents> {
  readonly candidateId: string;
  /**
   * The creation revision of this candidate's election key. Every later leader's token
   * is higher, so a store that remembers the highest token it has seen can refuse a
   * deposed leader (see the warehouse's writer fence).
   */
  readonly fencingToken: number;
  readonly leaseId: string;
  readonly state: LeadershipState;
  /** Revokes the lease so that the next candidate is elected at once. Safe to call twice. */
  resign(): Promise<void>;
  /** Same as {@link resign}. */
  close(): Promise<void>;
}

export interface SubscriptionEvents {
  /** etcd could not be read or watched; the subscription keeps retrying with backoff. */
  failure: [error: RingError];
  /**
   * The change listener threw. With no listener for this event the error is rethrown
   * asynchronously, as an uncaught exception.
   */
  listenerError: [error: unknown];
}

/** A running watch; `onChange` is not called after {@link close} resolves. */
export interface Subscription extends Emitter<SubscriptionEvents> {
  close(): Promise<void>;
}

export interface WriteRingOptions {
  /** The epoch the ring in etcd must have now; 0 when no ring exists yet. */
  readonly expectEpoch: number;
  /** Writes only while this leadership's election key exists, in the same transaction. */
  readonly leadership?: Leadership;
}

export interface WriteStatusOptions {
  /** Writes only while this leadership's election key exists, in the same transaction. */
  readonly leadership: Leadership;
}

export interface CampaignOptions {
  /** Gives up campaigning: the campaign rejects with 'closed' and its key is revoked. */
  readonly signal?: AbortSignal;
}

/** What speedlayer needs from its coordination service. */
export interface CoordinationStore {
  /** Registers a shard under a lease of `ttlSeconds` (at least 2) that it keeps alive. */
  registerShard(
    shardId: string,
    address: string,
    ttlSeconds: number,
    options?: RegisterShardOptions,
  ): Promise<Membership>;
  /** The registered shards, sorted by id. */
  listShards(): Promise<ShardInfo[]>;
  /**
   * Calls `onChange` with the full list now and after every change. Each call comes from
   * a fresh list, never from the watch events themselves.
   */
  watchShards(onChange: (shards: ShardInfo[]) => void): Promise<Subscription>;
  readRing(): Promise<Ring | undefined>;
  /**
   * Compare-and-swap: stores `ring` only if the stored epoch is still
   * `options.expectEpoch`, and `ring.epoch` must be that plus one. Otherwise rejects with
   * 'stale-epoch' (or 'not-leader' when the guarding leadership is gone).
   */
  writeRing(ring: Ring, options: WriteRingOptions): Promise<void>;
  /** The ring the leader is moving partitions to, while a move is under way. */
  readPendingRing(): Promise<Ring | undefined>;
  /**
   * Records `next` as the pending ring, under the same compare-and-swap as
   * {@link writeRing}: the stored ring must be at `options.expectEpoch`, `next.epoch` that
   * plus one, and no other ring pending (else 'stale-epoch'). The next ring write ends it.
   */
  writePendingRing(next: Ring, options: WriteRingOptions): Promise<void>;
  /**
   * Marks a shard as leaving (decommissioned): the leader moves its partitions to the
   * other shards and gives it none from then on. Idempotent.
   */
  markLeaving(shardId: string): Promise<void>;
  /** Ends a shard's leaving mark: it may own partitions again. Idempotent. */
  clearLeaving(shardId: string): Promise<void>;
  /** The shards marked as leaving, sorted by id. */
  listLeaving(): Promise<string[]>;
  /** Calls `onChange` with the leaving shards now and after every change of the marks. */
  watchLeaving(onChange: (shardIds: string[]) => void): Promise<Subscription>;
  /** Calls `onChange` with the stored ring now (if there is one) and after every write. */
  watchRing(onChange: (ring: Ring) => void): Promise<Subscription>;
  /** Resolves once `candidateId` leads; until then it waits behind the older candidates. */
  campaign(candidateId: string, ttlSeconds: number, options?: CampaignOptions): Promise<Leadership>;
  /** Reads the leader from etcd, every call. */
  currentLeader(): Promise<LeaderInfo | undefined>;
  /**
   * Stores the leader's status record, only while `options.leadership` leads (rejects
   * with 'not-leader' otherwise), so that a deposed leader never overwrites its
   * successor's. The record's fencing token must be the leadership's.
   */
  writeStatus(record: StatusRecord, options: WriteStatusOptions): Promise<void>;
  /**
   * The stored status record as judged against the leader elected now (see
   * `judgeStatus`): a record of another term has no last round. Undefined when there is
   * neither a record nor a leader.
   */
  readStatus(): Promise<StatusRecord | undefined>;
  /** Releases every lease, stops every watch and closes the client. Safe to call twice. */
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------
// The etcd adapter
// ---------------------------------------------------------------------------------------

const CLUSTER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export interface EtcdCoordinationStoreOptions {
  /** etcd client URLs, e.g. `['http://etcd-0.etcd:2379']`. */
  readonly endpoints: readonly string[];
  /** Names the cluster; its keys live under `/speedlayer/<clusterName>/`. */
  readonly clusterName: string;
  /** Overrides the key prefix; must end with `/`. @default `/speedlayer/<clusterName>/` */
  readonly keyPrefix?: string;
  /** @default 'coordinator' */
  readonly electionName?: string;
  /**
   * Deadline of each attempt of an etcd request, and of cancelling a watch. Watches and
   * keepalive streams have none. etcd3 makes up to 3 attempts when a request fails in a
   * way it deems recoverable, so a request can take up to three times this. @default 5000
   */
  readonly requestTimeoutMs?: number;
  /**
   * Gets lifecycle lines only: shard registered / released / membership lost, leadership
   * acquired / resigned / lost, ring written. @default silent
   */
  readonly logger?: Logger;
}

export interface ResolvedEtcdCoordinationStoreOptions {
  readonly endpoints: readonly string[];
  readonly keyPrefix: string;
  readonly electionName: string;
  readonly requestTimeoutMs: number;
  readonly logger: Logger;
}

export function resolveEtcdCoordinationStoreOptions(
  options: EtcdCoordinationStoreOptions,
): ResolvedEtcdCoordinationStoreOptions {
  const problems: string[] = [];
  if (options.endpoints.length === 0) problems.push('endpoints: at least one etcd URL is needed');
  if (!CLUSTER_NAME.test(options.clusterName)) {
    problems.push(
      `clusterName: ${JSON.stringify(options.clusterName)} must be letters, digits, '.', '_' or '-'`,
    );
  }
  const keyPrefix = options.keyPrefix ?? `/speedlayer/${options.clusterName}/`;
  if (!keyPrefix.endsWith('/')) {
    problems.push(`keyPrefix: ${JSON.stringify(keyPrefix)} must end with '/'`);
  }
  const electionName = options.electionName ?? 'coordinator';
  if (!CLUSTER_NAME.test(electionName)) {
    problems.push(`electionName: ${JSON.stringify(electionName)} is not a name`);
  }
  const requestTimeoutMs = options.requestTimeoutMs ?? 5_000;
  if (!Number.isSafeInteger(requestTimeoutMs) || requestTimeoutMs < 1) {
    problems.push(
      `requestTimeoutMs: ${requestTimeoutMs} is not a positive whole number of milliseconds`,
    );
  }
  if (problems.length > 0) throw new RingError('invalid-argument', problems.join('; '));

  return {
    endpoints: [...options.endpoints],
    keyPrefix,
    electionName,
    requestTimeoutMs,
    logger: (options.logger ?? silentLogger()).child({ component: 'coordination' }),
  };
}

/** The coordination store over etcd (v3 API, through the etcd3 client). */
export class EtcdCoordinationStore implements CoordinationStore {
  private readonly ctx: EtcdContext;
  private readonly pendingRing: EtcdPendingRing;
  private readonly children = new Set<Closable>();
  /** How handles join and leave {@link children}, the set that close() closes. */
  private readonly lifecycle: Lifecycle = {
    track: (child) => {
      this.assertOpen();
      this.children.add(child);
    },
    forget: (child) => void this.children.delete(child),
  };
  /** Aborted by close(): stops every campaign still waiting. */
  private readonly closer = new AbortController();
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly client: Etcd3,
    private readonly options: ResolvedEtcdCoordinationStoreOptions,
  ) {
    this.ctx = {
      ns: client.namespace(options.keyPrefix),
      requestTimeoutMs: options.requestTimeoutMs,
      logger: options.logger,
    };
    this.pendingRing = new EtcdPendingRing(this.ctx, () => this.readStoredRing());
  }

  /** Connects and checks that etcd answers; rejects with 'unavailable' if it does not. */
  static async open(options: EtcdCoordinationStoreOptions): Promise<EtcdCoordinationStore> {
    const resolved = resolveEtcdCoordinationStoreOptions(options);
    const client = new Etcd3({
      hosts: [...resolved.endpoints],
      dialTimeout: resolved.requestTimeoutMs,
      // Streams (watches, keepalives) live as long as they are needed; requests do not.
      defaultCallOptions: (context) =>
        context.isStream ? {} : { deadline: new Date(Date.now() + resolved.requestTimeoutMs) },
    });
    const store = new EtcdCoordinationStore(client, resolved);

    try {
      await store.ns.get(RING_KEY).exec();
    } catch (err) {
      client.close();
      throw fromEtcdError(`connecting to etcd at ${resolved.endpoints.join(',')}`, err);
    }

    return store;
  }

  private get ns(): Namespace {
    return this.ctx.ns;
  }

  async registerShard(
    shardId: string,
    address: string,
    ttlSeconds: number,
    options: RegisterShardOptions = {},
  ): Promise<Membership> {
    this.assertOpen();

    return EtcdMembership.register(
      this.ctx,
      { shardId, address },
      ttlSeconds,
      this.lifecycle,
      options,
    );
  }

  async listShards(): Promise<ShardInfo[]> {
    this.assertOpen();
    const result = await this.ns
      .getAll()
      .prefix(SHARDS_PREFIX)
      .exec()
      .catch((err: unknown) => {
        throw fromEtcdError('listing shards', err);
      });

    const shards = result.kvs.map((kv) => parseShard(kv));

    return shards.sort((a, b) => (a.shardId < b.shardId ? -1 : a.shardId > b.shardId ? 1 : 0));
  }

  watchShards(onChange: (shards: ShardInfo[]) => void): Promise<Subscription> {
    return this.watch({
      target: { prefix: SHARDS_PREFIX },
      read: () => this.listShards(),
      same: (a, b) => JSON.stringify(a) === JSON.stringify(b),
      deliver: onChange,
    });
  }

  async readRing(): Promise<Ring | undefined> {
    this.assertOpen();

    return (await this.readStoredRing())?.ring;
  }

  async writeRing(ring: Ring, options: WriteRingOptions): Promise<void> {
    this.assertOpen();
    const { expectEpoch } = options;
    checkRingWrite(ring, expectEpoch);
    const guard =
      options.leadership === undefined ? undefined : this.leaderGuard(options.leadership);

    // Gather: the stored ring must be the one the caller computed from.
    const current = await this.readStoredRing();
    const currentEpoch = current?.ring.epoch ?? 0;
    if (currentEpoch !== expectEpoch) throw staleEpoch(expectEpoch, currentEpoch);
    if (current !== undefined && current.ring.partitions !== ring.partitions) {
      throw new RingError(
        'invalid-argument',
        `the partition count never changes: etcd holds ${current.ring.partitions}, the new ring has ${ring.partitions}`,
      );
    }

    // Act: swap only if nothing was written since that read (and the leader key still exists).
    const writeId = randomUUID();
    const txn =
      current === undefined
        ? this.ns.if(RING_KEY, 'Create', '==', 0)
        : this.ns.if(RING_KEY, 'Mod', '==', current.modRevision);
    if (guard !== undefined) txn.and(guard.key, 'Create', '==', guard.fencingToken);
    // A new ring ends any move that was pending over the old one.
    txn.then(
      this.ns.put(RING_KEY).value(encodeRing(ring, writeId)),
      this.ns.delete().key(PENDING_RING_KEY),
    );

    if (!(await this.commitRing(txn, writeId, ring.epoch))) {
      await this.explainRefusedWrite(writeId, expectEpoch, guard);
    }

    this.ctx.logger.info(
      { epoch: ring.epoch, partitions: ring.partitions, shards: shardsOf(ring).length },
      'ring written',
    );
  }

  async markLeaving(shardId: string): Promise<void> {
    this.assertOpen();
    checkShardId(shardId);
    await this.ns
      .put(`${LEAVING_PREFIX}${shardId}`)
      .value(JSON.stringify({ sinceMs: Date.now() }))
      .exec()
      .catch((err: unknown) => {
        throw fromEtcdError(`marking shard ${shardId} as leaving`, err);
      });
  }

  async clearLeaving(shardId: string): Promise<void> {
    this.assertOpen();
    await this.ns
      .delete()
      .key(`${LEAVING_PREFIX}${shardId}`)
      .exec()
      .catch((err: unknown) => {
        throw fromEtcdError(`clearing the leaving mark of shard ${shardId}`, err);
      });
  }

  async listLeaving(): Promise<string[]> {
    this.assertOpen();
    const keys = await this.ns
      .getAll()
      .prefix(LEAVING_PREFIX)
      .keys()
      .catch((err: unknown) => {
        throw fromEtcdError('listing leaving shards', err);
      });

    return keys.map((key) => key.slice(LEAVING_PREFIX.length)).sort();
  }

  watchLeaving(onChange: (shardIds: string[]) => void): Promise<Subscription> {
    return this.watch({
      target: { prefix: LEAVING_PREFIX },
      read: () => this.listLeaving(),
      same: (a, b) => JSON.stringify(a) === JSON.stringify(b),
      deliver: onChange,
    });
  }

  async readPendingRing(): Promise<Ring | undefined> {
    this.assertOpen();

    return (await this.pendingRing.read())?.ring;
  }

  async writePendingRing(next: Ring, options: WriteRingOptions): Promise<void> {
    this.assertOpen();
    checkRingWrite(next, options.expectEpoch);
    const guard =
      options.leadership === undefined ? undefined : this.leaderGuard(options.leadership);

    await this.pendingRing.write(next, guard);
  }

  watchRing(onChange: (ring: Ring) => void): Promise<Subscription> {
    return this.watch<StoredRing | undefined>({
      target: { key: RING_KEY },
      read: () => this.readStoredRing(),
      same: (a, b) => a?.modRevision === b?.modRevision,
      deliver: (stored) => {
        if (stored !== undefined) onChange(stored.ring);
      },
    });
  }

  async campaign(
    candidateId: string,
    ttlSeconds: number,
    options: CampaignOptions = {},
  ): Promise<Leadership> {
    this.assertOpen();
    if (candidateId === '') {
      throw new RingError('invalid-argument', 'a candidate id cannot be empty');
    }

    const signal =
      options.signal === undefined
        ? this.closer.signal
        : AbortSignal.any([this.closer.signal, options.signal]);

    return EtcdLeadership.campaign(
      { ...this.ctx, ...this.lifecycle, prefix: electionPrefix(this.options.electionName), signal },
      candidateId,
      ttlSeconds,
    );
  }

  async currentLeader(): Promise<LeaderInfo | undefined> {
    this.assertOpen();
    try {
      return await readLeader(this.ns, electionPrefix(this.options.electionName));
    } catch (err) {
      throw fromEtcdError('reading the leader', err);
    }
  }

  async writeStatus(record: StatusRecord, options: WriteStatusOptions): Promise<void> {
    this.assertOpen();
    const guard = this.leaderGuard(options.leadership);
    if (record.fencingToken !== guard.fencingToken) {
      throw new RingError(
        'invalid-argument',
        `a status record with fencing token ${record.fencingToken} cannot be written under token ${guard.fencingToken}`,
      );
    }

    const txn = this.ns
      .if(guard.key, 'Create', '==', guard.fencingToken)
      .then(this.ns.put(STATUS_KEY).value(encodeStatus(record)));
    const result = await txn.commit().catch((err: unknown) => {
      throw fromEtcdError('writing the status', err);
    });
    if (!result.succeeded) {
      throw new RingError('not-leader', 'the leadership guarding the status write has ended');
    }
  }

  async readStatus(): Promise<StatusRecord | undefined> {
    this.assertOpen();
    const [stored, leader] = await Promise.all([
      this.ns
        .get(STATUS_KEY)
        .exec()
        .catch((err: unknown) => {
          throw fromEtcdError('reading the status', err);
        }),
      this.currentLeader(),
    ]);

    const kv = stored.kvs[0];
    const record = kv === undefined ? undefined : parseStatus(kv.value.toString());

    return judgeStatus(record, leader, Date.now());
  }

  close(): Promise<void> {
    this.closing ??= this.teardown();

    return this.closing;
  }

  /**
   * The one place where a store's resources end: campaigns stop, watches stop, leases
   * are revoked (etcd3's close() alone would leave their keepalives running), and then
   * the client closes.
   */
  private async teardown(): Promise<void> {
    this.closer.abort();
    const results = await Promise.allSettled([...this.children].map((child) => child.close()));
    this.children.clear();
    for (const result of results) {
      if (result.status === 'rejected') {
        this.ctx.logger.warn(
          { err: result.reason },
          'lease not revoked on close; it expires with its TTL',
        );
      }
    }

    this.client.close();
  }

  private assertOpen(): void {
    if (this.closer.signal.aborted) {
      throw new RingError('closed', 'the coordination store is closed');
    }
  }

  private async watch<T>(options: RefreshingWatchOptions<T>): Promise<Subscription> {
    this.assertOpen();

    return RefreshingWatch.start(this.ctx, options, this.lifecycle);
  }

  private async readStoredRing(): Promise<StoredRing | undefined> {
    const result = await this.ns
      .get(RING_KEY)
      .exec()
      .catch((err: unknown) => {
        throw fromEtcdError('reading the ring', err);
      });

    const kv = result.kvs[0];
    if (kv === undefined) return undefined;

    return parseStoredRing(kv.value.toString(), String(kv.mod_revision));
  }

  private leaderGuard(leadership: Leadership): { key: string; fencingToken: number } {
    if (!(leadership instanceof EtcdLeadership)) {
      throw new RingError(
        'invalid-argument',
        'the leadership guarding a write must come from this store',
      );
    }
    if (leadership.state !== 'leading') {
      throw new RingError(
        'not-leader',
        `${leadership.candidateId} no longer leads (${leadership.state})`,
      );
    }

    return { key: leadership.key, fencingToken: leadership.fencingToken };
  }

  /** Whether the swap happened, also when etcd applied it but its answer was lost. */
  private async commitRing(
    txn: ComparatorBuilder,
    writeId: string,
    epoch: number,
  ): Promise<boolean> {
    try {
      return (await txn.commit()).succeeded;
    } catch (err) {
      const stored = await this.readStoredRing().catch(() => undefined);
      if (stored?.writeId === writeId) return true;

      throw fromEtcdError(`writing ring epoch ${epoch}`, err);
    }
  }

  /** A refused swap: ours after all (a retried request), a lost leadership, or a newer ring. */
  private async explainRefusedWrite(
    writeId: string,
    expectEpoch: number,
    guard: { key: string; fencingToken: number } | undefined,
  ): Promise<void> {
    const now = await this.readStoredRing();
    if (now?.writeId === writeId) return;

    if (guard !== undefined) {
      const leaderKey = await this.ns
        .get(guard.key)
        .exec()
        .catch((err: unknown) => {
          throw fromEtcdError('checking the leadership of a refused ring write', err);
        });
      const created = leaderKey.kvs[0]?.create_revision;
      if (created === undefined || revisionNumber(created) !== guard.fencingToken) {
        throw new RingError('not-leader', 'the leadership guarding the ring write has ended');
      }
    }

    throw staleEpoch(expectEpoch, now?.ring.epoch ?? 0);
  }
}

function checkRingWrite(ring: Ring, expectEpoch: number): void {
  assertValidRing(ring);
  if (!Number.isSafeInteger(expectEpoch) || expectEpoch < 0 || ring.epoch !== expectEpoch + 1) {
    throw new RingError(
      'invalid-argument',
      `a ring written over epoch ${expectEpoch} must have epoch ${expectEpoch + 1}, not ${ring.epoch}`,
    );
  }
}

function staleEpoch(expectEpoch: number, currentEpoch: number): RingError {
  return new RingError(
    'stale-epoch',
    `the ring in etcd is at epoch ${currentEpoch}, not ${expectEpoch}: re-read it and recompute`,
    { currentEpoch },
  );
}
