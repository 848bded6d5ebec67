import { describe, expect, it } from 'vitest';

import {
  hashHex,
  hashUserId,
  hashUserIdBytes,
  partitionOf,
  type Hash64,
} from '../../src/shard/user-hash.js';

const h = (): Hash64 => ({ hi: 0, lo: 0 });

describe('user hash (64-bit FNV-1a of UTF-8 bytes)', () => {
  it('matches the published FNV-1a 64 test vectors', () => {
    expect(hashHex(hashUserId('', h()))).toBe('cbf29ce484222325');
    expect(hashHex(hashUserId('a', h()))).toBe('af63dc4c8601ec8c');
    expect(hashHex(hashUserId('foobar', h()))).toBe('85944171f73967e8');
  });

  it('hashes a string and its UTF-8 bytes alike, including surrogate pairs', () => {
    for (const id of ['u1', 'ü-€', '😀x', 'Ω≈ç', ' alice ', '\u{10FFFF}']) {
      const bytes = new TextEncoder().encode(id);
      expect(hashHex(hashUserId(id, h()))).toBe(
        hashHex(hashUserIdBytes(bytes, 0, bytes.length, h())),
      );
    }
  });

  it('picks the partition as the 64-bit value modulo P', () => {
    const hash = hashUserId('foobar', h());
    const big = BigInt('0x' + hashHex(hash));
    for (const p of [1, 2, 7, 16, 256, 1021, 65_536])
      expect(partitionOf(hash, p)).toBe(Number(big % BigInt(p)));
  });

  it('spreads many ids evenly over partitions', () => {
    const counts = new Array<number>(16).fill(0);
    const out = h();
    for (let i = 0; i < 160_000; i++) counts[partitionOf(hashUserId(`u${i}`, out), 16)]!++;
    for (const c of counts) expect(Math.abs(c - 10_000)).toBeLessThan(500);
  });
});
