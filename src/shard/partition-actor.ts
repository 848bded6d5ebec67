import {
  DAY_MS,
  HOUR_MS,
  WEEK_MS,
  dayStart,
  parsePeriodKey,
  periodKey,
  weekStart,
  type PeriodType,
} from '../periods/index.js';
import { PeriodSets } from './period-sets.js';
import { changesKey, dictKey, hourKey, metaKey, sealKey } from './partition-keys.js';
import type {
  PartitionBatch,
  PartitionReport,
  PartitionStorage,
  PeriodChange,
  SealRecord,
  StorageOp,
} from './types.js';
import { UserDictionary } from './user-dictionary.js';

const PENDING_IDS = 4096;
const encoder = new TextEncoder();

/** Options of one partition actor. */
export interface PartitionActorOptions {
  readonly partition: number;
  /** How long after a period ends it stays open before it is sealed. */
  readonly allowedLatenessMs: number;
  /**
   * A sender not heard from for this long stops holding the watermark back (see
   * {@link PartitionActor}). @default never: every sender counts for good
   */
  readonly senderSilenceMs?: number;
}

/** What a partition knows of one sender's watermark. */
interface SenderMark {
  /** The highest mark it sent (-Infinity before its first). */
  markMs: number;
  /** When it was last heard from, on this process's clock (the open time after a restart). */
  heardAtMs: number;
  /** Whether the last {@link PartitionActor.reconsiderSenders} found it silent. */
  silent: boolean;
}

/** What {@link PartitionActor.reconsiderSenders} found. */
export interface SenderReview {
  /** The watermark moved or a sender was forgotten: there is state to write. */
  readonly changed: boolean;
  /** Senders that stopped counting since the last review. */
  readonly silenced: readonly string[];
  /** Senders that count again since the last review. */
  readonly resumed: readonly string[];
}

/** A sender silent this long is forgotten (it counts again when it sends). */
export const FORGET_SENDER_AFTER_MS = 60 * 60 * 1000;

interface Pending {
  hourIndex: number;
  ids: Uint32Array;
  n: number;
}

/**
 * The actor of one partition: it owns the partition's dictionary and exact
 * user sets, applies the partition's events in arrival order, and seals each
 * period when the in-band watermark passes the period's end plus the allowed
 * lateness. Events for a sealed period are late: they still go into its set,
 * and the period is reported as changed so that the coordinator restates it.
 *
 * Several senders (the routers of a cluster) send marks to one partition, each its own.
 * The partition's watermark is the lowest of the marks of the senders that count, so
 * that no period closes while a router may still send events for it on time; it never
 * moves back. A sender counts from its first mark until it has been silent for
 * `senderSilenceMs` (it finished, went idle or died), and again when it sends; when no
 * sender counts, the watermark goes to the highest mark any sent. The marks are durable;
 * after a restart every sender counts as just heard from.
 *
 * All state changes are in memory until {@link collectWrites} hands them to
 * one atomic storage batch, so a crash never leaves a set and its records out
 * of step.
 */
export class PartitionActor {
  readonly partition: number;
  private readonly latenessMs: number;
  private readonly dict = new UserDictionary();
  private readonly sets = new PeriodSets();
  private watermarkMs = Number.NEGATIVE_INFINITY;
  private readonly senders = new Map<string, SenderMark>();
  private readonly senderSilenceMs: number;

  // Periods with data in this partition that are not sealed yet, by type.
  private readonly openHours = new Set<number>();
  private readonly openDays = new Set<number>();
  private readonly openWeeks = new Set<number>();

  private readonly seals = new Map<string, number>();
  private readonly changes = new Map<string, { lateEvents: number; newUsers: number }>();

  // What changed since the last durable write.
  private persistedDictSize = 0;
  private newSeals: string[] = [];
  private droppedSeals: string[] = [];
  private changesDirty = false;
  private metaDirty = false;

  private pending: Pending[] = [];
  private lastPending: Pending | null = null;
  private lateEventsTotal = 0;

  private constructor(
    options: PartitionActorOptions,
    private readonly storage: PartitionStorage,
  ) {
    this.partition = options.partition;
    this.latenessMs = options.allowedLatenessMs;
    this.senderSilenceMs = options.senderSilenceMs ?? Number.POSITIVE_INFINITY;
  }

  /** Opens the actor of a partition from its durable state. */
  static async open(
    options: PartitionActorOptions,
    storage: PartitionStorage,
  ): Promise<PartitionActor> {
    const actor = new PartitionActor(options, storage);
    const stored = await storage.loadPartition(options.partition);

    for (const segment of stored.dictSegments) actor.dict.loadSegment(segment);
    actor.persistedDictSize = actor.dict.size;
    actor.watermarkMs = stored.watermarkMs;
    const openedAtMs = Date.now();
    for (const [sender, markMs] of stored.senderMarks) {
      actor.senders.set(sender, { markMs, heardAtMs: openedAtMs, silent: false });
    }
    for (const seal of stored.seals) actor.seals.set(seal.key, seal.count);
    for (const change of stored.changes) {
      actor.changes.set(change.key, { lateEvents: change.lateEvents, newUsers: change.newUsers });
    }
    for (const hourIndex of stored.hourIndexes) {
      actor.sets.registerStoredHour(hourIndex);
      actor.noteOpen(hourIndex * HOUR_MS);
    }

    // Open periods must be resident: their hours are written to on the hot path.
    const needed = new Set<number>();
    for (const weekMs of actor.openWeeks) actor.sets.missingHours('week', weekMs, needed);
    await actor.load(needed);

    return actor;
  }

  get watermark(): number {
    return this.watermarkMs;
  }

  /** Number of users this partition has seen. */
  get knownUsers(): number {
    return this.dict.size;
  }

  get dictionaryBytes(): number {
    return this.dict.residentBytes;
  }

  /** How much of the partition's state is on disk only, and how often it was read back. */
  get spillStats(): { evictedHours: number; hourLoads: number } {
    return { evictedHours: this.sets.evictedHourCount, hourLoads: this.sets.hourLoads };
  }

  /**
   * Applies a batch of `sender` (one sender, '', when there is only one): events in
   * order, each of its watermark marks before the event it precedes.
   */
  async apply(batch: PartitionBatch, sender = '', nowMs = Date.now()): Promise<void> {
    await this.load(this.hoursNeededFor(batch));

    let from = this.senders.get(sender);
    if (from === undefined) {
      from = { markMs: Number.NEGATIVE_INFINITY, heardAtMs: nowMs, silent: false };
      this.senders.set(sender, from);
    }
    from.heardAtMs = nowMs;

    let m = 0;
    for (let i = 0; i < batch.length; i++) {
      while (m < batch.marks.length && (batch.marks[m]?.before as number) <= i) {
        this.takeMark(from, (batch.marks[m] as { watermarkMs: number }).watermarkMs, nowMs);
        m++;
      }
      const id = this.dict.idOf(batch.userIds[i] as string, batch.slotHashes[i] as number);
      this.applyOne(id, batch.eventTimeMs[i] as number);
    }
    for (; m < batch.marks.length; m++) {
      this.takeMark(from, (batch.marks[m] as { watermarkMs: number }).watermarkMs, nowMs);
    }
    this.flushPending();
  }

  /**
   * Lets the senders silent for `senderSilenceMs` stop holding the watermark back, and
   * forgets those silent for {@link FORGET_SENDER_AFTER_MS}.
   */
  reconsiderSenders(nowMs = Date.now()): SenderReview {
    let forgot = false;
    const silenced: string[] = [];
    const resumed: string[] = [];
    for (const [sender, mark] of this.senders) {
      if (nowMs - mark.heardAtMs >= FORGET_SENDER_AFTER_MS) {
        this.senders.delete(sender);
        forgot = true;
        continue;
      }
      if (!Number.isFinite(mark.markMs)) continue;

      const silent = !this.countsNow(mark, nowMs);
      if (silent !== mark.silent) (silent ? silenced : resumed).push(sender);
      mark.silent = silent;
    }
    if (forgot) this.metaDirty = true;

    const before = this.watermarkMs;
    this.advance(this.lowestCountedMark(nowMs));

    return { changed: forgot || this.watermarkMs !== before, silenced, resumed };
  }

  /** Each sender's mark, lowest first, and whether it counts at `nowMs`. */
  senderMarks(nowMs = Date.now()): { sender: string; markMs: number; counts: boolean }[] {
    return [...this.senders]
      .map(([sender, mark]) => ({
        sender,
        markMs: mark.markMs,
        counts: this.countsNow(mark, nowMs),
      }))
      .sort((a, b) => a.markMs - b.markMs || a.sender.localeCompare(b.sender));
  }

  /** The partition's unacknowledged seals and changes, and its open periods. */
  report(): PartitionReport {
    const openPeriods: string[] = [];
    for (const d of this.openDays) openPeriods.push(periodKey({ type: 'day', startMs: d }));
    for (const w of this.openWeeks) openPeriods.push(periodKey({ type: 'week', startMs: w }));

    return {
      partition: this.partition,
      watermarkMs: this.watermarkMs,
      seals: [...this.seals].map(([key, count]) => ({ key, count })),
      changes: [...this.changes].map(([key, c]) => ({ key, ...c })),
      openPeriods,
      allowedLatenessMs: this.latenessMs,
    };
  }

  /** Current exact counts of the given periods (0 where this partition has none). */
  async counts(keys: readonly string[]): Promise<Map<string, number>> {
    const periods = keys.map(parsePeriodKey);
    const needed = new Set<number>();
    for (const p of periods) this.sets.missingHours(p.type, p.startMs, needed);
    await this.load(needed);

    const out = new Map<string, number>();
    for (const p of periods) out.set(periodKey(p), this.sets.count(p.type, p.startMs));

    return out;
  }

  /** The coordinator has published these seals and changes: forget them. */
  acknowledge(sealKeys: readonly string[], changes: readonly PeriodChange[]): void {
    for (const key of sealKeys) {
      if (this.seals.delete(key)) this.droppedSeals.push(key);
    }
    for (const acked of changes) {
      const change = this.changes.get(acked.key);
      if (change === undefined) continue;
      change.lateEvents = Math.max(0, change.lateEvents - acked.lateEvents);
      change.newUsers = Math.max(0, change.newUsers - acked.newUsers);
      if (change.lateEvents === 0 && change.newUsers === 0) this.changes.delete(acked.key);
      this.changesDirty = true;
    }
  }

  /** Appends every change since the last durable write to `ops`. */
  collectWrites(ops: StorageOp[]): void {
    const p = this.partition;

    if (this.dict.size > this.persistedDictSize) {
      ops.push({
        type: 'put',
        key: dictKey(p, this.persistedDictSize),
        value: this.dict.encodeSegment(this.persistedDictSize),
      });
    }
    for (const [hourIndex, bytes] of this.sets.dirtyHours()) {
      ops.push({ type: 'put', key: hourKey(p, hourIndex), value: bytes });
    }
    for (const key of this.newSeals) {
      const count = this.seals.get(key);
      if (count !== undefined) ops.push({ type: 'put', key: sealKey(p, key), value: u32(count) });
    }
    for (const key of this.droppedSeals) ops.push({ type: 'del', key: sealKey(p, key) });
    if (this.changesDirty) {
      const changes = [...this.changes].map(([key, c]) => ({ key, ...c }));
      ops.push({ type: 'put', key: changesKey(p), value: encoder.encode(JSON.stringify(changes)) });
    }
    if (this.metaDirty) {
      const meta = {
        watermarkMs: Number.isFinite(this.watermarkMs) ? this.watermarkMs : null,
        senders: [...this.senders]
          .filter(([, mark]) => Number.isFinite(mark.markMs))
          .map(([sender, mark]) => [sender, mark.markMs]),
      };
      ops.push({ type: 'put', key: metaKey(p), value: encoder.encode(JSON.stringify(meta)) });
    }
  }

  /** The writes from {@link collectWrites} are durable. */
  markPersisted(): void {
    this.persistedDictSize = this.dict.size;
    this.sets.markClean();
    this.newSeals = [];
    this.droppedSeals = [];
    this.changesDirty = false;
    this.metaDirty = false;
  }

  /**
   * Frees memory by dropping stored sets of closed periods, least recently
   * used first. Call only right after {@link markPersisted}.
   */
  evict(bytesToFree: number): number {
    return this.sets.evict(bytesToFree, (hourIndex) =>
      this.isSealed('week', weekStart(hourIndex * HOUR_MS)),
    );
  }

  // --- event path -------------------------------------------------------

  private applyOne(id: number, eventMs: number): void {
    const hourMs = Math.floor(eventMs / HOUR_MS) * HOUR_MS;

    if (hourMs + HOUR_MS + this.latenessMs > this.watermarkMs) {
      this.addOnTime(id, hourMs / HOUR_MS);
      return;
    }
    this.addLate(id, hourMs);
  }

  private addOnTime(id: number, hourIndex: number): void {
    let pending = this.lastPending;
    if (pending === null || pending.hourIndex !== hourIndex) {
      pending = this.pendingFor(hourIndex);
      this.lastPending = pending;
    }
    pending.ids[pending.n++] = id;
    if (pending.n === PENDING_IDS) this.flushOne(pending);
  }

  private pendingFor(hourIndex: number): Pending {
    for (const p of this.pending) {
      if (p.hourIndex === hourIndex) return p;
    }
    if (!this.sets.hasHour(hourIndex)) this.noteOpen(hourIndex * HOUR_MS);
    const created = { hourIndex, ids: new Uint32Array(PENDING_IDS), n: 0 };
    this.pending.push(created);

    return created;
  }

  private flushOne(p: Pending): void {
    if (p.n === 0) return;
    this.sets.addMany(p.hourIndex, p.ids.subarray(0, p.n));
    p.n = 0;
  }

  private flushPending(): void {
    for (const p of this.pending) this.flushOne(p);
    this.pending = [];
    this.lastPending = null;
  }

  /** An event for a sealed hour: apply it alone and note what it changed. */
  private addLate(id: number, hourMs: number): void {
    this.flushPending();
    this.lateEventsTotal++;

    const dayMs = dayStart(hourMs);
    const weekMs = weekStart(hourMs);
    const daySealed = this.isSealed('day', dayMs);
    const weekSealed = this.isSealed('week', weekMs);
    // Before the add, so that the derived sets answer for the time before it.
    const newToDay = daySealed && !this.sets.contains('day', dayMs, id);
    const newToWeek = weekSealed && !this.sets.contains('week', weekMs, id);

    const newToHour = this.sets.addOne(hourMs / HOUR_MS, id);
    // The hour is closed, but its day or week may still be open and now hold data.
    if (!daySealed) this.openDays.add(dayMs);
    if (!weekSealed) this.openWeeks.add(weekMs);

    this.noteChange(periodKey({ type: 'hour', startMs: hourMs }), newToHour);
    if (daySealed) this.noteChange(periodKey({ type: 'day', startMs: dayMs }), newToDay);
    if (weekSealed) this.noteChange(periodKey({ type: 'week', startMs: weekMs }), newToWeek);
  }

  private noteChange(key: string, newUser: boolean): void {
    let change = this.changes.get(key);
    if (change === undefined) {
      change = { lateEvents: 0, newUsers: 0 };
      this.changes.set(key, change);
    }
    change.lateEvents++;
    if (newUser) change.newUsers++;
    this.changesDirty = true;
  }

  private noteOpen(hourMs: number): void {
    const dayMs = dayStart(hourMs);
    const weekMs = weekStart(hourMs);

    if (!this.isSealed('hour', hourMs)) this.openHours.add(hourMs / HOUR_MS);
    if (!this.isSealed('day', dayMs)) this.openDays.add(dayMs);
    if (!this.isSealed('week', weekMs)) this.openWeeks.add(weekMs);
  }

  private isSealed(type: PeriodType, startMs: number): boolean {
    const length = type === 'hour' ? HOUR_MS : type === 'day' ? DAY_MS : WEEK_MS;

    return startMs + length + this.latenessMs <= this.watermarkMs;
  }

  // --- watermark and sealing -------------------------------------------

  private takeMark(from: SenderMark, markMs: number, nowMs: number): void {
    if (!(markMs > from.markMs)) return;

    from.markMs = markMs;
    this.metaDirty = true;
    this.advance(this.lowestCountedMark(nowMs));
  }

  /**
   * The lowest mark of the senders that count. When none counts (every router finished,
   * idle or gone), the highest mark any sent: nobody is left to send for what it passed.
   */
  private lowestCountedMark(nowMs: number): number {
    let lowest = Number.POSITIVE_INFINITY;
    let highest = Number.NEGATIVE_INFINITY;
    for (const mark of this.senders.values()) {
      if (this.countsNow(mark, nowMs) && mark.markMs < lowest) lowest = mark.markMs;
      if (mark.markMs > highest) highest = mark.markMs;
    }

    return Number.isFinite(lowest) ? lowest : highest;
  }

  /** A sender counts once it has sent a mark, until it has been silent too long. */
  private countsNow(mark: SenderMark, nowMs: number): boolean {
    return Number.isFinite(mark.markMs) && nowMs - mark.heardAtMs < this.senderSilenceMs;
  }

  private advance(watermarkMs: number): void {
    if (!(watermarkMs > this.watermarkMs)) return;
    this.flushPending();
    this.watermarkMs = watermarkMs;
    this.metaDirty = true;

    for (const hourIndex of this.openHours) {
      if (this.isSealed('hour', hourIndex * HOUR_MS)) {
        this.seal('hour', hourIndex * HOUR_MS);
        this.sets.compactHour(hourIndex);
        this.openHours.delete(hourIndex);
      }
    }
    for (const dayMs of this.openDays) {
      if (this.isSealed('day', dayMs)) {
        this.seal('day', dayMs);
        this.openDays.delete(dayMs);
      }
    }
    for (const weekMs of this.openWeeks) {
      if (this.isSealed('week', weekMs)) {
        this.seal('week', weekMs);
        this.openWeeks.delete(weekMs);
      }
    }
  }

  private seal(type: PeriodType, startMs: number): void {
    const count = this.sets.count(type, startMs);
    if (count === 0) return;

    const key = periodKey({ type, startMs });
    this.seals.set(key, count);
    this.newSeals.push(key);
  }

  // --- loading ----------------------------------------------------------

  /** Evicted hours that the late events of a batch will touch. */
  private hoursNeededFor(batch: PartitionBatch): Set<number> {
    const needed = new Set<number>();
    if (!this.sets.hasEvicted) return needed;

    let watermarkMs = this.watermarkMs;
    let m = 0;

    for (let i = 0; i < batch.length; i++) {
      while (m < batch.marks.length && (batch.marks[m]?.before as number) <= i) {
        watermarkMs = Math.max(
          watermarkMs,
          (batch.marks[m] as { watermarkMs: number }).watermarkMs,
        );
        m++;
      }
      const hourMs = Math.floor((batch.eventTimeMs[i] as number) / HOUR_MS) * HOUR_MS;
      if (hourMs + HOUR_MS + this.latenessMs > watermarkMs) continue;
      this.sets.missingHours('hour', hourMs, needed);
      this.sets.missingHours('day', dayStart(hourMs), needed);
      this.sets.missingHours('week', weekStart(hourMs), needed);
    }

    return needed;
  }

  private async load(hourIndexes: Set<number>): Promise<void> {
    if (hourIndexes.size === 0) return;

    const list = [...hourIndexes];
    const values = await this.storage.loadHours(this.partition, list);
    for (let i = 0; i < list.length; i++) {
      const value = values[i];
      if (value === undefined) {
        throw new Error(
          `[SL-SHARD-002] partition ${this.partition} hour ${list[i]} is registered but missing from storage`,
        );
      }
      this.sets.installLoadedHour(list[i] as number, value);
    }
  }
}

function u32(n: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n, true);

  return out;
}
