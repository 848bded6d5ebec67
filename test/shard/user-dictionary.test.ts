import { describe, expect, it } from 'vitest';

import { UserDictionary } from '../../src/shard/user-dictionary.js';
import { hashUserId, slotHashOf } from '../../src/shard/user-hash.js';

const slot = (id: string): number => slotHashOf(hashUserId(id, { hi: 0, lo: 0 }));

describe('user dictionary', () => {
  it('assigns dense ids once, in order of first appearance, for ASCII and non-ASCII ids', () => {
    const dict = new UserDictionary();
    const ids = ['alice', 'Alice', ' alice ', 'ü-€', '😀', '123', '0123', ''];

    expect(ids.map((id) => dict.idOf(id, slot(id)))).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(ids.map((id) => dict.idOf(id, slot(id)))).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(ids.map((_, i) => dict.userIdOf(i))).toEqual(ids);
    expect(dict.find('bob', slot('bob'))).toBe(-1);
  });

  it('keeps ids apart that share a table hash', () => {
    const dict = new UserDictionary();
    // The same forced hash for every id: only the byte comparison tells them apart.
    for (let i = 0; i < 500; i++) expect(dict.idOf(`user-${i}`, 42)).toBe(i);
    for (let i = 0; i < 500; i++) expect(dict.idOf(`user-${i}`, 42)).toBe(i);
    expect(dict.size).toBe(500);
  });

  it('grows to a million ids and rebuilds identically from its segments', () => {
    const dict = new UserDictionary();
    for (let i = 0; i < 1_000_000; i++) dict.idOf(`u${i}`, slot(`u${i}`));
    const first = dict.encodeSegment(0);
    for (let i = 0; i < 1000; i++) dict.idOf(`é${i}`, slot(`é${i}`));
    const second = dict.encodeSegment(1_000_000);

    const copy = new UserDictionary();
    copy.loadSegment(first);
    copy.loadSegment(second);
    expect(copy.size).toBe(1_001_000);
    for (const i of [0, 1, 999_999]) expect(copy.find(`u${i}`, slot(`u${i}`))).toBe(i);
    expect(copy.find('é999', slot('é999'))).toBe(1_000_999);
    expect(copy.idOf('new', slot('new'))).toBe(1_001_000);
    expect(dict.residentBytes / dict.size).toBeLessThan(64);
  });
});
