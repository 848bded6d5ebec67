import { hashUserIdBytes, slotHashOf, type Hash64 } from './user-hash.js';

const EMPTY = -1;
const encoder = new TextEncoder();

/**
 * A partition's dictionary: each user id it has seen gets a dense 32-bit id,
 * assigned once, in order of first appearance.
 *
 * Layout, chosen so that a lookup touches two cache lines in the common case:
 * - a byte arena of records `[dense id: u32 LE][byte length: varint][UTF-8 bytes]`,
 *   appended in id order;
 * - an open-addressing table of `[hash, record offset]` pairs (linear probing,
 *   load at most 1/2), so that a probe compares the hash without leaving the
 *   table and a hit reads one arena record.
 *
 * A known user costs about 25-40 bytes plus its id's length, against about 200
 * for a JavaScript Map keyed by strings. Equality is always checked on the
 * bytes: two ids that share a hash stay two users.
 */
export class UserDictionary {
  private arena = new Uint8Array(1 << 16);
  private arenaUsed = 0;
  /** starts[id] is the offset of the id's record (cold paths only). */
  private starts = new Uint32Array(1 << 10);
  private table = new Int32Array(2 << 11).fill(EMPTY);
  private mask = (1 << 11) - 1;
  private count = 0;
  private scratch = new Uint8Array(256);

  /** Number of user ids in the dictionary. */
  get size(): number {
    return this.count;
  }

  /** Approximate bytes held by the dictionary's arrays. */
  get residentBytes(): number {
    return this.arena.byteLength + this.starts.byteLength + this.table.byteLength;
  }

  /**
   * The dense id of `userId`, assigning the next one if it is new.
   * `slotHash` must be {@link slotHashOf} of the id's hash.
   */
  idOf(userId: string, slotHash: number): number {
    const table = this.table;
    const mask = this.mask;
    const hash = slotHash | 0;
    let slot = hash & mask;

    for (;;) {
      const offset = table[2 * slot + 1] as number;
      if (offset === EMPTY) break;
      if (table[2 * slot] === hash && this.recordEquals(offset, userId)) return this.idAt(offset);
      slot = (slot + 1) & mask;
    }

    const offset = this.append(userId);
    table[2 * slot] = hash;
    table[2 * slot + 1] = offset;
    if (this.count * 2 > mask) this.grow();

    return this.count - 1;
  }

  /** The id of `userId` if known, else -1. */
  find(userId: string, slotHash: number): number {
    const hash = slotHash | 0;
    let slot = hash & this.mask;

    for (;;) {
      const offset = this.table[2 * slot + 1] as number;
      if (offset === EMPTY) return EMPTY;
      if (this.table[2 * slot] === hash && this.recordEquals(offset, userId))
        return this.idAt(offset);
      slot = (slot + 1) & this.mask;
    }
  }

  /** The user id text of a dense id. */
  userIdOf(id: number): string {
    const [start, end] = this.bytesOf(this.starts[id] as number);

    return Buffer.from(this.arena.buffer, this.arena.byteOffset + start, end - start).toString(
      'utf8',
    );
  }

  /**
   * The ids from `fromId` on, as one segment for durable storage:
   * [count u32][byte length of each id, u32 each][the ids' bytes].
   */
  encodeSegment(fromId: number): Buffer {
    const n = this.count - fromId;
    const spans: [number, number][] = [];
    let bytes = 0;
    for (let id = fromId; id < this.count; id++) {
      const span = this.bytesOf(this.starts[id] as number);
      spans.push(span);
      bytes += span[1] - span[0];
    }

    const out = Buffer.allocUnsafe(4 + 4 * n + bytes);
    out.writeUInt32LE(n, 0);
    let at = 4 + 4 * n;
    for (const [i, [start, end]] of spans.entries()) {
      out.writeUInt32LE(end - start, 4 + 4 * i);
      out.set(this.arena.subarray(start, end), at);
      at += end - start;
    }

    return out;
  }

  /** Appends a segment written by {@link encodeSegment}; its ids follow on from the current size. */
  loadSegment(segment: Uint8Array): void {
    const view = new DataView(segment.buffer, segment.byteOffset, segment.byteLength);
    const n = view.getUint32(0, true);
    const h: Hash64 = { hi: 0, lo: 0 };
    let at = 4 + 4 * n;

    for (let i = 0; i < n; i++) {
      const len = view.getUint32(4 + 4 * i, true);
      hashUserIdBytes(segment, at, at + len, h);
      const offset = this.appendBytes(segment.subarray(at, at + len));
      this.insert(slotHashOf(h) | 0, offset);
      at += len;
    }
  }

  // --- records ------------------------------------------------------------

  private idAt(offset: number): number {
    const a = this.arena;

    return (
      ((a[offset] as number) |
        ((a[offset + 1] as number) << 8) |
        ((a[offset + 2] as number) << 16) |
        ((a[offset + 3] as number) << 24)) >>>
      0
    );
  }

  /** [start, end) of a record's id bytes. */
  private bytesOf(offset: number): [number, number] {
    let at = offset + 4;
    let len = 0;
    for (let shift = 0; ; shift += 7) {
      const b = this.arena[at++] as number;
      len += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) break;
    }

    return [at, at + len];
  }

  private recordEquals(offset: number, userId: string): boolean {
    const arena = this.arena;
    let at = offset + 4;
    let len = arena[at++] as number;
    if (len >= 0x80) {
      const [start, end] = this.bytesOf(offset);
      at = start;
      len = end - start;
    }

    if (len < userId.length) return false;
    let i = 0;
    for (; i < userId.length; i++) {
      const c = userId.charCodeAt(i);
      if (c >= 0x80) break;
      if (arena[at + i] !== c) return false;
    }
    if (i === userId.length) return len === userId.length;

    const bytes = this.encode(userId);
    if (bytes.length !== len) return false;
    for (let j = i; j < len; j++) {
      if (arena[at + j] !== bytes[j]) return false;
    }

    return true;
  }

  private encode(userId: string): Uint8Array {
    if (this.scratch.length < userId.length * 3) this.scratch = new Uint8Array(userId.length * 3);
    const { written } = encoder.encodeInto(userId, this.scratch);

    return this.scratch.subarray(0, written);
  }

  /** Appends a record for `userId`; returns its offset. */
  private append(userId: string): number {
    const n = userId.length;
    if (n >= 0x80) return this.appendBytes(this.encode(userId));

    this.reserveBytes(5 + n);
    const arena = this.arena;
    const offset = this.arenaUsed;
    let at = offset + 5;
    for (let i = 0; i < n; i++) {
      const c = userId.charCodeAt(i);
      if (c >= 0x80) return this.appendBytes(this.encode(userId));
      arena[at++] = c;
    }
    this.writeHeader(offset, n);
    this.arenaUsed = at;

    return this.commit(offset);
  }

  private appendBytes(bytes: Uint8Array): number {
    this.reserveBytes(9 + bytes.length);
    const offset = this.arenaUsed;
    const start = this.writeHeader(offset, bytes.length);
    this.arena.set(bytes, start);
    this.arenaUsed = start + bytes.length;

    return this.commit(offset);
  }

  /** Writes the id and the varint length; returns where the bytes start. */
  private writeHeader(offset: number, len: number): number {
    const arena = this.arena;
    const id = this.count;
    arena[offset] = id & 0xff;
    arena[offset + 1] = (id >>> 8) & 0xff;
    arena[offset + 2] = (id >>> 16) & 0xff;
    arena[offset + 3] = (id >>> 24) & 0xff;

    let at = offset + 4;
    let rest = len;
    while (rest >= 0x80) {
      arena[at++] = (rest & 0x7f) | 0x80;
      rest = Math.floor(rest / 128);
    }
    arena[at++] = rest;

    return at;
  }

  private commit(offset: number): number {
    const id = this.count;
    if (id === this.starts.length) {
      const next = new Uint32Array(this.starts.length * 2);
      next.set(this.starts);
      this.starts = next;
    }
    this.starts[id] = offset;
    this.count = id + 1;

    return offset;
  }

  private insert(hash: number, offset: number): void {
    let slot = hash & this.mask;
    while (this.table[2 * slot + 1] !== EMPTY) slot = (slot + 1) & this.mask;
    this.table[2 * slot] = hash;
    this.table[2 * slot + 1] = offset;
    if (this.count * 2 > this.mask) this.grow();
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
    const old = this.table;
    const slots = (this.mask + 1) * 2;
    const table = new Int32Array(2 * slots).fill(EMPTY);
    const mask = slots - 1;

    for (let s = 0; s < old.length; s += 2) {
      const offset = old[s + 1] as number;
      if (offset === EMPTY) continue;
      const hash = old[s] as number;
      let slot = hash & mask;
      while (table[2 * slot + 1] !== EMPTY) slot = (slot + 1) & mask;
      table[2 * slot] = hash;
      table[2 * slot + 1] = offset;
    }
    this.table = table;
    this.mask = mask;
  }
}
