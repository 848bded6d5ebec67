/**
 * Key layout of partition state in the shard's LevelDB. Every key of a
 * partition starts with `p/<partition>/`, so that a partition can be listed,
 * moved or dropped as one range.
 */
const pad = (n: number, width: number): string => String(n).padStart(width, '0');

export const partitionPrefix = (partition: number): string => `p/${pad(partition, 5)}/`;

export const metaKey = (partition: number): string => `${partitionPrefix(partition)}meta`;

export const changesKey = (partition: number): string => `${partitionPrefix(partition)}changes`;

/** A dictionary segment, named by the first dense id it holds. */
export const dictKey = (partition: number, firstId: number): string =>
  `${partitionPrefix(partition)}d/${pad(firstId, 10)}`;

/** An hour's set, named by the hour index (hour start / 1 h; non-negative for dates after 1970). */
export const hourKey = (partition: number, hourIndex: number): string =>
  `${partitionPrefix(partition)}h/${hourIndex < 0 ? '-' : '+'}${pad(Math.abs(hourIndex), 9)}`;

export const sealKey = (partition: number, periodKey: string): string =>
  `${partitionPrefix(partition)}s/${periodKey}`;

export function hourIndexOfKey(key: string): number {
  const text = key.slice(key.lastIndexOf('/') + 1);

  return (text.startsWith('-') ? -1 : 1) * Number(text.slice(1));
}

/** The last key that can sort into a partition's range: its prefix with '/' raised to '0'. */
export const partitionRangeEnd = (partition: number): string =>
  `${partitionPrefix(partition).slice(0, -1)}0`;

/**
 * Handoff marks live outside the partitions' ranges, so that they neither travel with a
 * copy nor go when a range is dropped. `released`: the owner stopped serving the
 * partition under a ring epoch. `adopted`: a complete copy of the partition was taken
 * from its owner under a ring epoch, for the next ring.
 */
export const releasedKey = (partition: number): string => `handoff/released/${pad(partition, 5)}`;

export const adoptedKey = (partition: number): string => `handoff/adopted/${pad(partition, 5)}`;
