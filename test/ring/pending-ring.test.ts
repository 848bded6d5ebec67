/**
 * The pending ring of EtcdCoordinationStore against a real single-node etcd (a cluster
 * prefix per test). Scenarios:
 * - a pending ring is written only over the ring it was computed from, one at a time,
 *   and the next ring write (the switch or the abort) deletes it;
 * - a pending ring guarded by a leadership that has ended is refused, and nothing is
 *   stored.
 */
import { randomUUID } from 'node:crypto';

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { EtcdCoordinationStore, computeRing, type Ring } from '../../src/ring/index.js';
import { startEtcd, type EtcdServer } from '../support/etcd.js';

const P = 6;

let etcd: EtcdServer;
const cleanups: Array<() => Promise<void>> = [];

beforeAll(async () => {
  etcd = await startEtcd();
});

afterAll(async () => {
  await etcd?.stop();
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function openStore(): Promise<EtcdCoordinationStore> {
  const store = await EtcdCoordinationStore.open({
    endpoints: [etcd.endpoint],
    clusterName: `t-${randomUUID().slice(0, 8)}`,
    requestTimeoutMs: 2_000,
  });
  cleanups.push(() => store.close());

  return store;
}

describe('the pending ring', () => {
  it('is written over the ring it was planned from, once, and ended by the next ring write', async () => {
    const store = await openStore();
    const leadership = await store.campaign('c1', 10);
    const first = computeRing(P, ['a', 'b']);
    await store.writeRing(first, { expectEpoch: 0, leadership });
    expect(await store.readPendingRing()).toBeUndefined();

    const next = computeRing(P, ['a', 'b', 'c'], first);
    await expect(store.writePendingRing(next, { expectEpoch: 2, leadership })).rejects.toThrow(
      /must have epoch 3/,
    );
    await store.writePendingRing(next, { expectEpoch: 1, leadership });
    expect(await store.readPendingRing()).toEqual(next);

    // One move at a time: a second plan over the same ring is refused.
    const other = computeRing(P, ['a', 'b', 'd'], first);
    await expect(
      store.writePendingRing(other, { expectEpoch: 1, leadership }),
    ).rejects.toMatchObject({ kind: 'stale-epoch' });
    expect(await store.readPendingRing()).toEqual(next);

    // The switch writes the ring and ends the move in one transaction.
    await store.writeRing(next, { expectEpoch: 1, leadership });
    expect(await store.readRing()).toEqual(next);
    expect(await store.readPendingRing()).toBeUndefined();

    // A plan over a ring that has moved on is refused.
    const stale: Ring = { ...computeRing(P, ['a', 'c'], first), epoch: 2 };
    await expect(
      store.writePendingRing(stale, { expectEpoch: 1, leadership }),
    ).rejects.toMatchObject({ kind: 'stale-epoch', currentEpoch: 2 });

    // An abort: the old owners again under the next epoch, which also ends the move.
    const later = computeRing(P, ['a', 'b', 'c', 'd'], next);
    await store.writePendingRing(later, { expectEpoch: 2, leadership });
    const abort: Ring = { ...next, epoch: 3 };
    await store.writeRing(abort, { expectEpoch: 2, leadership });
    expect(await store.readPendingRing()).toBeUndefined();
    expect(await store.readRing()).toEqual(abort);
  });

  it('is refused once the leadership guarding it has ended', async () => {
    const store = await openStore();
    const leadership = await store.campaign('c1', 10);
    const first = computeRing(P, ['a']);
    await store.writeRing(first, { expectEpoch: 0, leadership });
    await leadership.resign();

    const next = computeRing(P, ['a', 'b'], first);
    await expect(
      store.writePendingRing(next, { expectEpoch: 1, leadership }),
    ).rejects.toMatchObject({ kind: 'not-leader' });
    expect(await store.readPendingRing()).toBeUndefined();
  });
});
