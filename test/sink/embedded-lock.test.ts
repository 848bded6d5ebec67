/**
 * The embedded store admits one process at a time: a second open of the
 * same data directory is refused with a clear error, and the directory opens
 * again once the first has closed.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { Warehouse } from '../../src/sink/warehouse.js';

let dir: string;

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('embedded store lock', () => {
  it('refuses a second opener until the first closes', async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'speedlayer-lock-'));
    const first = await Warehouse.open({ dataDir: dir });

    await expect(Warehouse.open({ dataDir: dir })).rejects.toThrow('[SL-STORE-001]');

    await first.close();
    const again = await Warehouse.open({ dataDir: dir });
    expect(await again.queryCurrent({})).toEqual([]);
    await again.close();
  });
});
