import fs from 'node:fs/promises';

import { Level } from 'level';

import {
  changesKey,
  hourIndexOfKey,
  hourKey,
  metaKey,
  partitionPrefix,
  partitionRangeEnd,
} from './partition-keys.js';
import type {
  PartitionStorage,
  PeriodChange,
  SealRecord,
  StorageOp,
  StoredPartition,
} from './types.js';

const decoder = new TextDecoder();

/** One key of a partition's state, below the partition's prefix, and its stored value. */
export interface PartitionEntry {
  readonly key: string;
  readonly value: Uint8Array;
}

/** How a partition's range is cut into chunks when it is read out whole. */
export interface ChunkLimits {
  readonly maxEntries: number;
  /** A chunk ends once its values reach this many bytes (one value may pass it). */
  readonly maxBytes: number;
}

/**
 * The shard's durable state in one LevelDB: every partition's dictionary,
 * hour sets, seal records and changes, plus a few node-level records.
 * Writes go in atomic batches.
 */
export class LevelStateStore implements PartitionStorage {
  private constructor(private readonly db: Level<string, Uint8Array>) {}

  static async open(dir: string): Promise<LevelStateStore> {
    await fs.mkdir(dir, { recursive: true });
    const db = new Level<string, Uint8Array>(dir, { keyEncoding: 'utf8', valueEncoding: 'view' });
    try {
      await db.open();
    } catch (err) {
      throw new Error(openFailure(dir, err), { cause: err });
    }

    return new LevelStateStore(db);
  }

  async loadPartition(partition: number): Promise<StoredPartition> {
    const prefix = partitionPrefix(partition);
    const dictSegments: Uint8Array[] = [];
    const seals: SealRecord[] = [];
    const hourIndexes: number[] = [];
    let watermarkMs = Number.NEGATIVE_INFINITY;
    let senderMarks: [string, number][] = [];
    let changes: PeriodChange[] = [];

    for await (const value of this.db.values({ gte: `${prefix}d/`, lt: `${prefix}d0` })) {
      dictSegments.push(value);
    }
    for await (const key of this.db.keys({ gte: `${prefix}h/`, lt: `${prefix}h0` })) {
      hourIndexes.push(hourIndexOfKey(key));
    }
    for await (const [key, value] of this.db.iterator({ gte: `${prefix}s/`, lt: `${prefix}s0` })) {
      seals.push({
        key: key.slice(prefix.length + 2),
        count: new DataView(value.buffer, value.byteOffset).getUint32(0, true),
      });
    }
    const meta = await this.db.get(metaKey(partition));
    if (meta !== undefined) {
      const parsed = JSON.parse(decoder.decode(meta)) as {
        watermarkMs: number | null;
        senders?: [string, number][];
      };
      if (parsed.watermarkMs !== null) watermarkMs = parsed.watermarkMs;
      senderMarks = parsed.senders ?? [];
    }
    const storedChanges = await this.db.get(changesKey(partition));
    if (storedChanges !== undefined)
      changes = JSON.parse(decoder.decode(storedChanges)) as PeriodChange[];

    return { watermarkMs, senderMarks, dictSegments, hourIndexes, seals, changes };
  }

  async loadHours(
    partition: number,
    hourIndexes: readonly number[],
  ): Promise<(Uint8Array | undefined)[]> {
    return this.db.getMany(hourIndexes.map((h) => hourKey(partition, h)));
  }

  /** Writes all ops in one atomic batch. */
  async write(ops: readonly StorageOp[]): Promise<void> {
    if (ops.length === 0) return;
    await this.db.batch(
      ops.map((op) =>
        op.type === 'put'
          ? { type: 'put' as const, key: op.key, value: op.value }
          : { type: 'del' as const, key: op.key },
      ),
    );
  }

  /** Whether anything is stored under the partition's prefix. */
  async holdsState(partition: number): Promise<boolean> {
    const range = { gte: partitionPrefix(partition), lt: partitionRangeEnd(partition), limit: 1 };
    const [first] = await this.db.keys(range).all();

    return first !== undefined;
  }

  /**
   * Every key of the partition's range in key order, in chunks, with keys relative to
   * the partition's prefix. Reads one snapshot of the store: writes made meanwhile are
   * not seen.
   */
  async *readPartition(partition: number, limits: ChunkLimits): AsyncGenerator<PartitionEntry[]> {
    const prefix = partitionPrefix(partition);
    const range = { gte: prefix, lt: partitionRangeEnd(partition) };
    let chunk: PartitionEntry[] = [];
    let bytes = 0;

    for await (const [key, value] of this.db.iterator(range)) {
      chunk.push({ key: key.slice(prefix.length), value });
      bytes += value.byteLength;
      if (chunk.length >= limits.maxEntries || bytes >= limits.maxBytes) {
        yield chunk;
        chunk = [];
        bytes = 0;
      }
    }

    if (chunk.length > 0) yield chunk;
  }

  /** Writes entries read by {@link readPartition} back under the partition's prefix. */
  async writePartitionEntries(
    partition: number,
    entries: readonly PartitionEntry[],
  ): Promise<void> {
    const prefix = partitionPrefix(partition);
    await this.write(
      entries.map((e) => ({ type: 'put' as const, key: `${prefix}${e.key}`, value: e.value })),
    );
  }

  /** Deletes every key of the partition's range. */
  async clearPartition(partition: number): Promise<void> {
    await this.db.clear({ gte: partitionPrefix(partition), lt: partitionRangeEnd(partition) });
  }

  async getJson<T>(key: string): Promise<T | undefined> {
    const value = await this.db.get(key);

    return value === undefined ? undefined : (JSON.parse(decoder.decode(value)) as T);
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}

/** A put of a JSON value, for node-level records written in a state batch. */
export function jsonPut(key: string, value: unknown): StorageOp {
  return { type: 'put', key, value: new TextEncoder().encode(JSON.stringify(value)) };
}

/** Why the state in `dir` did not open, with LevelDB's own reason. */
function openFailure(dir: string, err: unknown): string {
  const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
  if (cause?.code === 'LEVEL_LOCKED') {
    return `[SL-STORE-002] the shard state in '${dir}' is in use by another process (a second shard on the same --data-dir?)`;
  }
  const reason = typeof cause?.message === 'string' ? cause.message : String(err);

  return `[SL-STORE-003] cannot open the shard state in '${dir}': ${reason}`;
}
