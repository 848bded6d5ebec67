/**
 * A round whose publish fails loses nothing: the seals stay unacknowledged
 * and the next round writes the same versions. Also: the allowed lateness of
 * a data directory cannot change, since sealed periods were judged by it; and the
 * single process refuses to open on a database a cluster's coordinator has fenced.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { EmbeddedNode, type EngineSink } from '../../src/embedded/embedded-node.js';
import { silentLogger } from '../../src/observability/index.js';
import { StaleFenceError } from '../../src/sink/index.js';
import { Warehouse } from '../../src/sink/warehouse.js';
import { toBatches } from '../support/events.js';

const HOUR = 3_600_000;
const dirs: string[] = [];

afterEach(async () => {
  for (const dir of dirs.splice(0)) await fs.rm(dir, { recursive: true, force: true });
});

const settings = {
  partitions: 4,
  allowedLatenessMs: 0,
  restatementHorizonMs: 30 * 24 * HOUR,
  maxFutureSkewMs: 5 * 60_000,
  maxOutOfOrdernessMs: 0,
  watermarkMode: 'event-time' as const,
  memoryBudgetBytes: 1024 ** 3,
};

describe('coordinator failures', () => {
  it('writes the versions of a round whose publish failed in the next round', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'speedlayer-coord-'));
    dirs.push(dir);
    const warehouse = await Warehouse.open({ dataDir: dir });
    let failures = 1;
    const flaky: EngineSink = {
      claimFence: (f) => warehouse.claimFence(f),
      recordRejects: (rows) => warehouse.recordRejects(rows),
      loadPublished: () => warehouse.loadPublished(),
      publish: async (batch, fence) => {
        if (failures-- > 0) throw new Error('database unavailable');
        await warehouse.publish(batch, fence);
      },
    };
    const node = await EmbeddedNode.open({
      ...settings,
      stateDir: path.join(dir, 'state'),
      warehouse: flaky,
      logger: silentLogger(),
    });
    const t0 = Date.UTC(2026, 2, 2, 10);
    const events = ['a', 'b', 'c'].map((userId, i) => ({ userId, eventMs: t0 + i * 60_000 }));
    events.push({ userId: 'd', eventMs: t0 + 2 * HOUR });

    for (const batch of toBatches(events, 10)) await node.ingest(batch);
    await expect(node.round()).rejects.toThrow('database unavailable');
    await node.round();
    await node.finish();
    await node.close();

    const hours = await warehouse.queryHistory({ periodType: 'hour' });
    await warehouse.close();
    expect(hours.map((v) => [v.periodStartMs, v.version, v.distinctUsers])).toEqual([
      [t0, 1, 3],
      [t0 + 2 * HOUR, 1, 1],
    ]);
  });

  it('refuses to open a data directory with another allowed lateness', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'speedlayer-coord-'));
    dirs.push(dir);
    const warehouse = await Warehouse.open({ dataDir: dir });
    const open = (allowedLatenessMs: number): Promise<EmbeddedNode> =>
      EmbeddedNode.open({
        ...settings,
        allowedLatenessMs,
        stateDir: path.join(dir, 'state'),
        warehouse,
        logger: silentLogger(),
      });

    await (await open(0)).close();
    await expect(open(2 * 86_400_000)).rejects.toThrow(
      '[SL-CONFIG-003] this data directory was created with an allowed lateness of 0ms; it cannot be opened with 2d',
    );
    await (await open(0)).close();
    await warehouse.close();
  });

  it("refuses a database a cluster's coordinator has fenced, before it counts anything", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'speedlayer-coord-'));
    dirs.push(dir);
    const warehouse = await Warehouse.open({ dataDir: dir });
    await warehouse.claimFence({ ringEpoch: 3, fencingToken: 57 });

    const open = EmbeddedNode.open({
      ...settings,
      stateDir: path.join(dir, 'state'),
      warehouse,
      logger: silentLogger(),
    });
    await expect(open).rejects.toBeInstanceOf(StaleFenceError);
    await expect(open).rejects.toThrow(
      "[SL-SINK-001] stale fencing token 1: the writer fence is at 57, claimed by a newer writer; a cluster's coordinator has written to this database, and the single process cannot publish beside it: give it a database, schema or data directory of its own",
    );
    await warehouse.close();
  });
});
