import { hashUserIdBytes, slotHashOf, type Hash64 } from './user-hash.js';

const EMPTY = -1;
const encoder = new TextEncoder();

/**
 * A partition's dictionary: each user id it has seen gets a dense 32-bit id,
 * assigned once, in order of first appearance.
 *
 * The ids' UTF-8 bytes live in one growing byte arena and the lookup table is
 * open addressing over typed arrays, so a known user costs its id's bytes plus
 * about 20 bytes, against about 200 for a JavaScript Map keyed by strings.
 * Equality is always checked on the bytes: two ids that share a hash stay two
 * users.
 */
export class UserDictionary {
  private arena = new Uint8Array(1 << 16);
  private arenaUsed = 0;
  /** ends[id] is where the id's bytes end; they start at ends[id - 1] (or 0). */
  private ends = new Uint32Array(1 << 10);
  private hashes = new Uint32Array(1 << 10);
  private table = new Int32Array(1 << 11).fill(EMPTY);
  private mask = (1 << 11) - 1;
  private count = 0;
  private scratch = new Uint8Array(256);

  /** Number of user ids in the dictionary. */
  get size(): number {
    return this.count;
  }

  /** Approximate bytes held by the dictionary's arrays. */
  get residentBytes(): number {
    return this.arena.byteLength + this.ends.byteLength * 2 + this.table.byteLength;
  }

  /**
   * The dense id of `userId`, assigning the next one if it is new.
   * `slotHash` must be {@link slotHashOf} of the id's hash.
   */
  idOf(userId: string, slotHash: number): number {
    const table = this.table;
    const mask = this.mask;
    let slot = slotHash & mask;

    for (;;) {
      const id = table[slot] as number;
      if (id === EMPTY) break;
      if (this.hashes[id] === slotHash && this.equals(id, userId)) return id;
      slot = (slot + 1) & mask;
    }

    const id = this.append(userId, slotHash);
    table[slot] = id;
    if (this.count * 2 > mask) this.grow();

    return id;
  }

  /** The id of `userId` if known, else -1. */
  find(userId: string, slotHash: number): number {
    let slot = slotHash & this.mask;

    for (;;) {
      const id = this.table[slot] as number;
      if (id === EMPTY) return EMPTY;
      if (this.hashes[id] === slotHash && this.equals(id, userId)) return id;
      slot = (slot + 1) & this.mask;
    }
  }

  /** The user id text of a dense id. */
  userIdOf(id: number): string {
    const start = id === 0 ? 0 : (this.ends[id - 1] as number);

    return Buffer.from(this.arena.buffer, this.arena.byteOffset + start, (this.ends[id] as number) - start).toString('utf8');
  }

  /**
   * The ids from `fromId` on, as one segment for durable storage:
   * [count u32][byte length of each id, u32 each][the ids' bytes].
   */
  encodeSegment(fromId: number): Buffer {
    const n = this.count - fromId;
    const byteStart = fromId === 0 ? 0 : (this.ends[fromId - 1] as number);
    const byteEnd = this.arenaUsed;
    const out = Buffer.allocUnsafe(4 + 4 * n + (byteEnd - byteStart));

    out.writeUInt32LE(n, 0);
    let prev = byteStart;
    for (let i = 0; i < n; i++) {
      const end = this.ends[fromId + i] as number;
      out.writeUInt32LE(end - prev, 4 + 4 * i);
      prev = end;
    }
    out.set(this.arena.subarray(byteStart, byteEnd), 4 + 4 * n);

    return out;
  }

  /** Appends a segment written by {@link encodeSegment}; ids must follow on from the current size. */
  loadSegment(segment: Uint8Array): void {
    const view = new DataView(segment.buffer, segment.byteOffset, segment.byteLength);
    const n = view.getUint32(0, true);
    const h: Hash64 = { hi: 0, lo: 0 };
    let at = 4 + 4 * n;

    for (let i = 0; i < n; i++) {
      const len = view.getUint32(4 + 4 * i, true);
      hashUserIdBytes(segment, at, at + len, h);
      const slotHash = slotHashOf(h);
      this.insertSlot(this.appendBytes(segment.subarray(at, at + len), slotHash), slotHash);
      at += len;
    }
  }

  private equals(id: number, userId: string): boolean {
    const start = id === 0 ? 0 : (this.ends[id - 1] as number);
    const len = (this.ends[id] as number) - start;
    const arena = this.arena;

    if (len < userId.length) return false;
    let i = 0;
    for (; i < userId.length; i++) {
      const c = userId.charCodeAt(i);
      if (c >= 0x80) break;
      if (arena[start + i] !== c) return false;
    }
    if (i === userId.length) return len === userId.length;

    const bytes = this.encode(userId);
    if (bytes.length !== len) return false;
    for (let j = i; j < len; j++) {
      if (arena[start + j] !== bytes[j]) return false;
    }

    return true;
  }

  private encode(userId: string): Uint8Array {
    if (this.scratch.length < userId.length * 3) this.scratch = new Uint8Array(userId.length * 3);
    const { written } = encoder.encodeInto(userId, this.scratch);

    return this.scratch.subarray(0, written);
  }

  private append(userId: string, slotHash: number): number {
    const need = userId.length;
    this.reserveBytes(need);

    let at = this.arenaUsed;
    for (let i = 0; i < need; i++) {
      const c = userId.charCodeAt(i);
      if (c >= 0x80) return this.appendBytes(this.encode(userId), slotHash);
      this.arena[at++] = c;
    }

    return this.commit(at, slotHash);
  }

  private appendBytes(bytes: Uint8Array, slotHash: number): number {
    this.reserveBytes(bytes.length);
    this.arena.set(bytes, this.arenaUsed);

    return this.commit(this.arenaUsed + bytes.length, slotHash);
  }

  private insertSlot(id: number, slotHash: number): void {
    let slot = slotHash & this.mask;
    while (this.table[slot] !== EMPTY) slot = (slot + 1) & this.mask;
    this.table[slot] = id;
    if (this.count * 2 > this.mask) this.grow();
  }

  private commit(end: number, slotHash: number): number {
    const id = this.count;
    if (id === this.ends.length) {
      this.ends = growU32(this.ends);
      this.hashes = growU32(this.hashes);
    }
    this.ends[id] = end;
    this.hashes[id] = slotHash;
    this.arenaUsed = end;
    this.count = id + 1;

    return id;
  }

  private reserveBytes(n: number): void {
    if (this.arenaUsed + n <= this.arena.length) return;
    let size = this.arena.length * 2;
    while (size < this.arenaUsed + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.arena.subarray(0, this.arenaUsed));
    this.arena = next;
  }

  private grow(): void {
    const size = this.table.length * 2;
    const table = new Int32Array(size).fill(EMPTY);
    const mask = size - 1;

    for (let id = 0; id < this.count; id++) {
      let slot = (this.hashes[id] as number) & mask;
      while (table[slot] !== EMPTY) slot = (slot + 1) & mask;
      table[slot] = id;
    }
    this.table = table;
    this.mask = mask;
  }
}

function growU32(a: Uint32Array<ArrayBuffer>): Uint32Array<ArrayBuffer> {
  const next = new Uint32Array(a.length * 2);
  next.set(a);

  return next;
}
