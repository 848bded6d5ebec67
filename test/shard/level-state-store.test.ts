/**
 * Opening the shard state: a directory another process (or another store in this one)
 * holds is refused with a reason that names it, not LevelDB's bare 'Database failed to
 * open'.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { LevelStateStore } from '../../src/shard/level-state-store.js';

const dirs: string[] = [];

afterEach(async () => {
  for (const dir of dirs.splice(0)) await fs.rm(dir, { recursive: true, force: true });
});

describe('LevelStateStore.open', () => {
  it('names the directory and the lock when another store holds it', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'speedlayer-state-lock-'));
    dirs.push(dir);
    const first = await LevelStateStore.open(dir);
    try {
      await expect(LevelStateStore.open(dir)).rejects.toThrow(
        `[SL-STORE-002] the shard state in '${dir}' is in use by another process (a second shard on the same --data-dir?)`,
      );
    } finally {
      await first.close();
    }

    const again = await LevelStateStore.open(dir);
    await again.close();
  });

  it('passes on the reason LevelDB gives for other failures', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'speedlayer-state-bad-'));
    dirs.push(dir);
    // A file where LevelDB needs its CURRENT file to be a readable pointer.
    await fs.writeFile(path.join(dir, 'CURRENT'), 'not-a-manifest\n');

    await expect(LevelStateStore.open(dir)).rejects.toThrow(
      new RegExp(`^\\[SL-STORE-003\\] cannot open the shard state in '${dir}': .+`),
    );
  });
});
