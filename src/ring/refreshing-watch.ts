/**
 * A watch that never trusts the events it gets: every event, and every reconnect, only
 * says "something changed", and the state is read again from etcd.
 */
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';

import type { Watcher } from 'etcd3';

import type { RingError } from './errors.js';
import { cancelWatcher, fromEtcdError, withTimeout, type EtcdContext } from './etcd-support.js';

const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 5_000;

export interface SubscriptionEvents {
  /** etcd could not be read or watched; the subscription keeps retrying. */
  failure: [error: RingError];
  /**
   * The change listener threw. With no listener for this event the error is rethrown
   * outside the subscription, as an uncaught exception.
   */
  listenerError: [error: unknown];
}

/** What to watch: one key, or every key under a prefix (both relative to the store's prefix). */
export type WatchTarget = { readonly key: string } | { readonly prefix: string };

export interface RefreshingWatchOptions<T> {
  readonly target: WatchTarget;
  /** Reads the whole current state. */
  readonly read: () => Promise<T>;
  /** Whether two reads are the same state, so that the second is not delivered. */
  readonly same: (a: T, b: T) => boolean;
  readonly deliver: (value: T) => void;
}

/**
 * Delivers the state once at the start, then after every change. Reads never overlap and
 * events that arrive during a read cause exactly one more read, so the last delivery is
 * always the state after the last event. A failed read is retried with capped backoff.
 */
export class RefreshingWatch<T> extends EventEmitter<SubscriptionEvents> {
  private readonly aborter = new AbortController();
  private watcher: Watcher | undefined;
  private started = false;
  private dirty = false;
  private draining = false;
  private drained: Promise<void> = Promise.resolve();
  private last: { value: T } | undefined;
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly ctx: EtcdContext,
    private readonly options: RefreshingWatchOptions<T>,
  ) {
    super();
  }

  /** Resolves once the watch is in place and the current state has been delivered. */
  static async start<T>(ctx: EtcdContext, options: RefreshingWatchOptions<T>): Promise<RefreshingWatch<T>> {
    const watch = new RefreshingWatch(ctx, options);
    try {
      await watch.connect();
      // Anything that changes from here on raises an event, so one read now misses nothing.
      watch.dirty = false;
      watch.offer(await options.read());
    } catch (err) {
      await watch.close();
      throw fromEtcdError('starting a watch', err);
    }

    watch.started = true;
    if (watch.dirty) watch.requestRefresh();

    return watch;
  }

  /** Stops the watch; no delivery happens after this resolves. Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= this.teardown();

    return this.closing;
  }

  private async teardown(): Promise<void> {
    this.aborter.abort();
    const watcher = this.watcher;
    this.watcher = undefined;
    if (watcher !== undefined) await cancelWatcher(watcher, this.ctx.requestTimeoutMs);
    await this.drained;
  }

  private get closed(): boolean {
    return this.aborter.signal.aborted;
  }

  private async connect(): Promise<void> {
    const builder = this.ctx.ns.watch();
    const { target } = this.options;
    const watcher = 'key' in target ? builder.key(target.key).watcher() : builder.prefix(target.prefix).watcher();
    this.watcher = watcher;

    const connected = new Promise<void>((resolve, reject) => {
      watcher.once('connected', () => resolve());
      watcher.once('error', reject);
    });
    watcher.on('connected', () => this.signal());
    watcher.on('data', () => this.signal());
    watcher.on('disconnected', (err) => this.emit('failure', fromEtcdError('the watch lost etcd; reconnecting', err)));
    watcher.on('error', (err) => void this.replaceWatcher(err));

    await withTimeout(connected, this.ctx.requestTimeoutMs, 'starting a watch');
  }

  /** etcd3 gave up on the watcher (e.g. its revision was compacted): start a new one. */
  private async replaceWatcher(err: Error): Promise<void> {
    const old = this.watcher;
    this.watcher = undefined;
    if (old !== undefined) await cancelWatcher(old, this.ctx.requestTimeoutMs);
    this.emit('failure', fromEtcdError('the watch failed; starting a new one', err));

    for (let attempt = 0; !this.closed; attempt++) {
      try {
        await this.connect();
        this.requestRefresh();
        return;
      } catch (connectErr) {
        const failed = this.watcher;
        this.watcher = undefined;
        if (failed !== undefined) await cancelWatcher(failed, this.ctx.requestTimeoutMs);
        this.emit('failure', fromEtcdError('restarting a watch', connectErr));
        await this.pause(attempt);
      }
    }
  }

  private signal(): void {
    if (this.started) this.requestRefresh();
    else this.dirty = true;
  }

  private requestRefresh(): void {
    this.dirty = true;
    if (this.draining || this.closed) return;

    this.draining = true;
    this.drained = this.drain();
  }

  private async drain(): Promise<void> {
    try {
      for (let failures = 0; this.dirty && !this.closed; ) {
        this.dirty = false;
        try {
          const value = await this.options.read();
          if (!this.closed) this.offer(value);
          failures = 0;
        } catch (err) {
          this.emit('failure', fromEtcdError('re-reading after a watch event', err));
          this.dirty = true;
          await this.pause(failures++);
        }
      }
    } finally {
      this.draining = false;
    }
  }

  private offer(value: T): void {
    if (this.last !== undefined && this.options.same(this.last.value, value)) return;

    this.last = { value };
    try {
      this.options.deliver(value);
    } catch (err) {
      if (this.listenerCount('listenerError') > 0) this.emit('listenerError', err);
      else
        process.nextTick(() => {
          throw err;
        });
    }
  }

  private async pause(attempt: number): Promise<void> {
    const ms = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** attempt);
    await sleep(ms, undefined, { signal: this.aborter.signal }).catch(() => undefined);
  }
}
