/**
 * A partition's durable state on its way from the owner that released it to the shard
 * that adopts it: the owner reads its range as chunks in key order, ending with a chunk
 * that carries the totals; the adopting shard replaces its own range with them and marks
 * the copy complete only once every chunk is written and the totals match.
 */
import { ShardError } from './errors.js';
import { adoptionMarkPut } from './handoff-marks.js';
import type { ChunkLimits, LevelStateStore, PartitionEntry } from './level-state-store.js';

/** A piece of a partition's state, in key order. */
export interface PartitionChunk {
  readonly partition: number;
  readonly entries: readonly PartitionEntry[];
  /** True on the last chunk only; a stream without it was cut short. */
  readonly last: boolean;
  /** On the last chunk: entries in the whole stream. */
  readonly totalEntries: number;
  /** On the last chunk: value bytes in the whole stream. */
  readonly totalBytes: number;
}

/** What an adoption copied. */
export interface AdoptOutcome {
  readonly partition: number;
  readonly entries: number;
  readonly bytes: number;
}

/** About 1 MiB per chunk: well inside a gRPC message, and a few LevelDB batches a second. */
export const COPY_CHUNK_LIMITS: ChunkLimits = { maxEntries: 4096, maxBytes: 1024 * 1024 };

/** The partition's range as chunks, then an empty last chunk with the totals. */
export async function* partitionChunks(
  store: LevelStateStore,
  partition: number,
  limits: ChunkLimits = COPY_CHUNK_LIMITS,
): AsyncGenerator<PartitionChunk> {
  let totalEntries = 0;
  let totalBytes = 0;

  for await (const entries of store.readPartition(partition, limits)) {
    totalEntries += entries.length;
    totalBytes += valueBytes(entries);
    yield { partition, entries, last: false, totalEntries: 0, totalBytes: 0 };
  }

  yield { partition, entries: [], last: true, totalEntries, totalBytes };
}

/** Runs a store task after the host's calls before it (the host's serial queue). */
export type Serially = <T>(task: () => Promise<T>) => Promise<T>;

/**
 * Replaces the partition's range in `store` with the chunks, then writes the adoption
 * mark for `ringEpoch`. Each step runs through `serially`, so that the host's other
 * partitions keep being served between chunks. If anything fails, the partial copy is
 * deleted (best effort: a copy without its mark is dropped when the host next opens).
 */
export async function writeAdoptedCopy(
  serially: Serially,
  store: LevelStateStore,
  partition: number,
  ringEpoch: number,
  chunks: AsyncIterable<PartitionChunk>,
): Promise<AdoptOutcome> {
  try {
    await serially(() => store.clearPartition(partition));
    let entries = 0;
    let bytes = 0;

    for await (const chunk of chunks) {
      checkChunk(chunk, partition);
      await serially(() => store.writePartitionEntries(partition, chunk.entries));
      entries += chunk.entries.length;
      bytes += valueBytes(chunk.entries);
      if (!chunk.last) continue;

      checkTotals(chunk, partition, entries, bytes);
      await serially(() => store.write([adoptionMarkPut(partition, { ringEpoch })]));

      return { partition, entries, bytes };
    }

    throw new ShardError(
      'unavailable',
      `the copy of partition ${partition} ended before its last chunk`,
      { partition },
    );
  } catch (err) {
    await serially(() => store.clearPartition(partition)).catch(() => undefined);
    throw err;
  }
}

function checkChunk(chunk: PartitionChunk, partition: number): void {
  if (chunk.partition !== partition) {
    throw new ShardError(
      'internal',
      `a chunk of partition ${chunk.partition} came in the copy of partition ${partition}`,
      { partition },
    );
  }
  if (chunk.entries.some((e) => e.key === '')) {
    throw new ShardError('internal', `the copy of partition ${partition} holds an empty key`, {
      partition,
    });
  }
}

function checkTotals(
  chunk: PartitionChunk,
  partition: number,
  entries: number,
  bytes: number,
): void {
  if (chunk.totalEntries === entries && chunk.totalBytes === bytes) return;

  throw new ShardError(
    'internal',
    `the copy of partition ${partition} brought ${entries} entries (${bytes} bytes); its owner sent ${chunk.totalEntries} (${chunk.totalBytes} bytes)`,
    { partition },
  );
}

function valueBytes(entries: readonly PartitionEntry[]): number {
  return entries.reduce((n, e) => n + e.value.byteLength, 0);
}
