/**
 * Late events restate history. Scenarios:
 * - a stream in receive order with events minutes late, days late, beyond
 *   the restatement horizon and in the future: version 1 of every period is
 *   the on-time count, the last version the count of all accepted events,
 *   every rejection is in the dead-letter table with its reason, and no
 *   period has more versions than the rounds that changed it;
 * - a crash after late events were checkpointed and before the next round:
 *   the correction is neither lost nor applied twice;
 * - a filing made before a restatement keeps its number and version.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { EmbeddedNode, type EngineSettings } from '../../src/embedded/embedded-node.js';
import { silentLogger } from '../../src/observability/index.js';
import { Warehouse } from '../../src/sink/warehouse.js';
import { toBatches, rng, type TestEvent } from '../support/events.js';
import { lateModel, type ModelEvent } from '../support/late-model.js';
import { diffCounts, rowsToCounts } from '../support/oracle.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const dirs: string[] = [];

afterEach(async () => {
  for (const dir of dirs.splice(0)) await fs.rm(dir, { recursive: true, force: true });
});

const settings: EngineSettings = {
  partitions: 5,
  allowedLatenessMs: 10 * MIN,
  restatementHorizonMs: 3 * DAY,
  maxFutureSkewMs: 5 * MIN,
  maxOutOfOrdernessMs: 0,
  watermarkMode: 'clock',
  memoryBudgetBytes: 1024 ** 3,
};

/** Arrivals over 12 days: most on time, some minutes or days late, some too old, some from the future. */
function arrivals(seed: number, n: number): ModelEvent[] {
  const next = rng(seed);
  const start = Date.UTC(2026, 2, 20, 0, 0);
  const out: ModelEvent[] = [];

  for (let i = 0; i < n; i++) {
    const receiveMs = start + Math.floor((i / n) * 12 * DAY);
    const r = next();
    let delay = Math.floor(next() * 2 * MIN);
    if (r < 0.1) delay = 15 * MIN + Math.floor(next() * 3 * HOUR);
    else if (r < 0.16) delay = DAY + Math.floor(next() * 1.9 * DAY);
    else if (r < 0.18) delay = 3 * DAY + HOUR + Math.floor(next() * 20 * DAY);
    else if (r < 0.19) delay = -(6 * MIN + Math.floor(next() * 3 * DAY));
    out.push({
      userId: `user-${Math.floor(next() ** 1.5 * 900)}`,
      eventMs: receiveMs - delay,
      receiveMs,
    });
  }

  return out;
}

async function setup(
  memoryBudgetBytes = settings.memoryBudgetBytes,
): Promise<{ dir: string; warehouse: Warehouse; open: () => Promise<EmbeddedNode> }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'speedlayer-late-'));
  dirs.push(dir);
  const warehouse = await Warehouse.open({ dataDir: dir });
  const open = (): Promise<EmbeddedNode> =>
    EmbeddedNode.open({
      ...settings,
      memoryBudgetBytes,
      stateDir: path.join(dir, 'state'),
      warehouse,
      logger: silentLogger(),
    });

  return { dir, warehouse, open };
}

describe('late events', () => {
  it.each([
    { budget: 'ample memory', memoryBudgetBytes: 1024 ** 3 },
    { budget: 'a 1-byte memory budget (closed periods spill to disk)', memoryBudgetBytes: 1 },
  ])(
    'keep version 1 as the on-time count and restate to the count of all accepted events, with $budget',
    async ({ memoryBudgetBytes }) => {
      const events = arrivals(7, 12_000);
      const model = lateModel(events, settings);
      const { warehouse, open } = await setup(memoryBudgetBytes);
      const node = await open();

      let rounds = 0;
      for (const [i, batch] of toBatches(events as TestEvent[], 500).entries()) {
        await node.ingest(batch);
        if (i % 3 === 2) {
          await node.round();
          rounds++;
        }
      }
      await node.finish();
      const stats = node.stats;
      await node.close();
      rounds += 2;
      if (memoryBudgetBytes === 1) {
        expect(stats.hourLoads).toBeGreaterThan(100);
        expect(stats.evictedHours).toBeGreaterThan(100);
      } else {
        expect(stats.hourLoads).toBe(0);
      }

      const history = await warehouse.queryHistory({});
      const current = await warehouse.queryCurrent({});
      const rejects = await warehouse.rejectSummary(1);
      await warehouse.close();

      const firsts = history.filter((v) => v.version === 1);
      expect(firsts.every((v) => v.status === 'final')).toBe(true);
      // Periods that only late events reached closed with 0 users.
      const firstCounts = new Map([...rowsToCounts(firsts)].filter(([, n]) => n > 0));
      expect(diffCounts(model.first, firstCounts)).toEqual([]);
      expect(diffCounts(model.last, rowsToCounts(current))).toEqual([]);
      expect(rejects.counts).toEqual({
        future: model.rejected.future,
        too_old: model.rejected.too_old,
      });
      expect(model.rejected.future).toBeGreaterThan(50);
      expect(model.rejected.too_old).toBeGreaterThan(100);

      // Restated periods: strictly increasing versions, at most one per round.
      expect(model.restated.size).toBeGreaterThan(100);
      const byPeriod = new Map<string, number[]>();
      for (const v of history) {
        const key = `${v.periodType},${v.periodStartMs}`;
        byPeriod.set(key, [...(byPeriod.get(key) ?? []), v.distinctUsers]);
      }
      for (const values of byPeriod.values()) {
        expect(values.length).toBeLessThanOrEqual(1 + rounds);
        for (let i = 1; i < values.length; i++)
          expect(values[i]).toBeGreaterThan(values[i - 1] as number);
      }
      const restatedRows = history.filter((v) => v.status === 'restated');
      expect(restatedRows.length).toBeGreaterThanOrEqual(model.restated.size);
      expect(restatedRows[0]?.reason).toMatch(
        /^restated: \+\d+ users? from \d+ late events? in \d+ of 5 partitions$/,
      );
    },
  );

  it('neither loses nor doubles a correction when the process dies before the next round', async () => {
    const events = arrivals(11, 6000);
    const model = lateModel(events, settings);
    const batches = toBatches(events as TestEvent[], 400);
    const { warehouse, open } = await setup();

    let node = await open();
    const half = Math.floor(batches.length / 2);
    for (let i = 0; i < half; i++) await node.ingest(batches[i]!);
    await node.round();
    // Late events are applied and checkpointed (acknowledged), then the process dies.
    for (let i = half; i < half + 3; i++) await node.ingest(batches[i]!);
    await node.checkpoint();
    await node.abandon();

    node = await open();
    for (let i = half + 3; i < batches.length; i++) await node.ingest(batches[i]!);
    await node.finish();
    await node.close();

    const history = await warehouse.queryHistory({});
    const current = await warehouse.queryCurrent({});
    await warehouse.close();

    expect(diffCounts(model.last, rowsToCounts(current))).toEqual([]);
    const firstCounts = new Map(
      [...rowsToCounts(history.filter((v) => v.version === 1))].filter(([, n]) => n > 0),
    );
    expect(diffCounts(model.first, firstCounts)).toEqual([]);
    for (const v of history) expect(v.distinctUsers).toBeGreaterThan(v.version === 1 ? -1 : 0);
  });

  it('keeps a filed number as filed after a restatement', async () => {
    const { warehouse, open } = await setup();
    const node = await open();
    const day = Date.UTC(2026, 2, 29);
    const ev = (userId: string, eventMs: number, receiveMs: number): TestEvent => ({
      userId,
      eventMs,
      receiveMs,
    });

    const [first] = toBatches(
      [ev('a', day + 10 * HOUR, day + 10 * HOUR), ev('b', day + 11 * HOUR, day + 11 * HOUR)],
      10,
      'f1',
    );
    await node.ingest(first!);
    await node.advanceClock(day + DAY + 11 * MIN);
    await node.round();

    const filing = await warehouse.fileCurrent({
      periodType: 'day',
      periodStartMs: day,
      filedBy: 'finance',
      note: 'Q1 report',
    });
    expect(filing).toMatchObject({ version: 1, distinctUsers: 2, filedBy: 'finance' });

    const [late] = toBatches([ev('c', day + 23 * HOUR, day + DAY + 2 * HOUR)], 10, 'f2');
    await node.ingest(late!);
    await node.close();

    const filings = await warehouse.listFilings();
    const current = await warehouse.queryCurrent({ periodType: 'day' });
    await warehouse.close();

    expect(current).toMatchObject([
      { periodStartMs: day, distinctUsers: 3, version: 2, status: 'restated' },
    ]);
    expect(filings).toHaveLength(1);
    expect(filings[0]).toMatchObject({
      version: 1,
      distinctUsers: 2,
      currentVersion: 2,
      currentDistinctUsers: 3,
      difference: 1,
    });
  });
});
