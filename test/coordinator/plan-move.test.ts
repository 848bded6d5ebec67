/**
 * planMove, the leader's choice of a partition move: to a registered shard that owns
 * nothing (scale-out), off a shard marked as leaving (scale-in), neither while an owner
 * is not registered, and never back to a leaving shard that owns nothing.
 */
import { describe, expect, it } from 'vitest';

import { planMove } from '../../src/coordinator/handoff.js';
import { diffRings, type Ring, type ShardInfo } from '../../src/ring/index.js';

const RING: Ring = {
  epoch: 4,
  partitions: 6,
  owners: ['a', 'b', 'a', 'b', 'a', 'b'],
};

function registered(...ids: string[]): ShardInfo[] {
  return ids.map((shardId, i) => ({
    shardId,
    address: `10.0.0.${i + 1}:7400`,
    leaseId: String(100 + i),
    registeredRevision: 10 + i,
  }));
}

describe('planMove', () => {
  it('moves partitions to a joiner, the fewest that balance the ring', () => {
    const next = planMove(RING, registered('a', 'b', 'c')) as Ring;
    expect(next.epoch).toBe(5);
    const moves = diffRings(RING, next);
    expect(moves.map((m) => m.to)).toEqual(['c', 'c']);
    expect(new Set(moves.map((m) => m.from))).toEqual(new Set(['a', 'b']));
  });

  it('moves every partition off a leaving shard, to the shards that stay', () => {
    const next = planMove(RING, registered('a', 'b'), ['b']) as Ring;
    expect(next).toEqual({ epoch: 5, partitions: 6, owners: ['a', 'a', 'a', 'a', 'a', 'a'] });

    // With a joiner at the same time, the leaver's partitions are shared out.
    const both = planMove(RING, registered('a', 'b', 'c'), ['b']) as Ring;
    expect(both.owners.filter((o) => o === 'b')).toEqual([]);
    expect(both.owners.filter((o) => o === 'a').length).toBe(3);
    expect(both.owners.filter((o) => o === 'c').length).toBe(3);
  });

  it('plans nothing while an owner is not registered, or when nobody would stay', () => {
    expect(planMove(RING, registered('a', 'c'))).toBeUndefined();
    expect(planMove(RING, registered('a', 'c'), ['b'])).toBeUndefined();
    expect(planMove(RING, registered('a', 'b'), ['a', 'b'])).toBeUndefined();
  });

  it('gives nothing back to a leaving shard that owns nothing, and plans nothing when settled', () => {
    const settled: Ring = { epoch: 5, partitions: 6, owners: ['a', 'a', 'a', 'a', 'a', 'a'] };
    expect(planMove(settled, registered('a', 'b'), ['b'])).toBeUndefined();
    expect(planMove(RING, registered('a', 'b'))).toBeUndefined();
    // Once its mark is cleared, it is a joiner again.
    expect(diffRings(settled, planMove(settled, registered('a', 'b')) as Ring)).toHaveLength(3);
  });
});
