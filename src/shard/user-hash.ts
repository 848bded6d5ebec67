/**
 * The partitioning hash: 64-bit FNV-1a over the UTF-8 bytes of a user id.
 *
 * It is stable across processes, versions and platforms, which the ring
 * relies on: a user id always lands in partition `hash mod P`. The 64-bit
 * value is kept as two unsigned 32-bit halves so that hashing stays in
 * small-integer arithmetic (no BigInt on the hot path).
 */

const OFFSET_HI = 0xcbf29ce4;
const OFFSET_LO = 0x84222325;
const TWO_32 = 4_294_967_296;

/** The 64-bit hash of a user id as unsigned 32-bit halves. */
export interface Hash64 {
  hi: number;
  lo: number;
}

// FNV prime 0x100000001b3 = 2^40 + 0x1b3, so h * prime = h * 0x1b3 + (h << 40).
// The low half times 0x1b3 is taken in 16-bit pieces to stay in exact integer math.
function mixByte(h: Hash64, byte: number): void {
  const lo = (h.lo ^ byte) >>> 0;
  const low16 = (lo & 0xffff) * 0x1b3;
  const high16 = (lo >>> 16) * 0x1b3;
  const low = low16 + (high16 & 0xffff) * 0x10000;
  const carry = (high16 >>> 16) + (low >= TWO_32 ? 1 : 0);

  h.hi = (Math.imul(h.hi, 0x1b3) + carry + (lo << 8)) >>> 0;
  h.lo = low >>> 0;
}

/** Hashes the UTF-8 encoding of `s` into `out` (reused to avoid allocation). */
export function hashUserId(s: string, out: Hash64): Hash64 {
  out.hi = OFFSET_HI;
  out.lo = OFFSET_LO;

  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      mixByte(out, c);
      continue;
    }
    if (c < 0x800) {
      mixByte(out, 0xc0 | (c >> 6));
      mixByte(out, 0x80 | (c & 0x3f));
      continue;
    }
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++;
        c = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
        mixByte(out, 0xf0 | (c >> 18));
        mixByte(out, 0x80 | ((c >> 12) & 0x3f));
        mixByte(out, 0x80 | ((c >> 6) & 0x3f));
        mixByte(out, 0x80 | (c & 0x3f));
        continue;
      }
    }
    // A lone surrogate encodes as U+FFFD, as TextEncoder does.
    if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
    mixByte(out, 0xe0 | (c >> 12));
    mixByte(out, 0x80 | ((c >> 6) & 0x3f));
    mixByte(out, 0x80 | (c & 0x3f));
  }

  return out;
}

/** Hashes raw UTF-8 bytes; equal to {@link hashUserId} of the decoded string. */
export function hashUserIdBytes(
  bytes: Uint8Array,
  start: number,
  end: number,
  out: Hash64,
): Hash64 {
  out.hi = OFFSET_HI;
  out.lo = OFFSET_LO;
  for (let i = start; i < end; i++) mixByte(out, bytes[i] as number);

  return out;
}

/** The partition of a hash: the 64-bit value modulo `partitions` (at most 2^21). */
export function partitionOf(h: Hash64, partitions: number): number {
  return ((h.hi % partitions) * TWO_32 + h.lo) % partitions;
}

/**
 * A 32-bit hash for the dictionary's table, mixed from both halves so that it
 * does not repeat the bits that chose the partition.
 */
export function slotHashOf(h: Hash64): number {
  let x = (h.lo ^ Math.imul(h.hi, 0x9e3779b1)) >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;

  return x >>> 0;
}

/** The hash as 16 hex digits, for logs and tests. */
export function hashHex(h: Hash64): string {
  return h.hi.toString(16).padStart(8, '0') + h.lo.toString(16).padStart(8, '0');
}

/** Where a batch's user id does not belong, as {@link firstMisplacedUser} finds it. */
export interface MisplacedUser {
  readonly index: number;
  /** The partition the id hashes to. */
  readonly partition: number;
  /** Whether the slot hash sent with it is not the id's. */
  readonly wrongSlotHash: boolean;
}

/**
 * The first user id of a batch for `partition` that hashes to another partition or was
 * sent with another slot hash, or undefined when all belong. A shard checks what it is
 * sent: a user counted in two partitions, or under two dictionary entries, would be
 * counted twice in the sum.
 */
export function firstMisplacedUser(
  userIds: readonly string[],
  slotHashes: Uint32Array,
  partition: number,
  partitions: number,
): MisplacedUser | undefined {
  const h: Hash64 = { hi: 0, lo: 0 };
  for (let i = 0; i < userIds.length; i++) {
    hashUserId(userIds[i] as string, h);
    const owner = partitionOf(h, partitions);
    const wrongSlotHash = slotHashOf(h) !== slotHashes[i];
    if (owner !== partition || wrongSlotHash) return { index: i, partition: owner, wrongSlotHash };
  }

  return undefined;
}
