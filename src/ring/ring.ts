/**
 * The ring: which shard owns each partition, under an epoch that rises by one with
 * every change. Pure logic; etcd holds the ring through a coordination store.
 */
import { RingError } from './errors.js';

export interface Ring {
  /** 1 for the first ring of a cluster, then +1 per change. */
  readonly epoch: number;
  /** P, fixed when the cluster is created. */
  readonly partitions: number;
  /** Index = partition, value = the owning shard's id; `partitions` entries. */
  readonly owners: readonly string[];
}

/** One partition that changes owner between two rings. */
export interface PartitionMove {
  readonly partition: number;
  readonly from: string;
  readonly to: string;
}

/**
 * Assigns `partitions` partitions to `shards`. Each shard gets floor(P/N) or ceil(P/N)
 * partitions, and the result depends only on the set of shards and `previous`, not on
 * the order of `shards`.
 *
 * Given `previous`, it moves as few partitions as possible: the shards that held the
 * most keep the larger quotas, and a partition stays with its previous owner while that
 * owner is still present and under quota. When `previous` is balanced, a joining shard
 * therefore takes exactly its quota from the others, and a leaving shard's partitions are
 * the only ones that move.
 */
export function computeRing(partitions: number, shards: readonly string[], previous?: Ring): Ring {
  const sorted = checkShards(shards);
  if (!Number.isSafeInteger(partitions) || partitions < 1) {
    throw new RingError(
      'invalid-argument',
      `the partition count must be a positive integer, got ${partitions}`,
    );
  }
  if (previous !== undefined) {
    assertValidRing(previous);
    if (previous.partitions !== partitions) {
      throw new RingError(
        'invalid-argument',
        `the partition count never changes: the previous ring has ${previous.partitions}, asked for ${partitions}`,
      );
    }
  }

  const quotas = quotasFor(partitions, sorted, previous);
  const owners = keepPrevious(partitions, quotas, previous);
  fillUnassigned(owners, quotas, sorted);

  return { epoch: (previous?.epoch ?? 0) + 1, partitions, owners: owners as string[] };
}

/** The shard that owns `partition` in `ring`. */
export function ownerOf(ring: Ring, partition: number): string {
  const owner = Number.isInteger(partition) ? ring.owners[partition] : undefined;
  if (owner === undefined) {
    throw new RingError(
      'invalid-argument',
      `partition ${partition} is outside 0..${ring.partitions - 1}`,
    );
  }

  return owner;
}

/** The partitions `shardId` owns in `ring`, ascending; empty for a shard outside it. */
export function partitionsOf(ring: Ring, shardId: string): number[] {
  const owned: number[] = [];
  ring.owners.forEach((owner, partition) => {
    if (owner === shardId) owned.push(partition);
  });

  return owned;
}

/** The partitions whose owner differs between `a` and `b`, ascending by partition. */
export function diffRings(a: Ring, b: Ring): PartitionMove[] {
  if (a.partitions !== b.partitions) {
    throw new RingError(
      'invalid-argument',
      `rings of ${a.partitions} and ${b.partitions} partitions cannot be compared`,
    );
  }

  const moves: PartitionMove[] = [];
  for (let partition = 0; partition < a.partitions; partition++) {
    const from = ownerOf(a, partition);
    const to = ownerOf(b, partition);
    if (from !== to) moves.push({ partition, from, to });
  }

  return moves;
}

/** The distinct shard ids of `ring`, sorted. */
export function shardsOf(ring: Ring): string[] {
  return [...new Set(ring.owners)].sort(compareIds);
}

/** Throws 'invalid-argument' unless `ring` is well formed. */
export function assertValidRing(ring: Ring): void {
  const problem = ringProblem(ring);
  if (problem !== undefined) throw new RingError('invalid-argument', `invalid ring: ${problem}`);
}

/** What is wrong with a value that should be a ring, or undefined when it is one. */
export function ringProblem(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return 'not an object';

  const { epoch, partitions, owners } = value as Record<string, unknown>;
  if (!Number.isSafeInteger(epoch) || (epoch as number) < 1) {
    return `epoch ${String(epoch)} is not a positive integer`;
  }
  if (!Number.isSafeInteger(partitions) || (partitions as number) < 1) {
    return `partition count ${String(partitions)} is not a positive integer`;
  }
  if (!Array.isArray(owners)) return 'owners is not an array';
  if (owners.length !== partitions) {
    return `${owners.length} owners for ${String(partitions)} partitions`;
  }
  const bad = owners.findIndex((o) => typeof o !== 'string' || o === '');
  if (bad >= 0) return `partition ${bad} has no owner`;

  return undefined;
}

/** Plain code-unit order, so that the result never depends on the locale. */
function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function checkShards(shards: readonly string[]): string[] {
  if (shards.length === 0) {
    throw new RingError('invalid-argument', 'a ring needs at least one shard');
  }

  const sorted = [...shards].sort(compareIds);
  for (let i = 0; i < sorted.length; i++) {
    if (sorted[i] === '') throw new RingError('invalid-argument', 'a shard id cannot be empty');
    if (i > 0 && sorted[i] === sorted[i - 1]) {
      throw new RingError('invalid-argument', `shard ${sorted[i]} is listed twice`);
    }
  }

  return sorted;
}

/**
 * floor(P/N) for every shard, plus one for the P mod N shards that held the most
 * partitions before (ties in id order). Giving the larger quotas to the largest holders
 * maximises what stays in place.
 */
function quotasFor(
  partitions: number,
  sorted: readonly string[],
  previous: Ring | undefined,
): Map<string, number> {
  const held = new Map<string, number>(sorted.map((s) => [s, 0]));
  for (const owner of previous?.owners ?? []) {
    const count = held.get(owner);
    if (count !== undefined) held.set(owner, count + 1);
  }

  const base = Math.floor(partitions / sorted.length);
  const larger = new Set(
    [...sorted]
      .sort((a, b) => (held.get(b) as number) - (held.get(a) as number) || compareIds(a, b))
      .slice(0, partitions % sorted.length),
  );

  return new Map(sorted.map((s) => [s, larger.has(s) ? base + 1 : base]));
}

/** Owners that stay; `undefined` where a partition must move. Consumes `quotas`. */
function keepPrevious(
  partitions: number,
  quotas: Map<string, number>,
  previous: Ring | undefined,
): Array<string | undefined> {
  const owners = new Array<string | undefined>(partitions).fill(undefined);
  if (previous === undefined) return owners;

  for (let partition = 0; partition < partitions; partition++) {
    const owner = ownerOf(previous, partition);
    const left = quotas.get(owner) ?? 0;
    if (left > 0) {
      owners[partition] = owner;
      quotas.set(owner, left - 1);
    }
  }

  return owners;
}

/** Hands the unassigned partitions round-robin, in id order, to shards with quota left. */
function fillUnassigned(
  owners: Array<string | undefined>,
  quotas: Map<string, number>,
  sorted: readonly string[],
): void {
  let next = 0;
  for (let partition = 0; partition < owners.length; partition++) {
    if (owners[partition] !== undefined) continue;

    while ((quotas.get(sorted[next % sorted.length] as string) as number) === 0) next++;
    const shard = sorted[next % sorted.length] as string;
    owners[partition] = shard;
    quotas.set(shard, (quotas.get(shard) as number) - 1);
    next++;
  }
}
