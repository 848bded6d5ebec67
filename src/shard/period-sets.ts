import roaring from 'roaring';

import {
  DAY_MS,
  HOUR_MS,
  WEEK_MS,
  dayStart,
  weekStart,
  type PeriodType,
} from '../periods/index.js';

const { RoaringBitmap32 } = roaring;
type Bitmap = InstanceType<typeof RoaringBitmap32>;

const EMPTY = new RoaringBitmap32();

/** One UTC hour's set of dense user ids in one partition. */
interface HourEntry {
  /** Null while evicted: the set is in storage only. */
  bitmap: Bitmap | null;
  /** Changed since it was last written to storage. */
  dirty: boolean;
  lastUsed: number;
}

/**
 * The exact user sets of one partition: one compressed bitmap per UTC hour,
 * the source of truth, and day and week sets derived from them as unions.
 *
 * A derived set, when present, always equals the union of its hours: every
 * add to an hour is also applied to the cached day and week that hold it.
 * Hours and derived sets can be evicted once they are stored, and are loaded
 * again through {@link PeriodSets.missingHours} before use.
 */
export class PeriodSets {
  private readonly hours = new Map<number, HourEntry>();
  private readonly unions = new Map<string, { bitmap: Bitmap; lastUsed: number }>();
  private tick = 0;
  private evictedHours = 0;

  /** Hours read back from storage so far. */
  hourLoads = 0;

  /** Number of hours in storage only. */
  get evictedHourCount(): number {
    return this.evictedHours;
  }

  /** Whether any hour is in storage only. */
  get hasEvicted(): boolean {
    return this.evictedHours > 0;
  }

  /** Hour indexes (hour start / 1 h) that have data, resident or not. */
  hourIndexes(): IterableIterator<number> {
    return this.hours.keys();
  }

  /** Registers a stored hour without loading it. */
  registerStoredHour(hourIndex: number): void {
    if (this.hours.has(hourIndex)) return;
    this.hours.set(hourIndex, { bitmap: null, dirty: false, lastUsed: 0 });
    this.evictedHours++;
  }

  /** Installs a stored hour's set that was loaded from storage. */
  installLoadedHour(hourIndex: number, serialized: Uint8Array): void {
    const entry = this.hours.get(hourIndex);
    if (entry === undefined || entry.bitmap !== null) return;
    entry.bitmap = RoaringBitmap32.deserialize(serialized, 'portable');
    entry.lastUsed = ++this.tick;
    this.evictedHours--;
    this.hourLoads++;
  }

  hasHour(hourIndex: number): boolean {
    return this.hours.has(hourIndex);
  }

  /** Adds many ids to an hour that is resident or new, and to its cached day and week. */
  addMany(hourIndex: number, ids: Uint32Array): void {
    const bitmap = this.residentHour(hourIndex);
    bitmap.addMany(ids);

    const startMs = hourIndex * HOUR_MS;
    this.unions.get(unionKey('day', startMs))?.bitmap.addMany(ids);
    this.unions.get(unionKey('week', startMs))?.bitmap.addMany(ids);
  }

  /**
   * Adds one id to an hour; returns whether the id was new to the hour, and
   * keeps the cached day and week in step.
   */
  addOne(hourIndex: number, id: number): boolean {
    const bitmap = this.residentHour(hourIndex);
    if (!bitmap.tryAdd(id)) return false;

    const startMs = hourIndex * HOUR_MS;
    this.unions.get(unionKey('day', startMs))?.bitmap.add(id);
    this.unions.get(unionKey('week', startMs))?.bitmap.add(id);

    return true;
  }

  /**
   * Whether `id` is in the day or week that starts at `startMs`. Every hour of
   * the period must be resident (see {@link missingHours}).
   */
  contains(type: 'day' | 'week', startMs: number, id: number): boolean {
    return this.union(type, startMs).has(id);
  }

  /** The exact number of users in a period. Its hours must be resident. */
  count(type: PeriodType, startMs: number): number {
    if (type === 'hour') {
      const entry = this.hours.get(startMs / HOUR_MS);
      if (entry === undefined) return 0;

      return this.touch(entry).size;
    }

    return this.union(type, startMs).size;
  }

  /**
   * The evicted hours that must be loaded before the period of `type` that
   * starts at `startMs` can be counted or tested. Appends to `out`.
   */
  missingHours(type: PeriodType, startMs: number, out: Set<number>): void {
    if (type !== 'hour' && this.unions.has(unionKey(type, startMs))) return;

    const first = startMs / HOUR_MS;
    const n = type === 'hour' ? 1 : type === 'day' ? DAY_MS / HOUR_MS : WEEK_MS / HOUR_MS;
    for (let h = first; h < first + n; h++) {
      const entry = this.hours.get(h);
      if (entry !== undefined && entry.bitmap === null) out.add(h);
    }
  }

  /** The dirty hours, serialized for storage; they count as clean once written. */
  *dirtyHours(): IterableIterator<[number, Uint8Array]> {
    for (const [hourIndex, entry] of this.hours) {
      if (!entry.dirty || entry.bitmap === null) continue;
      entry.bitmap.runOptimize();
      yield [hourIndex, entry.bitmap.serialize('portable')];
    }
  }

  markClean(): void {
    for (const entry of this.hours.values()) entry.dirty = false;
  }

  /**
   * Drops derived sets and clean hours that the caller says may go (closed
   * periods), least recently used first, until `bytesToFree` is reached.
   * Returns the bytes freed (estimated from the sets' serialized sizes).
   */
  evict(bytesToFree: number, mayEvictHour: (hourIndex: number) => boolean): number {
    const candidates: { lastUsed: number; drop: () => number }[] = [];

    for (const [key, union] of this.unions) {
      candidates.push({
        lastUsed: union.lastUsed,
        drop: () => {
          this.unions.delete(key);
          return union.bitmap.getSerializationSizeInBytes('croaring');
        },
      });
    }
    for (const [hourIndex, entry] of this.hours) {
      if (entry.bitmap === null || entry.dirty || !mayEvictHour(hourIndex)) continue;
      const bitmap = entry.bitmap;
      candidates.push({
        lastUsed: entry.lastUsed,
        drop: () => {
          entry.bitmap = null;
          this.evictedHours++;
          return bitmap.getSerializationSizeInBytes('croaring');
        },
      });
    }
    candidates.sort((a, b) => a.lastUsed - b.lastUsed);

    let freed = 0;
    for (const candidate of candidates) {
      if (freed >= bytesToFree) break;
      freed += candidate.drop();
    }

    return freed;
  }

  /** Packs a closed hour's set tightly: it is rarely written again. */
  compactHour(hourIndex: number): void {
    const bitmap = this.hours.get(hourIndex)?.bitmap;
    if (bitmap === null || bitmap === undefined) return;
    bitmap.runOptimize();
    bitmap.shrinkToFit();
  }

  /** Drops the derived set of a period, e.g. once it is closed and published. */
  forgetUnion(type: 'day' | 'week', startMs: number): void {
    this.unions.delete(unionKey(type, startMs));
  }

  private residentHour(hourIndex: number): Bitmap {
    let entry = this.hours.get(hourIndex);
    if (entry === undefined) {
      entry = { bitmap: new RoaringBitmap32(), dirty: false, lastUsed: 0 };
      this.hours.set(hourIndex, entry);
    }
    if (entry.bitmap === null) {
      throw new Error(`[SL-SHARD-001] hour ${hourIndex} is evicted; load it before writing`);
    }
    entry.dirty = true;

    return this.touch(entry);
  }

  private touch(entry: HourEntry): Bitmap {
    entry.lastUsed = ++this.tick;
    if (entry.bitmap === null) {
      throw new Error('[SL-SHARD-001] an evicted hour was read before it was loaded');
    }

    return entry.bitmap;
  }

  private union(type: 'day' | 'week', startMs: number): Bitmap {
    const key = unionKey(type, startMs);
    const cached = this.unions.get(key);
    if (cached !== undefined) {
      cached.lastUsed = ++this.tick;
      return cached.bitmap;
    }

    const parts: Bitmap[] = [];
    const first = startMs / HOUR_MS;
    const n = type === 'day' ? DAY_MS / HOUR_MS : WEEK_MS / HOUR_MS;
    for (let h = first; h < first + n; h++) {
      const entry = this.hours.get(h);
      if (entry !== undefined) parts.push(this.touch(entry));
    }
    // A period with no data here is answered without caching a set for it.
    if (parts.length === 0) return EMPTY;
    const bitmap = RoaringBitmap32.orMany(parts);
    this.unions.set(key, { bitmap, lastUsed: ++this.tick });

    return bitmap;
  }
}

function unionKey(type: 'day' | 'week', anyMsInside: number): string {
  const startMs = type === 'day' ? dayStart(anyMsInside) : weekStart(anyMsInside);

  return `${type}:${startMs}`;
}
