/**
 * The route ledger of a partition, on a real LevelDB: each sender's last sequence and
 * when it was applied survive a reopen; an entry of a node's incarnation that another
 * incarnation of the same node has replaced goes once it has been silent for an hour
 * (and not before), other nodes' entries stay; a ledger stored before the times were
 * kept loads, and its entries count as long silent.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { LevelStateStore, jsonPut } from '../../src/shard/level-state-store.js';
import { partitionPrefix } from '../../src/shard/partition-keys.js';
import { PartitionLedger, RETIRE_AFTER_MS } from '../../src/shard/partition-ledger.js';
import type { StorageOp } from '../../src/shard/types.js';

const T0 = Date.UTC(2026, 11, 1, 9);
const MINUTE = 60_000;
const dirs: string[] = [];

afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function openStore(): Promise<{ store: LevelStateStore; dir: string }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'speedlayer-ledger-'));
  dirs.push(dir);

  return { store: await LevelStateStore.open(dir), dir };
}

async function persist(store: LevelStateStore, ledger: PartitionLedger): Promise<void> {
  const ops: StorageOp[] = [];
  ledger.collectWrites(ops);
  await store.write(ops);
  ledger.markPersisted();
}

describe('PartitionLedger', () => {
  it("retires a replaced incarnation's entry after an hour of silence, and only then", async () => {
    const { store, dir } = await openStore();
    const ledger = await PartitionLedger.load(store, 3);

    ledger.noteSequence({ senderId: 'shard-1@a', sequence: 1 }, T0);
    ledger.noteSequence({ senderId: 'shard-1@a', sequence: 2 }, T0 + 10 * MINUTE);
    ledger.noteSequence({ senderId: 'shard-2@x', sequence: 7 }, T0);
    ledger.noteSequence({ senderId: 'router', sequence: 4 }, T0);
    // shard-1 restarted: its new incarnation sends while the old entry is recent.
    ledger.noteSequence({ senderId: 'shard-1@b', sequence: 1 }, T0 + 30 * MINUTE);
    expect(ledger.senderIds.sort()).toEqual(['router', 'shard-1@a', 'shard-1@b', 'shard-2@x']);

    // One millisecond short of an hour after shard-1@a's last batch: kept.
    ledger.noteSequence(
      { senderId: 'shard-1@b', sequence: 2 },
      T0 + 10 * MINUTE + RETIRE_AFTER_MS - 1,
    );
    expect(ledger.lastSequence('shard-1@a')).toBe(2);

    ledger.noteSequence({ senderId: 'shard-1@b', sequence: 3 }, T0 + 10 * MINUTE + RETIRE_AFTER_MS);
    expect(ledger.senderIds.sort()).toEqual(['router', 'shard-1@b', 'shard-2@x']);
    // A batch of the retired incarnation now finds no entry: the host refuses any but a
    // first one as a sequence gap.
    expect(ledger.lastSequence('shard-1@a')).toBe(0);
    // shard-2's single incarnation and an id without one are never retired.
    expect(ledger.lastSequence('shard-2@x')).toBe(7);
    expect(ledger.lastSequence('router')).toBe(4);

    await persist(store, ledger);
    await store.close();
    const reopened = await LevelStateStore.open(dir);
    try {
      const loaded = await PartitionLedger.load(reopened, 3);
      expect(loaded.senderIds.sort()).toEqual(['router', 'shard-1@b', 'shard-2@x']);
      expect(loaded.lastSequence('shard-1@b')).toBe(3);
      // The times came back too: shard-2@x (last at T0) goes when a new shard-2 sends an
      // hour later, shard-1@b (last at T0 + 70 min) stays.
      loaded.noteSequence({ senderId: 'shard-2@y', sequence: 1 }, T0 + RETIRE_AFTER_MS);
      expect(loaded.senderIds.sort()).toEqual(['router', 'shard-1@b', 'shard-2@y']);
      loaded.noteSequence({ senderId: 'shard-1@c', sequence: 1 }, T0 + RETIRE_AFTER_MS);
      expect(loaded.lastSequence('shard-1@b')).toBe(3);
    } finally {
      await reopened.close();
    }
  });

  it('loads a ledger stored without times, whose entries count as long silent', async () => {
    const { store } = await openStore();
    try {
      await store.write([
        jsonPut(`${partitionPrefix(5)}ledger`, {
          sequences: [
            ['shard-1@old', 41],
            ['shard-2@old', 9],
          ],
          ack: { fencingToken: 12, round: 3 },
        }),
      ]);
      const ledger = await PartitionLedger.load(store, 5);
      expect(ledger.lastSequence('shard-1@old')).toBe(41);
      expect(ledger.fencingToken).toBe(12);

      // The old incarnation itself carries on where it was.
      ledger.noteSequence({ senderId: 'shard-2@old', sequence: 10 }, T0);
      ledger.noteSequence({ senderId: 'shard-1@new', sequence: 1 }, T0);
      expect(ledger.senderIds.sort()).toEqual(['shard-1@new', 'shard-2@old']);
      expect(ledger.lastSequence('shard-2@old')).toBe(10);
    } finally {
      await store.close();
    }
  });
});
