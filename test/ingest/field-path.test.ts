import { describe, expect, it } from 'vitest';

import { compileFieldPath } from '../../src/ingest/index.js';

describe('compileFieldPath', () => {
  const record = {
    user_id: 'u1',
    actor: { login: 'octocat', id: 583231, 'display.name': 'The Octocat' },
    'a.b': 'dotted key',
    'back\\slash': 'backslash key',
    tags: ['first', 'second'],
    empty: null,
  };

  it('reads a top-level field', () => {
    expect(compileFieldPath('user_id')(record)).toBe('u1');
    expect(compileFieldPath('empty')(record)).toBeNull();
  });

  it('follows dotted paths into nested objects and arrays', () => {
    expect(compileFieldPath('actor.login')(record)).toBe('octocat');
    expect(compileFieldPath('actor.id')(record)).toBe(583231);
    expect(compileFieldPath('tags.1')(record)).toBe('second');
  });

  it('reads keys that contain dots or backslashes through escapes', () => {
    expect(compileFieldPath('a\\.b')(record)).toBe('dotted key');
    expect(compileFieldPath('actor.display\\.name')(record)).toBe('The Octocat');
    expect(compileFieldPath('back\\\\slash')(record)).toBe('backslash key');
    expect(compileFieldPath('a.b')(record)).toBeUndefined();
  });

  it('gives undefined for missing keys, non-objects on the way and prototype members', () => {
    expect(compileFieldPath('missing')(record)).toBeUndefined();
    expect(compileFieldPath('actor.missing')(record)).toBeUndefined();
    expect(compileFieldPath('user_id.length')(record)).toBeUndefined();
    expect(compileFieldPath('empty.x')(record)).toBeUndefined();
    expect(compileFieldPath('toString')(record)).toBeUndefined();
    expect(compileFieldPath('actor.constructor')(record)).toBeUndefined();
    expect(compileFieldPath('user_id')('not an object')).toBeUndefined();
    expect(compileFieldPath('user_id')(null)).toBeUndefined();
  });

  it('refuses paths with empty keys or a dangling backslash', () => {
    expect(() => compileFieldPath('')).toThrow(/empty key/);
    expect(() => compileFieldPath('a..b')).toThrow(/empty key/);
    expect(() => compileFieldPath('.a')).toThrow(/empty key/);
    expect(() => compileFieldPath('a\\')).toThrow(/lone backslash/);
  });
});
