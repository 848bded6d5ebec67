/**
 * The ring's pure logic. Scenarios:
 *
 * - a fresh ring is balanced within one partition, deterministic, and ignores input order
 * - a joining shard takes exactly its quota; nothing else moves
 * - a leaving shard's partitions are the only ones that move
 * - randomised joins and leaves keep balance and minimal movement
 * - P = 1, N > P, invalid input, diffRings and ownerOf
 */
import { describe, expect, it } from 'vitest';

import {
  RingError,
  computeRing,
  diffRings,
  ownerOf,
  partitionsOf,
  type Ring,
} from '../../src/ring/index.js';

function counts(ring: Ring): Map<string, number> {
  const out = new Map<string, number>();
  for (const owner of ring.owners) out.set(owner, (out.get(owner) ?? 0) + 1);

  return out;
}

function expectBalanced(ring: Ring, shards: readonly string[]): void {
  const perShard = shards.map((s) => partitionsOf(ring, s).length);
  expect(perShard.reduce((a, b) => a + b, 0)).toBe(ring.partitions);
  expect(Math.max(...perShard) - Math.min(...perShard)).toBeLessThanOrEqual(1);
  expect(Math.min(...perShard)).toBe(Math.floor(ring.partitions / shards.length));
}

/** A small deterministic generator, so that a failure reproduces. */
function lcg(seed: number): () => number {
  let state = seed >>> 0;

  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

describe('computeRing', () => {
  it('balances a fresh ring within one partition and starts at epoch 1', () => {
    const ring = computeRing(10, ['s1', 's2', 's3']);

    expect(ring.epoch).toBe(1);
    expect(ring.partitions).toBe(10);
    expect(ring.owners).toHaveLength(10);
    expectBalanced(ring, ['s1', 's2', 's3']);
  });

  it('gives the same ring whatever the order of the shard list', () => {
    const a = computeRing(64, ['c', 'a', 'b', 'd']);
    const b = computeRing(64, ['d', 'b', 'a', 'c']);
    const next = (r: Ring) => computeRing(64, ['e', 'a', 'c', 'd', 'b'], r);

    expect(b).toEqual(a);
    expect(next(b)).toEqual(next(a));
  });

  it('moves exactly the joining shard’s quota when a shard joins', () => {
    const before = computeRing(12, ['s1', 's2', 's3']);
    const after = computeRing(12, ['s1', 's2', 's3', 's4'], before);
    const moves = diffRings(before, after);

    expect(after.epoch).toBe(2);
    expect(moves).toHaveLength(3);
    expect(moves.every((m) => m.to === 's4')).toBe(true);
    expect(partitionsOf(after, 's4')).toEqual(moves.map((m) => m.partition));
    expectBalanced(after, ['s1', 's2', 's3', 's4']);
  });

  it('moves only what the larger shards must give when P is not a multiple of N', () => {
    // 10 over 3 is 4/3/3; over 4 it is 3/3/2/2: the 4-holder gives one, a 3-holder gives one.
    const before = computeRing(10, ['s1', 's2', 's3']);
    const after = computeRing(10, ['s1', 's2', 's3', 's4'], before);

    expect(diffRings(before, after)).toHaveLength(2);
    expect(partitionsOf(after, 's4')).toHaveLength(2);
    expectBalanced(after, ['s1', 's2', 's3', 's4']);
  });

  it('moves only the leaving shard’s partitions when a shard leaves', () => {
    const before = computeRing(12, ['s1', 's2', 's3', 's4']);
    const after = computeRing(12, ['s1', 's2', 's4'], before);
    const moves = diffRings(before, after);

    expect(moves).toHaveLength(3);
    expect(moves.every((m) => m.from === 's3')).toBe(true);
    expect(partitionsOf(after, 's3')).toEqual([]);
    expectBalanced(after, ['s1', 's2', 's4']);
  });

  it('keeps balance and minimal movement over random joins and leaves', () => {
    const random = lcg(20260329);
    let checked = 0;

    for (let round = 0; round < 300; round++) {
      const partitions = 1 + Math.floor(random() * 200);
      const n = 1 + Math.floor(random() * 12);
      const shards = Array.from({ length: n }, (_, i) => `shard-${i}`);
      const before = computeRing(partitions, shards);

      const joined = [...shards, `shard-${n}`];
      const afterJoin = computeRing(partitions, joined, before);
      expectBalanced(afterJoin, joined);
      // Lower bound: the newcomer's partitions must come from somewhere.
      expect(diffRings(before, afterJoin)).toHaveLength(
        partitionsOf(afterJoin, `shard-${n}`).length,
      );

      if (n > 1) {
        const leaving = shards[Math.floor(random() * n)] as string;
        const left = shards.filter((s) => s !== leaving);
        const afterLeave = computeRing(partitions, left, before);
        expectBalanced(afterLeave, left);
        // Lower bound: the leaver's partitions must go somewhere.
        expect(diffRings(before, afterLeave)).toHaveLength(partitionsOf(before, leaving).length);
      }
      checked++;
    }

    expect(checked).toBe(300);
  });

  it('changes nothing but the epoch when the shards are the same', () => {
    const before = computeRing(16, ['a', 'b', 'c']);
    const after = computeRing(16, ['c', 'b', 'a'], before);

    expect(after.epoch).toBe(before.epoch + 1);
    expect(after.owners).toEqual(before.owners);
  });

  it('handles a single partition: one owner, and a joining shard moves nothing', () => {
    const one = computeRing(1, ['b']);
    const two = computeRing(1, ['a', 'b', 'c'], one);

    expect(one.owners).toEqual(['b']);
    expect(two.owners).toEqual(['b']);
    expect(diffRings(one, two)).toEqual([]);
  });

  it('leaves shards without partitions when there are more shards than partitions', () => {
    const ring = computeRing(3, ['a', 'b', 'c', 'd', 'e']);

    expect(new Set(ring.owners).size).toBe(3);
    expect([...counts(ring).values()].every((c) => c === 1)).toBe(true);
    expect(partitionsOf(ring, 'd').length + partitionsOf(ring, 'e').length).toBe(0);

    const shrunk = computeRing(3, ['a', 'd', 'e'], ring);
    expect(diffRings(ring, shrunk)).toHaveLength(2);
    expect(ownerOf(shrunk, 0)).toBe('a');
  });

  it('refuses bad input with SL-RING-005', () => {
    const ring = computeRing(4, ['a']);
    const refused = (f: () => unknown) => {
      try {
        f();
      } catch (err) {
        expect(err).toBeInstanceOf(RingError);
        expect((err as RingError).code).toBe('SL-RING-005');
        expect((err as RingError).message).toMatch(/^\[SL-RING-005\] /);
        expect((err as RingError).retryable).toBe(false);
        return;
      }
      throw new Error('expected a RingError');
    };

    refused(() => computeRing(4, []));
    refused(() => computeRing(0, ['a']));
    refused(() => computeRing(4, ['a', 'a']));
    refused(() => computeRing(4, ['']));
    refused(() => computeRing(5, ['a'], ring));
    refused(() => ownerOf(ring, 4));
    refused(() => ownerOf(ring, -1));
    refused(() => diffRings(ring, computeRing(5, ['a'])));
  });
});

describe('diffRings', () => {
  it('lists each moved partition with its old and new owner', () => {
    const a: Ring = { epoch: 1, partitions: 4, owners: ['x', 'y', 'x', 'y'] };
    const b: Ring = { epoch: 2, partitions: 4, owners: ['x', 'z', 'y', 'y'] };

    expect(diffRings(a, b)).toEqual([
      { partition: 1, from: 'y', to: 'z' },
      { partition: 2, from: 'x', to: 'y' },
    ]);
  });
});
