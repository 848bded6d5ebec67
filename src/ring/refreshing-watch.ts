/**
 * A watch that never trusts the events it gets: every event, and every reconnect, only
 * says "something changed", and the state is read again from etcd.
 */
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';

import type { Watcher } from 'etcd3';

import type { Subscription, SubscriptionEvents } from './coordination-store.js';
import { RingError } from './errors.js';
import {
  cancelWatcher,
  fromEtcdError,
  withTimeout,
  type EtcdContext,
  type Lifecycle,
} from './etcd-support.js';

const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 5_000;

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
export class RefreshingWatch<T> extends EventEmitter<SubscriptionEvents> implements Subscription {
  private readonly aborter = new AbortController();
  private watcher: Watcher | undefined;
  private started = false;
  private replacing = false;
  private dirty = false;
  private draining = false;
  private drained: Promise<void> = Promise.resolve();
  private last: { value: T } | undefined;
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly ctx: EtcdContext,
    private readonly options: RefreshingWatchOptions<T>,
    private readonly lifecycle: Lifecycle,
  ) {
    super();
  }

  /** Resolves once the watch is in place and the current state has been delivered. */
  static async start<T>(
    ctx: EtcdContext,
    options: RefreshingWatchOptions<T>,
    lifecycle: Lifecycle,
  ): Promise<RefreshingWatch<T>> {
    const watch = new RefreshingWatch(ctx, options, lifecycle);
    lifecycle.track(watch);
    try {
      await watch.connect();
      // Anything that changes from here on raises an event, so one read now misses nothing.
      watch.dirty = false;
      const value = await options.read();
      if (watch.closed) throw new RingError('closed', 'the watch was closed while it started');
      watch.offer(value);
    } catch (err) {
      await watch.close();
      // close() may have run before connect() made the watcher.
      await watch.cancelCurrent();
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
    this.lifecycle.forget(this);
    await this.cancelCurrent();
    await this.drained;
  }

  private async cancelCurrent(): Promise<void> {
    const watcher = this.watcher;
    this.watcher = undefined;
    if (watcher !== undefined) await cancelWatcher(watcher, this.ctx.requestTimeoutMs);
  }

  private get closed(): boolean {
    return this.aborter.signal.aborted;
  }

  private async connect(): Promise<void> {
    const builder = this.ctx.ns.watch();
    const { target } = this.options;
    const watcher =
      'key' in target ? builder.key(target.key).watcher() : builder.prefix(target.prefix).watcher();
    this.watcher = watcher;

    const connected = new Promise<void>((resolve, reject) => {
      watcher.once('connected', () => resolve());
      watcher.once('error', reject);
    });
    watcher.on('connected', () => this.signal());
    watcher.on('data', () => this.signal());
    watcher.on('disconnected', (err) =>
      this.emit('failure', fromEtcdError('the watch lost etcd; reconnecting', err)),
    );
    watcher.on('error', (err) => {
      // While starting, the caller gets the error; while replacing, the retry loop does.
      if (this.started && !this.replacing) void this.replaceWatcher(err);
    });

    await withTimeout(connected, this.ctx.requestTimeoutMs, 'starting a watch');
  }

  /** etcd3 gave up on the watcher (e.g. its revision was compacted): start a new one. */
  private async replaceWatcher(err: Error): Promise<void> {
    this.replacing = true;
    try {
      await this.cancelCurrent();
      this.emit('failure', fromEtcdError('the watch failed; starting a new one', err));

      for (let attempt = 0; !this.closed; attempt++) {
        try {
          await this.connect();
          if (this.closed) await this.cancelCurrent();
          else this.requestRefresh();
          return;
        } catch (connectErr) {
          await this.cancelCurrent();
          this.emit('failure', fromEtcdError('restarting a watch', connectErr));
          await this.pause(attempt);
        }
      }
    } finally {
      this.replacing = false;
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
      if (this.listenerCount('listenerError') > 0) {
        this.emit('listenerError', err);
        return;
      }

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
