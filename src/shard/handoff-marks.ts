/**
 * The durable marks of partition handoff in a shard's store, and what a host does with
 * them when it opens:
 *
 * - a release mark says that the owner stopped serving a partition under a ring epoch
 *   (it handed the state to the next owner). Under that epoch the partition is never
 *   served again here, also after a restart; under a later epoch the mark is stale (the
 *   move was aborted, or the partition is gone from this shard) and is cleared.
 * - an adoption mark says that a complete copy of a partition was taken from its owner
 *   under a ring epoch E, for ring E+1. The copy is kept while the shard has seen no ring
 *   after E, so that a restart between the copy and the switch keeps it; from E+1 on it
 *   is either held (the move switched) or dropped (the move was aborted).
 */
import type { Logger } from '../observability/index.js';
import { jsonPut, type LevelStateStore } from './level-state-store.js';
import { adoptedKey, releasedKey } from './partition-keys.js';
import type { StorageOp } from './types.js';

export interface ReleaseMark {
  /** The ring epoch under which the partition was released. */
  readonly ringEpoch: number;
  /** Where the next owner listens, for refusals to name. */
  readonly newOwner: string;
}

export interface AdoptionMark {
  /** The ring epoch the copy was taken under (its owner's). */
  readonly ringEpoch: number;
}

export const releaseMarkPut = (partition: number, mark: ReleaseMark): StorageOp =>
  jsonPut(releasedKey(partition), mark);

export const adoptionMarkPut = (partition: number, mark: AdoptionMark): StorageOp =>
  jsonPut(adoptedKey(partition), mark);

/**
 * Reads the marks of the partitions a host opens with under `ringEpoch`: returns those
 * released under that epoch (or a later one), clears stale release marks, and clears the
 * adoption marks of partitions now held (their move has switched).
 */
export async function settleHeldMarks(
  store: LevelStateStore,
  partitions: readonly number[],
  ringEpoch: number,
): Promise<Map<number, ReleaseMark>> {
  const released = new Map<number, ReleaseMark>();
  const clear: StorageOp[] = [];

  for (const partition of partitions) {
    const mark = await store.getJson<ReleaseMark>(releasedKey(partition));
    if (mark !== undefined && mark.ringEpoch >= ringEpoch) released.set(partition, mark);
    else if (mark !== undefined) clear.push({ type: 'del', key: releasedKey(partition) });

    const adopted = await store.getJson<AdoptionMark>(adoptedKey(partition));
    if (adopted !== undefined) clear.push({ type: 'del', key: adoptedKey(partition) });
  }

  await store.write(clear);

  return released;
}

/**
 * Deletes the state and the marks of every partition outside `held`, except complete
 * copies adopted under `ringEpoch` or later (their ring may still switch). Returns the
 * partitions whose state was deleted.
 */
export async function dropUnheldPartitions(
  store: LevelStateStore,
  options: {
    readonly partitionCount: number;
    readonly held: ReadonlySet<number>;
    readonly ringEpoch: number;
    readonly logger: Logger;
  },
): Promise<number[]> {
  const dropped: number[] = [];
  const clear: StorageOp[] = [];

  for (let partition = 0; partition < options.partitionCount; partition++) {
    if (options.held.has(partition)) continue;

    const adopted = await store.getJson<AdoptionMark>(adoptedKey(partition));
    if (adopted !== undefined && adopted.ringEpoch >= options.ringEpoch) continue;

    if (adopted !== undefined) clear.push({ type: 'del', key: adoptedKey(partition) });
    if ((await store.getJson<ReleaseMark>(releasedKey(partition))) !== undefined) {
      clear.push({ type: 'del', key: releasedKey(partition) });
    }
    if (await store.holdsState(partition)) {
      await store.clearPartition(partition);
      dropped.push(partition);
    }
  }
  await store.write(clear);

  if (dropped.length > 0) {
    options.logger.info(
      { partitions: dropped, ringEpoch: options.ringEpoch },
      'dropped the state of partitions not held under this ring',
    );
  }

  return dropped;
}
