/**
 * The engine against a brute-force recount on random streams: many users
 * (some with non-ASCII ids), several weeks across a year end, duplicates,
 * out of order within the bound, several partition counts, and a crash in
 * the middle of the replay (state reopened from the data directory, what was
 * not checkpointed lost, the input resumed from the checkpoint).
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { EmbeddedNode, type EngineSettings } from '../../src/embedded/embedded-node.js';
import { jsonPut } from '../../src/shard/level-state-store.js';
import { silentLogger } from '../../src/observability/index.js';
import { Warehouse } from '../../src/sink/warehouse.js';
import { bruteForceCounts, diffCounts, rowsToCounts } from '../support/oracle.js';
import { rng, toBatches, type TestEvent } from '../support/events.js';

const HOUR = 3_600_000;
const dirs: string[] = [];

afterEach(async () => {
  for (const dir of dirs.splice(0)) await fs.rm(dir, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'speedlayer-exact-'));
  dirs.push(dir);

  return dir;
}

/** Events in time order over `weeks` weeks, then shuffled within `jitterMs`, with repeats. */
function randomStream(
  seed: number,
  users: number,
  events: number,
  weeks: number,
  jitterMs: number,
): TestEvent[] {
  const next = rng(seed);
  const start = Date.UTC(2024, 11, 19, 7, 13); // a Thursday; the span crosses 2024-12-30 (ISO 2025-W01)
  const span = weeks * 7 * 24 * HOUR;
  const ids = Array.from({ length: users }, (_, i) =>
    i % 17 === 0 ? `ü-${i}-€` : i % 23 === 0 ? `${i}😀` : `u${i}`,
  );
  const list: TestEvent[] = [];

  for (let i = 0; i < events; i++) {
    // A skewed choice of user: a few are very active.
    const u = Math.floor(users * next() ** 2);
    const t = start + Math.floor((i / events) * span + next() * jitterMs);
    list.push({ userId: ids[u] as string, eventMs: t });
    if (next() < 0.05) list.push({ userId: ids[u] as string, eventMs: t });
  }

  return list;
}

const settings = (partitions: number, jitterMs: number): EngineSettings => ({
  partitions,
  allowedLatenessMs: 0,
  restatementHorizonMs: 400 * 86_400_000,
  maxFutureSkewMs: 5 * 60_000,
  maxOutOfOrdernessMs: jitterMs,
  watermarkMode: 'event-time',
  memoryBudgetBytes: 1024 ** 3,
});

describe('engine exactness', () => {
  it.each([
    { seed: 1, partitions: 1, crashAt: 0.5 },
    { seed: 2, partitions: 3, crashAt: 0.3 },
    { seed: 3, partitions: 8, crashAt: 0.8 },
  ])(
    'matches a brute-force recount (seed $seed, $partitions partitions, crash at $crashAt)',
    async ({ seed, partitions, crashAt }) => {
      const dir = await tempDir();
      const jitterMs = 40 * 60_000;
      const events = randomStream(seed, 3000, 30_000, 3, jitterMs);
      const batches = toBatches(events, 777);
      const warehouse = await Warehouse.open({ dataDir: dir });
      const open = (): Promise<EmbeddedNode> =>
        EmbeddedNode.open({
          ...settings(partitions, jitterMs),
          stateDir: path.join(dir, 'state'),
          warehouse,
          logger: silentLogger(),
        });

      // First run: checkpoint at crashAt, apply a few batches more, then crash.
      let node = await open();
      const crashBatch = Math.floor(batches.length * crashAt);
      for (let i = 0; i < crashBatch; i++) {
        await node.ingest(batches[i]!);
        if (i % 7 === 0) await node.round([jsonPut('test/next-batch', i + 1)]);
      }
      await node.round([jsonPut('test/next-batch', crashBatch)]);
      for (let i = crashBatch; i < Math.min(batches.length, crashBatch + 5); i++)
        await node.ingest(batches[i]!);
      await node.abandon();

      // Second run: resume where the checkpoint says.
      node = await open();
      const resumeAt = (await node.getRecord<number>('test/next-batch')) ?? 0;
      expect(resumeAt).toBe(crashBatch);
      for (let i = resumeAt; i < batches.length; i++) {
        await node.ingest(batches[i]!);
        if (i % 11 === 0) await node.round();
      }
      await node.finish();
      await node.close();

      const rows = await warehouse.queryCurrent({});
      await warehouse.close();

      expect(diffCounts(bruteForceCounts(events), rowsToCounts(rows))).toEqual([]);
      expect(rows.every((r) => r.status === 'final' && r.version === 1)).toBe(true);
      expect(rows.filter((r) => r.periodType === 'week').length).toBe(4);
    },
  );
});
