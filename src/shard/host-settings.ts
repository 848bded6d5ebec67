/**
 * The settings a shard's store is created with and checks on every open: the partition
 * count and the allowed lateness never change for a data directory.
 */
import { formatDuration } from '../config/duration.js';
import { ShardError } from './errors.js';
import { jsonPut, type LevelStateStore } from './level-state-store.js';

const NODE_META_KEY = 'node/meta';

/** The partitions a host is asked to hold, checked against P, ascending and distinct. */
export function checkPartitions(options: {
  readonly partitionCount: number;
  readonly partitions?: readonly number[];
}): number[] {
  const P = options.partitionCount;
  if (!Number.isSafeInteger(P) || P < 1) {
    throw new ShardError(
      'invalid-argument',
      `the partition count must be a positive integer, got ${P}`,
    );
  }

  const partitions = options.partitions ?? Array.from({ length: P }, (_, p) => p);
  for (const p of partitions) {
    if (!Number.isInteger(p) || p < 0 || p >= P) {
      throw new ShardError('invalid-argument', `partition ${p} is outside 0..${P - 1}`, {
        partition: p,
      });
    }
  }

  return [...new Set(partitions)].sort((a, b) => a - b);
}

/**
 * The partition count and the allowed lateness are fixed when the state is
 * created: a period sealed under one lateness cannot be judged under another
 * (an event on time under the new one would never restate the sealed number).
 */
export async function checkFixedSettings(
  store: LevelStateStore,
  partitions: number,
  allowedLatenessMs: number,
): Promise<void> {
  const meta = await store.getJson<{ partitions: number; allowedLatenessMs?: number }>(
    NODE_META_KEY,
  );
  if (meta === undefined) {
    await store.write([jsonPut(NODE_META_KEY, { partitions, allowedLatenessMs })]);
    return;
  }
  if (meta.partitions !== partitions) {
    throw new Error(
      `[SL-CONFIG-001] this data directory was created with ${meta.partitions} partitions; ` +
        `it cannot be opened with ${partitions} (the partition count never changes)`,
    );
  }
  if (meta.allowedLatenessMs !== undefined && meta.allowedLatenessMs !== allowedLatenessMs) {
    throw new Error(
      `[SL-CONFIG-003] this data directory was created with an allowed lateness of ${formatDuration(meta.allowedLatenessMs)}; ` +
        `it cannot be opened with ${formatDuration(allowedLatenessMs)} (the allowed lateness never changes)`,
    );
  }
}
