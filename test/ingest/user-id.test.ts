import { describe, expect, it } from 'vitest';

import { readUserId } from '../../src/ingest/index.js';

describe('readUserId', () => {
  it('uses a string exactly as written: case-sensitive and untrimmed', () => {
    expect(readUserId('alice')).toEqual({ ok: true, userId: 'alice' });
    expect(readUserId('ALICE')).toEqual({ ok: true, userId: 'ALICE' });
    expect(readUserId(' bob ')).toEqual({ ok: true, userId: ' bob ' });
    expect(readUserId('198.18.0.1')).toEqual({ ok: true, userId: '198.18.0.1' });
    expect(readUserId('0042')).toEqual({ ok: true, userId: '0042' });
    expect(readUserId('Zoë 🚀')).toEqual({ ok: true, userId: 'Zoë 🚀' });
  });

  it('refuses empty and white-space-only strings', () => {
    expect(readUserId('')).toEqual({ ok: false, detail: 'user id is empty' });
    expect(readUserId('   ')).toEqual({ ok: false, detail: 'user id is only whitespace' });
    expect(readUserId('\t\r\n')).toEqual({ ok: false, detail: 'user id is only whitespace' });
    expect(readUserId('\u00a0\u3000')).toEqual({ ok: false, detail: 'user id is only whitespace' });
  });

  it('uses the decimal text of an integer', () => {
    expect(readUserId(123)).toEqual({ ok: true, userId: '123' });
    expect(readUserId(0)).toEqual({ ok: true, userId: '0' });
    expect(readUserId(-0)).toEqual({ ok: true, userId: '0' });
    expect(readUserId(-17)).toEqual({ ok: true, userId: '-17' });
    expect(readUserId(Number.MAX_SAFE_INTEGER)).toEqual({ ok: true, userId: '9007199254740991' });
  });

  it('refuses integers that a JSON number cannot hold exactly', () => {
    const result = readUserId(2 ** 53);

    expect(result.ok).toBe(false);
    expect(!result.ok && result.detail).toMatch(/beyond 2\^53.*send it as a string/);
    expect(readUserId(1e21).ok).toBe(false);
  });

  it('refuses values that are neither strings nor integers, saying what they were', () => {
    expect(readUserId(undefined)).toEqual({ ok: false, detail: 'user id is missing' });
    expect(readUserId(null)).toEqual({ ok: false, detail: 'user id is null' });
    expect(readUserId(true)).toEqual({
      ok: false,
      detail: 'user id must be a string or an integer, got boolean',
    });
    expect(readUserId(1.5)).toEqual({
      ok: false,
      detail: 'user id must be a string or an integer, got number 1.5',
    });
    expect(readUserId(NaN)).toEqual({
      ok: false,
      detail: 'user id must be a string or an integer, got number NaN',
    });
    expect(readUserId({ id: 1 })).toEqual({
      ok: false,
      detail: 'user id must be a string or an integer, got object',
    });
    expect(readUserId(['a'])).toEqual({
      ok: false,
      detail: 'user id must be a string or an integer, got array',
    });
  });

  it('rejects ids that are not well-formed Unicode, which would merge different users', () => {
    expect(readUserId('\ud800')).toEqual({
      ok: false,
      detail: 'user id is not well-formed Unicode (a lone surrogate)',
    });
    expect(readUserId('a\udfffb').ok).toBe(false);
    expect(readUserId('\ufffd').ok).toBe(false);
    expect(readUserId('x\ufffdy')).toEqual({
      ok: false,
      detail: 'user id contains U+FFFD (invalid UTF-8 in the input, or a replacement character)',
    });
    // A well-formed pair (an emoji) is fine.
    expect(readUserId('\ud83d\ude00')).toEqual({ ok: true, userId: '😀' });
  });

  it('takes ids up to 1024 UTF-8 bytes, and rejects longer ones', () => {
    const tooLong = { ok: false, detail: 'user id is longer than 1024 bytes (UTF-8)' };
    expect(readUserId('a'.repeat(1024))).toEqual({ ok: true, userId: 'a'.repeat(1024) });
    expect(readUserId('a'.repeat(1025))).toEqual(tooLong);
    expect(readUserId('a'.repeat(1_000_000))).toEqual(tooLong);
    // Bytes, not characters: 341 three-byte characters fit, 342 do not; 256 emoji fit, 257 do not.
    expect(readUserId('€'.repeat(341)).ok).toBe(true);
    expect(readUserId(`${'€'.repeat(341)}a`).ok).toBe(true);
    expect(readUserId(`${'€'.repeat(341)}ab`)).toEqual(tooLong);
    expect(readUserId('😀'.repeat(256)).ok).toBe(true);
    expect(readUserId('😀'.repeat(257))).toEqual(tooLong);
  });
});
