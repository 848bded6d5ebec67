/**
 * EtcdCoordinationStore against a real single-node etcd (one per file; each test works
 * under its own cluster prefix). A "paused" process is a store whose client reaches etcd
 * through a TCP proxy that the test freezes. Scenarios:
 *
 * - membership: registered shards are listed and watched; release() removes one at once;
 *   a shard id held by a live lease is refused; a lease revoked by an operator makes the
 *   shard disappear and its membership emit 'lost'; a shard that stops its keepalives
 *   (TTL 2 s) disappears within the TTL and its membership emits 'lost'
 * - ring: writeRing is a compare-and-swap on the epoch, and of two racing writers exactly
 *   one wins; watchRing delivers the current ring and each new one; a write guarded by a
 *   lost leadership is refused
 * - election: the first candidate leads and the second waits; resign, or an operator
 *   revoking the lease, hands over with a higher fencing token and 'lost' on the first;
 *   a paused leader learns it lost no later than the standby is elected; a waiting
 *   campaign can be aborted; only lifecycle lines are logged
 * - close(): idempotent, revokes every lease at once, refuses further calls
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

import { Etcd3 } from 'etcd3';
import { pino, type Logger } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import {
  EtcdCoordinationStore,
  RingError,
  computeRing,
  type EtcdCoordinationStoreOptions,
  type Leadership,
  type Ring,
  type ShardInfo,
} from '../../src/ring/index.js';
import { startEtcd, startTcpProxy, type EtcdServer, type TcpProxy } from '../support/etcd.js';

const run = promisify(execFile);

let etcd: EtcdServer;
let raw: Etcd3;
const cleanups: Array<() => Promise<void>> = [];

beforeAll(async () => {
  etcd = await startEtcd();
  raw = new Etcd3({ hosts: etcd.endpoint });
});

afterAll(async () => {
  raw?.close();
  await etcd?.stop();
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A fresh cluster name per test, so that tests never see each other's keys. */
function clusterName(): string {
  return `t-${randomUUID().slice(0, 8)}`;
}

async function openStore(
  cluster: string,
  options: Partial<EtcdCoordinationStoreOptions> = {},
): Promise<EtcdCoordinationStore> {
  const store = await EtcdCoordinationStore.open({
    endpoints: [etcd.endpoint],
    clusterName: cluster,
    requestTimeoutMs: 2_000,
    ...options,
  });
  cleanups.push(() => store.close());

  return store;
}

async function openProxy(): Promise<TcpProxy> {
  const proxy = await startTcpProxy(etcd.endpoint);
  cleanups.push(() => proxy.close());

  return proxy;
}

/** Polls `check` every 20 ms until it holds; fails after `timeoutMs`. */
async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 5_000,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function revokeAsOperator(leaseId: string): Promise<void> {
  const hex = BigInt(leaseId).toString(16);
  await run('etcdctl', [`--endpoints=${etcd.endpoint}`, 'lease', 'revoke', hex], {
    env: { ...process.env, ETCDCTL_API: '3' },
  });
}

async function expectRingError(promise: Promise<unknown>, code: string): Promise<RingError> {
  const error = await promise.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(RingError);
  expect((error as RingError).code).toBe(code);
  expect((error as RingError).message.startsWith(`[${code}] `)).toBe(true);

  return error as RingError;
}

/** The ids of the latest list a shard watcher delivered. */
function shardWatcher(): { lists: ShardInfo[][]; ids: () => string[] } {
  const lists: ShardInfo[][] = [];

  return { lists, ids: () => (lists.at(-1) ?? []).map((s) => s.shardId) };
}

/** A logger that keeps the messages it is given. */
function recordingLogger(): { logger: Logger; messages: string[] } {
  const messages: string[] = [];
  const logger = pino(
    { level: 'debug' },
    {
      write: (line: string) => {
        messages.push((JSON.parse(line) as { msg: string }).msg);
      },
    },
  );

  return { logger, messages };
}

describe('EtcdCoordinationStore membership', () => {
  it('lists and watches registered shards; release() removes one at once', async () => {
    const cluster = clusterName();
    const shardStore = await openStore(cluster);
    const observer = await openStore(cluster);
    const watched = shardWatcher();
    await observer.watchShards((shards) => watched.lists.push(shards));
    expect(watched.lists).toEqual([[]]);

    const s2 = await shardStore.registerShard('s2', '10.0.0.2:7400', 10);
    const s1 = await shardStore.registerShard('s1', '10.0.0.1:7400', 10);

    expect(s1.state).toBe('registered');
    const listed = await observer.listShards();
    expect(listed.map((s) => [s.shardId, s.address, s.leaseId])).toEqual([
      ['s1', '10.0.0.1:7400', s1.leaseId],
      ['s2', '10.0.0.2:7400', s2.leaseId],
    ]);
    await until('the watcher to see both shards', () => watched.ids().length === 2);

    const releasedAt = performance.now();
    await s1.release();
    await s1.release();
    await until('the watcher to see s1 go', () => watched.ids().join() === 's2', 1_000);
    expect(performance.now() - releasedAt).toBeLessThan(1_000);
    expect(s1.state).toBe('released');
    expect(s2.state).toBe('registered');
  });

  it('refuses a shard id that a live lease holds, with the retryable SL-RING-003', async () => {
    const store = await openStore(clusterName());
    await store.registerShard('s1', 'first:1', 10);

    const error = await expectRingError(store.registerShard('s1', 'second:1', 10), 'SL-RING-003');
    expect(error.retryable).toBe(true);
    expect((await store.listShards()).map((s) => s.address)).toEqual(['first:1']);
  });

  it('emits lost and drops the shard when an operator revokes its lease', async () => {
    const cluster = clusterName();
    const store = await openStore(cluster);
    const observer = await openStore(cluster);
    const membership = await store.registerShard('s1', 'a:1', 10);
    const lost: RingError[] = [];
    membership.on('lost', (err) => lost.push(err));

    await revokeAsOperator(membership.leaseId);

    await until('the membership to be lost', () => lost.length === 1, 2_000);
    expect(lost[0]?.code).toBe('SL-RING-002');
    expect(membership.state).toBe('lost');
    expect(await observer.listShards()).toEqual([]);
    await membership.release();
    expect(membership.state).toBe('lost');
  });

  it('drops a shard that stops its keepalives within its 2 s TTL, and tells the shard', async () => {
    const cluster = clusterName();
    const proxy = await openProxy();
    const paused = await openStore(cluster, {
      endpoints: [proxy.endpoint],
      requestTimeoutMs: 1_000,
    });
    const observer = await openStore(cluster);
    const watched = shardWatcher();
    await observer.watchShards((shards) => watched.lists.push(shards));
    const membership = await paused.registerShard('s1', 'a:1', 2);
    let lostAfterMs: number | undefined;
    await until('the watcher to see s1', () => watched.ids().join() === 's1');

    const frozenAt = performance.now();
    membership.on('lost', () => (lostAfterMs = performance.now() - frozenAt));
    proxy.freeze();

    await until('the watcher to see s1 expire', () => watched.ids().length === 0, 6_000);
    const goneAfterMs = performance.now() - frozenAt;
    expect(goneAfterMs).toBeGreaterThan(1_000);
    expect(goneAfterMs).toBeLessThan(5_000);
    await until('the membership to be lost', () => lostAfterMs !== undefined, 1_000);
    expect(lostAfterMs).toBeLessThanOrEqual(goneAfterMs);
    expect(membership.state).toBe('lost');
  });
});

describe('EtcdCoordinationStore ring', () => {
  it('writes the ring as a compare-and-swap on its epoch', async () => {
    const store = await openStore(clusterName());
    const first = computeRing(8, ['a', 'b']);
    const second = computeRing(8, ['a', 'b', 'c'], first);

    expect(await store.readRing()).toBeUndefined();
    await store.writeRing(first, { expectEpoch: 0 });
    const stale = await expectRingError(store.writeRing(first, { expectEpoch: 0 }), 'SL-RING-001');
    expect(stale.currentEpoch).toBe(1);
    expect(stale.retryable).toBe(false);

    await store.writeRing(second, { expectEpoch: 1 });
    await expectRingError(
      store.writeRing({ ...second, epoch: 2 }, { expectEpoch: 1 }),
      'SL-RING-001',
    );
    await expectRingError(store.writeRing(second, { expectEpoch: 5 }), 'SL-RING-005');
    // P never changes.
    await expectRingError(
      store.writeRing({ ...computeRing(9, ['a']), epoch: 3 }, { expectEpoch: 2 }),
      'SL-RING-005',
    );

    expect(await store.readRing()).toEqual(second);
  });

  it('lets exactly one of two racing writers store epoch N+1', async () => {
    const cluster = clusterName();
    const one = await openStore(cluster);
    const two = await openStore(cluster);
    const base = computeRing(16, ['a', 'b']);
    await one.writeRing(base, { expectEpoch: 0 });

    for (let round = 0; round < 5; round++) {
      const current = (await one.readRing()) as Ring;
      const results = await Promise.allSettled([
        one.writeRing(computeRing(16, ['a', 'b', `one-${round}`], current), {
          expectEpoch: current.epoch,
        }),
        two.writeRing(computeRing(16, ['a', 'b', `two-${round}`], current), {
          expectEpoch: current.epoch,
        }),
      ]);

      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const refused = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      expect((refused.reason as RingError).code).toBe('SL-RING-001');
      expect((await two.readRing())?.epoch).toBe(current.epoch + 1);
    }
  });

  it('delivers the stored ring to a new watcher and every newer ring after it', async () => {
    const cluster = clusterName();
    const writer = await openStore(cluster);
    const reader = await openStore(cluster);
    let ring = computeRing(8, ['a']);
    await writer.writeRing(ring, { expectEpoch: 0 });

    const seen: Ring[] = [];
    await reader.watchRing((r) => seen.push(r));
    expect(seen).toEqual([ring]);

    for (const shards of [
      ['a', 'b'],
      ['a', 'b', 'c'],
      ['b', 'c'],
    ]) {
      const next = computeRing(8, shards, ring);
      await writer.writeRing(next, { expectEpoch: ring.epoch });
      ring = next;
      await until(
        `the watcher to see epoch ${next.epoch}`,
        () => seen.at(-1)?.epoch === next.epoch,
      );
    }

    expect(seen.map((r) => r.epoch)).toEqual([1, 2, 3, 4]);
    expect(seen.at(-1)).toEqual(ring);
  });

  it('refuses a ring write guarded by a leadership that has ended, with SL-RING-004', async () => {
    const cluster = clusterName();
    const store = await openStore(cluster);
    const leadership = await store.campaign('c1', 10);
    const ring = computeRing(4, ['a']);
    await store.writeRing(ring, { expectEpoch: 0, leadership });

    // An operator deletes the election key; the write races the deletion event and is
    // refused either locally or by the transaction's guard.
    await raw.namespace(`/speedlayer/${cluster}/`).delete().prefix('election/').exec();
    const next = computeRing(4, ['a', 'b'], ring);
    await expectRingError(store.writeRing(next, { expectEpoch: 1, leadership }), 'SL-RING-004');
    await until('the leadership to be lost', () => leadership.state === 'lost', 2_000);
    await expectRingError(store.writeRing(next, { expectEpoch: 1, leadership }), 'SL-RING-004');
    expect((await store.readRing())?.epoch).toBe(1);
  });
});

describe('EtcdCoordinationStore election', () => {
  it('elects the first candidate; the second waits and takes over on resign with a higher token', async () => {
    const cluster = clusterName();
    const { logger, messages } = recordingLogger();
    const a = await openStore(cluster, { logger });
    const b = await openStore(cluster, { logger });
    const observer = await openStore(cluster);

    const first = await a.campaign('coordinator-a', 10);
    let second: Leadership | undefined;
    const waiting = b.campaign('coordinator-b', 10).then((l) => (second = l));
    await sleep(300);

    expect(first.state).toBe('leading');
    expect(second).toBeUndefined();
    expect(await observer.currentLeader()).toMatchObject({
      candidateId: 'coordinator-a',
      fencingToken: first.fencingToken,
      leaseId: first.leaseId,
    });

    const lost: RingError[] = [];
    first.on('lost', (err) => lost.push(err));
    await first.resign();
    await waiting;

    expect(first.state).toBe('resigned');
    expect(lost).toEqual([]);
    expect(second?.state).toBe('leading');
    expect(second?.fencingToken).toBeGreaterThan(first.fencingToken);
    expect(await observer.currentLeader()).toMatchObject({
      candidateId: 'coordinator-b',
      fencingToken: second?.fencingToken,
    });
    expect(messages).toEqual(['leadership acquired', 'leadership resigned', 'leadership acquired']);
  });

  it('hands over when an operator revokes the leader’s lease; the old leader gets lost', async () => {
    const cluster = clusterName();
    const a = await openStore(cluster);
    const b = await openStore(cluster);
    const first = await a.campaign('a', 10);
    const lost: RingError[] = [];
    first.on('lost', (err) => lost.push(err));
    const states: string[] = [];
    first.on('state', (to, from) => states.push(`${from}->${to}`));
    const waiting = b.campaign('b', 10);

    await revokeAsOperator(first.leaseId);
    const second = await waiting;

    await until('the old leader to hear it lost', () => lost.length === 1, 2_000);
    expect(lost[0]?.code).toBe('SL-RING-002');
    expect(lost[0]?.retryable).toBe(true);
    expect(first.state).toBe('lost');
    expect(states).toEqual(['leading->lost']);
    expect(second.fencingToken).toBeGreaterThan(first.fencingToken);
  });

  it('tells a paused leader it lost no later than the standby is elected, with a newer token', async () => {
    const cluster = clusterName();
    const proxy = await openProxy();
    const paused = await openStore(cluster, {
      endpoints: [proxy.endpoint],
      requestTimeoutMs: 1_000,
    });
    const standby = await openStore(cluster);
    const observer = await openStore(cluster);

    const first = await paused.campaign('paused', 2);
    let lostAt: number | undefined;
    first.on('lost', () => (lostAt = performance.now()));
    const waiting = standby.campaign('standby', 2);
    await sleep(200);

    const frozenAt = performance.now();
    proxy.freeze();
    const second = await waiting;
    const electedAt = performance.now();

    expect(electedAt - frozenAt).toBeLessThan(5_000);
    expect(lostAt).toBeDefined();
    expect(lostAt as number).toBeLessThanOrEqual(electedAt);
    expect(first.state).toBe('lost');
    expect(second.fencingToken).toBeGreaterThan(first.fencingToken);
    expect(await observer.currentLeader()).toMatchObject({
      candidateId: 'standby',
      fencingToken: second.fencingToken,
    });
    await expectRingError(
      paused.writeRing(computeRing(2, ['a']), { expectEpoch: 0, leadership: first }),
      'SL-RING-004',
    );
  });

  it('stops a waiting campaign on abort and removes its key', async () => {
    const cluster = clusterName();
    const a = await openStore(cluster);
    const b = await openStore(cluster);
    const first = await a.campaign('a', 10);
    const abort = new AbortController();
    const waiting = b.campaign('b', 10, { signal: abort.signal });
    await sleep(200);

    abort.abort();
    await expectRingError(waiting, 'SL-RING-008');
    await first.resign();

    expect(await a.currentLeader()).toBeUndefined();
  });
});

describe('EtcdCoordinationStore open', () => {
  it('refuses to open when etcd does not answer, with the retryable SL-RING-007', async () => {
    const proxy = await openProxy();
    proxy.freeze();
    const startedAt = performance.now();

    const error = await expectRingError(
      EtcdCoordinationStore.open({
        endpoints: [proxy.endpoint],
        clusterName: clusterName(),
        requestTimeoutMs: 500,
      }),
      'SL-RING-007',
    );

    expect(error.retryable).toBe(true);
    expect(performance.now() - startedAt).toBeLessThan(3_000);
  });

  it('refuses bad options with SL-RING-005, naming every bad field', async () => {
    const error = await expectRingError(
      EtcdCoordinationStore.open({ endpoints: [], clusterName: 'no spaces', requestTimeoutMs: 0 }),
      'SL-RING-005',
    );

    expect(error.message).toMatch(/endpoints: .*clusterName: .*requestTimeoutMs: /);
  });
});

describe('EtcdCoordinationStore close', () => {
  it('revokes every lease at once, is idempotent, and refuses further calls', async () => {
    const cluster = clusterName();
    const store = await openStore(cluster);
    const observer = await openStore(cluster);
    const membership = await store.registerShard('s1', 'a:1', 30);
    const leadership = await store.campaign('c', 30);
    await store.watchShards(() => undefined);
    await store.watchRing(() => undefined);
    const standby = observer.campaign('standby', 30);

    await Promise.all([store.close(), store.close()]);
    await store.close();

    expect(membership.state).toBe('released');
    expect(leadership.state).toBe('resigned');
    expect(await observer.listShards()).toEqual([]);
    expect((await standby).candidateId).toBe('standby');
    await expectRingError(store.listShards(), 'SL-RING-008');
    await expectRingError(store.campaign('again', 10), 'SL-RING-008');
  });
});
