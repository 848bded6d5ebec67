/**
 * The elected coordinator's lifecycle, as a library: campaign, claim the writer fence,
 * settle the ring, run rounds while leading, and go back to standby when leadership is
 * lost. The process role and its CLI wrap this later.
 */
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';

import { silentLogger, type Logger } from '../observability/index.js';
import {
  EtcdCoordinationStore,
  computeRing,
  isRingError,
  shardsOf,
  type CoordinationStore,
  type Emitter,
  type EtcdCoordinationStoreOptions,
  type Leadership,
  type Ring,
  type ShardInfo,
  type StatusRecord,
  type Subscription,
} from '../ring/index.js';
import { StateMachine, type TransitionTable } from '../ring/state-machine.js';
import { StaleFenceError } from '../sink/errors.js';
import type { WriterFence } from '../sink/types.js';
import {
  GrpcPartitionsPort,
  type GrpcPartitionsPortOptions,
} from '../transport/grpc-partitions.js';
import { Coordinator, type RoundResult, type RowSink } from './coordinator.js';
import { PartitionHandoff, type PartitionHandoffOptions } from './handoff.js';
import { StatusRecorder, type StatusRecorderOptions } from './status-recorder.js';

/**
 * - `idle`: built, not started;
 * - `campaigning`: a standby, waiting to be elected (or backing off after a failure);
 * - `leading`: elected, fence claimed, running rounds;
 * - `stopping` → `stopped`: {@link CoordinatorService.close} was called. Terminal.
 */
export type CoordinatorServiceState = 'idle' | 'campaigning' | 'leading' | 'stopping' | 'stopped';

const MOVES: TransitionTable<CoordinatorServiceState> = {
  idle: ['campaigning', 'stopping'],
  campaigning: ['leading', 'stopping'],
  leading: ['campaigning', 'stopping'],
  stopping: ['stopped'],
  stopped: [],
};

export interface CoordinatorServiceEvents {
  state: [to: CoordinatorServiceState, from: CoordinatorServiceState];
  /** A round ran while leading. */
  round: [result: RoundResult];
  /** A round failed while leading; the next one reloads from the sink. */
  roundFailed: [error: unknown];
  /** The leader's status record, on taking office and after every round. */
  status: [record: StatusRecord];
  /**
   * Something failed that the service recovers from by itself (a round, a campaign, a
   * ring write). Without a listener the error is only logged.
   */
  error: [error: unknown];
}

/** Where the coordinator publishes: rows, and the fence it claims on being elected. */
export interface FencedSink extends RowSink {
  claimFence(fence: WriterFence): Promise<void>;
}

export interface CoordinatorServiceOptions {
  /**
   * The coordination store. Given as etcd options, the service opens the store and
   * closes it on {@link CoordinatorService.close} (the store then logs nothing unless the
   * options carry a logger); given as a store, the caller owns it.
   */
  readonly coordination: CoordinationStore | EtcdCoordinationStoreOptions;
  /** Usually the {@link Warehouse}; the service does not close it. */
  readonly sink: FencedSink;
  /** This coordinator's name in the election, e.g. the pod name. */
  readonly candidateId: string;
  /** P, fixed when the cluster is created. */
  readonly partitions: number;
  readonly allowedLatenessMs: number;
  readonly logger: Logger;
  /** @default 1000 */
  readonly roundIntervalMs?: number;
  /**
   * How many shards must be registered before the first ring is written over them.
   * @default 1
   */
  readonly initialShards?: number;
  /** TTL of the election lease. @default 5 */
  readonly leaseTtlSeconds?: number;
  /** First backoff after a retryable failure; doubles up to {@link maxBackoffMs}. @default 200 */
  readonly initialBackoffMs?: number;
  /** @default 5000 */
  readonly maxBackoffMs?: number;
  /** Passed to every {@link GrpcPartitionsPort} the service builds. */
  readonly port?: Pick<GrpcPartitionsPortOptions, 'reportDeadlineMs' | 'callDeadlineMs' | 'client'>;
  /** How partitions move to a shard that joins (see {@link PartitionHandoff}). */
  readonly handoff?: Pick<
    PartitionHandoffOptions,
    'adoptDeadlineMs' | 'concurrency' | 'retryBackoffMs' | 'client'
  >;
  /** How often missing partitions are logged again, and the status rewritten unchanged. */
  readonly status?: Pick<StatusRecorderOptions, 'reminderIntervalMs' | 'refreshIntervalMs'>;
}

/** What a leader is running on: its fence, the ring, the port and the coordinator. */
interface Term {
  readonly leadership: Leadership;
  /** Aborted when the term ends: leadership lost, close(), or a fatal error. */
  readonly ended: AbortController;
  /** The ring the port was built from; undefined until there is one. */
  ring: Ring | undefined;
  /** The ring in etcd as this term last knew it; ahead of `ring` while an owner is away. */
  latestRing: Ring | undefined;
  /** The registered shards as last applied. */
  shards: readonly ShardInfo[];
  /** The shards marked as leaving, from their watch (read without waiting on etcd). */
  leaving: readonly string[];
  /** Moves partitions to shards that join. */
  readonly handoff: PartitionHandoff;
  /** The ring epoch of the last round that every partition reported to. */
  completeEpoch?: number;
  /** Partition → address of the port. */
  addresses: readonly string[];
  port: GrpcPartitionsPort | undefined;
  coordinator: Coordinator | undefined;
  /** The latest shard list from the watch, not yet applied. */
  pendingShards: ShardInfo[] | undefined;
  /** The idle and absent shards last logged, so that each change is logged once. */
  membershipSeen?: string;
  subscription: Subscription | undefined;
  leavingSubscription: Subscription | undefined;
  /** The term's status record, stored in etcd after its rounds. */
  readonly recorder: StatusRecorder;
}

/**
 * The elected coordinator's lifecycle.
 *
 * {@link start} campaigns for leadership in the background (retrying retryable store
 * failures with a capped exponential backoff). On winning it claims the warehouse's
 * writer fence with its fencing token, so that every write of an earlier leader is
 * refused from then on; reads shard membership; writes a new ring epoch when the
 * registered shards differ from the stored ring's; builds a {@link GrpcPartitionsPort}
 * from the ring; resumes a {@link Coordinator} from the sink; and runs a round every
 * `roundIntervalMs`. When the leadership is lost it stops the rounds at once, closes
 * the port and campaigns again, as a standby.
 *
 * The first ring is written over the shards registered when the first leader finds
 * none (at least `initialShards` of them). A partition's state lives in its owner's
 * LevelDB, so a partition only changes owner together with its state: when a shard that
 * owns nothing has joined and every owner is registered, the leader moves partitions to
 * it with a {@link PartitionHandoff} between rounds. An owner that leaves keeps its
 * partitions, and rounds hold back (Invariant 2) until it registers again, possibly at
 * another address (the port is rebuilt then).
 */
export class CoordinatorService
  extends EventEmitter<CoordinatorServiceEvents>
  implements Emitter<CoordinatorServiceEvents>
{
  private readonly machine: StateMachine<CoordinatorServiceState>;
  private readonly logger: Logger;
  private readonly roundIntervalMs: number;
  private readonly leaseTtlSeconds: number;
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;
  /** Aborted by close(): ends the campaign, the backoff and the current term. */
  private readonly closer = new AbortController();
  private store: CoordinationStore | undefined;
  private readonly ownsStore: boolean;
  private running: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private term: Term | undefined;

  constructor(private readonly options: CoordinatorServiceOptions) {
    super();
    this.logger = options.logger.child({
      component: 'coordinator-service',
      candidateId: options.candidateId,
    });
    this.roundIntervalMs = positive('roundIntervalMs', options.roundIntervalMs ?? 1000);
    this.leaseTtlSeconds = positive('leaseTtlSeconds', options.leaseTtlSeconds ?? 5);
    this.initialBackoffMs = positive('initialBackoffMs', options.initialBackoffMs ?? 200);
    this.maxBackoffMs = positive('maxBackoffMs', options.maxBackoffMs ?? 5000);
    if (!Number.isSafeInteger(options.partitions) || options.partitions < 1) {
      throw new Error(`partitions: ${options.partitions} is not a positive integer`);
    }
    this.ownsStore = isEtcdOptions(options.coordination);
    if (!isEtcdOptions(options.coordination)) this.store = options.coordination;
    this.machine = new StateMachine('coordinator service', MOVES, 'idle', (from, to) =>
      this.emit('state', to, from),
    );
  }

  get state(): CoordinatorServiceState {
    return this.machine.state;
  }

  /** The fencing token of the current term, while leading. */
  get fencingToken(): number | undefined {
    return this.term?.leadership.fencingToken;
  }

  /** The ring the current term runs on, while leading. */
  get ring(): Ring | undefined {
    return this.term?.ring;
  }

  /**
   * The coordinators' status: while this service leads, its own record of its last
   * round; otherwise the record the leader stored in etcd, judged against the leader
   * elected now (see `judgeStatus`). Undefined before {@link start} and when etcd holds
   * neither a record nor a leader. Rejects with a RingError when etcd cannot be read.
   */
  async status(): Promise<StatusRecord | undefined> {
    const term = this.term;
    if (term !== undefined && this.machine.state === 'leading') return term.recorder.current;
    if (this.store === undefined) return undefined;

    return this.store.readStatus();
  }

  /**
   * Opens the store (when the service owns it) and starts campaigning in the background;
   * resolves once the campaign has begun. Rejects when the store cannot be opened.
   */
  async start(): Promise<void> {
    if (this.machine.state !== 'idle') {
      throw new Error(`the coordinator service cannot start from ${this.machine.state}`);
    }
    if (this.store === undefined) {
      // The service logs the lifecycle lines itself; the store only with a logger of its own.
      this.store = await EtcdCoordinationStore.open({
        logger: silentLogger(),
        ...(this.options.coordination as EtcdCoordinationStoreOptions),
      });
    }
    if (this.closer.signal.aborted && this.ownsStore) {
      await this.store.close();
      return;
    }
    if (!this.machine.transition(['idle'], 'campaigning')) {
      // close() won the race while the store was opening.
      return;
    }
    this.running = this.campaignLoop(this.store);
  }

  /** Stops rounds, resigns, closes the port and the store it owns. Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();

    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.machine.transition(['idle', 'campaigning', 'leading'], 'stopping');
    this.closer.abort();
    this.term?.ended.abort();
    await this.running;
    if (this.ownsStore) await this.store?.close();
    this.machine.transition(['stopping'], 'stopped');
  }

  private async campaignLoop(store: CoordinationStore): Promise<void> {
    let backoffMs = this.initialBackoffMs;

    while (!this.closer.signal.aborted) {
      this.logger.info({ allowedLatenessMs: this.options.allowedLatenessMs }, 'campaigning');
      let leadership: Leadership;
      try {
        leadership = await store.campaign(this.options.candidateId, this.leaseTtlSeconds, {
          signal: this.closer.signal,
        });
      } catch (err) {
        if (this.closer.signal.aborted) return;
        this.fail(err, 'campaign failed');
        if (isRingError(err) && !err.retryable) {
          // Nothing a retry fixes (a bad argument, a closed store): give up.
          void this.close();
          return;
        }
        await this.backoff(backoffMs);
        backoffMs = Math.min(backoffMs * 2, this.maxBackoffMs);
        continue;
      }

      const clean = await this.lead(store, leadership);
      if (clean) backoffMs = this.initialBackoffMs;
      else {
        await this.backoff(backoffMs);
        backoffMs = Math.min(backoffMs * 2, this.maxBackoffMs);
      }
    }
  }

  /** One term as leader; resolves when it ends. False when it ended on a failure. */
  private async lead(store: CoordinationStore, leadership: Leadership): Promise<boolean> {
    const ended = new AbortController();
    const onClose = (): void => ended.abort();
    this.closer.signal.addEventListener('abort', onClose);
    const onLost = (): void => {
      this.logger.warn({ fencingToken: leadership.fencingToken }, 'leadership lost');
      ended.abort();
    };
    leadership.once('lost', onLost);
    if (this.closer.signal.aborted || leadership.state !== 'leading') ended.abort();

    let clean = true;
    let term: Term | undefined;
    try {
      const previous = await store.readRing();
      const fencingToken = leadership.fencingToken;
      await this.options.sink.claimFence({ ringEpoch: previous?.epoch ?? 0, fencingToken });
      this.logger.info({ fencingToken, ringEpoch: previous?.epoch ?? 0 }, 'leadership acquired');

      term = {
        leadership,
        ended,
        ring: undefined,
        latestRing: undefined,
        shards: [],
        handoff: new PartitionHandoff({
          ...this.options.handoff,
          client: this.options.handoff?.client ?? this.options.port?.client,
          store,
          leadership,
          logger: this.logger,
        }),
        addresses: [],
        port: undefined,
        coordinator: undefined,
        pendingShards: undefined,
        subscription: undefined,
        leavingSubscription: undefined,
        leaving: [],
        recorder: new StatusRecorder({
          ...this.options.status,
          leaderId: this.options.candidateId,
          fencingToken,
          partitionCount: this.options.partitions,
          logger: this.logger,
        }),
      };
      this.term = term;
      if (ended.signal.aborted) return true;
      if (!this.machine.transition(['campaigning'], 'leading')) return true;

      const ring = await term.handoff.recover(previous);
      await this.applyShards(store, term, await store.listShards(), ring);
      await this.saveStatus(store, term);
      const t = term;
      term.subscription = await store.watchShards((shards) => {
        t.pendingShards = shards;
      });
      term.subscription.on('failure', (err) => this.fail(err, 'shard watch failed; retrying'));
      term.subscription.on('listenerError', (err) => this.fail(err, 'shard watch listener failed'));
      term.leavingSubscription = await store.watchLeaving((leaving) => {
        t.leaving = leaving;
      });
      term.leavingSubscription.on('failure', (err) =>
        this.fail(err, 'leaving-shard watch failed; retrying'),
      );

      await this.runRounds(store, term);
    } catch (err) {
      if (!ended.signal.aborted) {
        clean = false;
        if (err instanceof StaleFenceError) await this.noteStaleFence(store, err);
        else this.fail(err, 'leading failed; stepping down');
      }
    } finally {
      ended.abort();
      leadership.off('lost', onLost);
      this.closer.signal.removeEventListener('abort', onClose);
      await this.endTerm(term, leadership);
      this.machine.transition(['leading'], this.closer.signal.aborted ? 'stopping' : 'campaigning');
    }

    return clean;
  }

  private async runRounds(store: CoordinationStore, term: Term): Promise<void> {
    const signal = term.ended.signal;

    while (!signal.aborted) {
      const shards = term.pendingShards;
      if (shards !== undefined) {
        term.pendingShards = undefined;
        await this.applyShards(store, term, shards, term.latestRing ?? (await store.readRing()));
      }
      await this.moveToJoiners(store, term);

      if (term.coordinator !== undefined) {
        try {
          const result = await term.coordinator.round();
          if (signal.aborted) return;
          term.recorder.recordRound(result, term.port?.lastReportFailures());
          if (result.missingPartitions.length === 0) term.completeEpoch = term.ring?.epoch;
          this.emit('round', result);
        } catch (err) {
          if (signal.aborted) return;
          if (isStaleFence(err)) {
            // A newer leader claimed the fence: this term is over, whatever etcd says yet.
            throw err;
          }
          this.emit('roundFailed', err);
          this.fail(err, 'round failed; the next round reloads from the sink');
        }
      }
      await this.saveStatus(store, term);

      await sleep(this.roundIntervalMs, undefined, { signal }).catch(() => undefined);
    }
  }

  /**
   * Writes the next ring epoch when the registered shards differ from the ring's, and
   * (re)builds the port and the coordinator when the ring they run on changed.
   */
  private async applyShards(
    store: CoordinationStore,
    term: Term,
    shards: readonly ShardInfo[],
    previous: Ring | undefined,
  ): Promise<void> {
    const ids = shards.map((s) => s.shardId);
    term.shards = shards;
    let ring = previous;
    const initialShards = this.options.initialShards ?? 1;
    if (ring === undefined && ids.length >= initialShards) {
      const next = computeRing(this.options.partitions, ids);
      await store.writeRing(next, { expectEpoch: 0, leadership: term.leadership });
      this.logger.info({ epoch: next.epoch, shards: ids }, 'ring written');
      ring = next;
    }
    if (ring === undefined) {
      this.logger.info(
        { registered: ids.length, initialShards },
        'waiting for shards before writing the first ring',
      );
      return;
    }
    term.latestRing = ring;
    this.noteMembership(term, ring, ids);

    const addressOf = new Map(shards.map((s) => [s.shardId, s.address]));
    const found = ring.owners.map((owner) => addressOf.get(owner));
    if (found.some((a) => a === undefined)) {
      // An owner left: wait for the watch. A port still running asks the old address and
      // finds its partitions missing; without one, the status says so itself.
      if (term.port === undefined) {
        term.recorder.setRing(
          ring,
          found.map((a) => a ?? ''),
        );
        term.recorder.recordAbsent(
          ring.owners.flatMap((_, p) => (found[p] === undefined ? [p] : [])),
        );
      }
      return;
    }
    const addresses = found as string[];
    if (term.ring?.epoch === ring.epoch && sameList(term.addresses, addresses)) return;

    term.port?.close();
    const fence: WriterFence = {
      ringEpoch: ring.epoch,
      fencingToken: term.leadership.fencingToken,
    };
    const port = new GrpcPartitionsPort({
      ...this.options.port,
      addresses,
      fence,
      logger: this.logger,
    });
    term.ring = ring;
    term.addresses = addresses;
    term.port = port;
    term.recorder.setRing(ring, addresses);
    term.coordinator = undefined;
    const coordinator = new Coordinator(port, this.options.sink, {
      allowedLatenessMs: this.options.allowedLatenessMs,
      fence,
      logger: this.logger,
    });
    await coordinator.resume();
    term.coordinator = coordinator;
  }

  /**
   * Moves partitions to shards that joined, when a move is due (see
   * {@link PartitionHandoff.step}), and rebuilds the port on the ring written. A move
   * starts only after a round that every partition reported to under the ring, so that
   * every owner holds its partitions under that epoch. A failed move is logged and tried
   * again later; a lost leadership ends the term.
   */
  private async moveToJoiners(store: CoordinationStore, term: Term): Promise<void> {
    const ring = term.latestRing;
    if (ring === undefined || term.completeEpoch !== ring.epoch) return;

    let now: Ring;
    try {
      now = await term.handoff.step(ring, term.shards, term.leaving, term.ended.signal);
    } catch (err) {
      if (term.ended.signal.aborted || isRingError(err, 'not-leader')) throw err;
      this.fail(err, 'partition move failed; it is tried again later');
      return;
    }

    if (now !== ring) await this.applyShards(store, term, term.shards, now);
  }

  /**
   * Logs, once per change, the shards that are registered but own nothing (they joined
   * after the ring was written; partitions move to them once every owner is registered)
   * and the owners that are not registered (their partitions hold every number back
   * until they return).
   */
  private noteMembership(term: Term, ring: Ring, ids: readonly string[]): void {
    const owners = shardsOf(ring);
    const idle = ids.filter((id) => !owners.includes(id)).sort();
    const absent = owners.filter((id) => !ids.includes(id)).sort();
    const seen = `${idle.join(',')}|${absent.join(',')}`;
    const before = term.membershipSeen;
    if (seen === before) return;
    term.membershipSeen = seen;
    if (idle.length > 0) {
      this.logger.warn(
        { ringEpoch: ring.epoch, shards: idle },
        'shards registered without partitions: partitions move to them once every ring owner is registered',
      );
    }
    if (absent.length > 0) {
      this.logger.warn(
        { ringEpoch: ring.epoch, shards: absent },
        'ring owners not registered: their partitions hold numbers back until they return',
      );
    } else if (before !== undefined && !before.endsWith('|')) {
      this.logger.info({ ringEpoch: ring.epoch }, 'every ring owner is registered');
    }
  }

  /**
   * Hands the term's status record to listeners and stores it in etcd when it changed
   * (or has not been rewritten for a while). A failed write leaves the previous record
   * for readers and is tried again after the next round.
   */
  private async saveStatus(store: CoordinationStore, term: Term): Promise<void> {
    if (term.ended.signal.aborted) return;
    const record = term.recorder.current;
    this.emit('status', record);
    if (!term.recorder.needsWrite()) return;

    try {
      await store.writeStatus(record, { leadership: term.leadership });
      term.recorder.markWritten(record);
    } catch (err) {
      if (term.ended.signal.aborted) return;
      if (isRingError(err, 'not-leader')) {
        // The election key is gone: the leadership reports its loss and ends the term.
        this.logger.debug({ err }, 'status not written: no longer leading');
        return;
      }
      this.fail(err, 'status not written; readers see the previous one');
    }
  }

  private async endTerm(term: Term | undefined, leadership: Leadership): Promise<void> {
    if (term !== undefined) {
      term.coordinator = undefined;
      term.port?.close();
      term.port = undefined;
      await term.subscription?.close().catch((err: unknown) => this.fail(err, 'closing watch'));
      await term.leavingSubscription
        ?.close()
        .catch((err: unknown) => this.fail(err, 'closing watch'));
    }
    if (this.term === term) this.term = undefined;
    if (leadership.state === 'leading') {
      await leadership.resign().catch((err: unknown) => this.fail(err, 'resign failed'));
    }
  }

  private async backoff(ms: number): Promise<void> {
    await sleep(ms, undefined, { signal: this.closer.signal }).catch(() => undefined);
  }

  /**
   * A claim found a newer token in the fence. A newer leader in etcd makes it an ordinary
   * handover that reached the database first; none means etcd issues tokens below the
   * fence, and no term can publish: loud, on every term, until an operator acts.
   */
  private async noteStaleFence(store: CoordinationStore, err: StaleFenceError): Promise<void> {
    const fields = { fencingToken: err.fencingToken, heldToken: err.heldToken };
    const leader = await store.currentLeader().catch(() => undefined);
    if (leader !== undefined && leader.fencingToken >= err.heldToken) {
      this.logger.warn(
        { ...fields, leaderId: leader.candidateId },
        'leadership lost: a newer leader claimed the writer fence',
      );
      return;
    }

    this.logger.error(
      {
        ...fields,
        err,
        hint: 'etcd issues tokens below the fence: was it rebuilt from nothing? Restore it from a snapshot taken after the last claim, or raise its revision above the fence',
      },
      'the writer fence holds a token above any leader etcd knows; stepping down',
    );
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  private fail(err: unknown, message: string): void {
    this.logger.warn({ err }, message);
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }
}

function isEtcdOptions(
  value: CoordinationStore | EtcdCoordinationStoreOptions,
): value is EtcdCoordinationStoreOptions {
  return 'endpoints' in value;
}

function isStaleFence(err: unknown): boolean {
  return err instanceof Error && err.message.includes('stale fencing token');
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) {
    throw new Error(`${name}: ${value} is not a positive number`);
  }

  return value;
}
