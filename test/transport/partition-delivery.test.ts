/**
 * Coalescing of queued partition batches (concatPartitionBatches): a partition that gets
 * the router's batches one by one and one that gets them joined end up with the same
 * watermark, seals, late-event changes and counts; marks keep their places.
 * PartitionDelivery: a batch its owner refuses as malformed (a user of another partition)
 * is logged at error at once, kept, and counted nowhere.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';

import { EventRouter } from '../../src/ingest/event-router.js';
import { silentLogger } from '../../src/observability/index.js';
import { periodKey } from '../../src/periods/index.js';
import { PartitionHost } from '../../src/shard/partition-host.js';
import type { PartitionBatch } from '../../src/shard/types.js';
import { computeRing } from '../../src/ring/index.js';
import {
  PartitionDelivery,
  concatPartitionBatches,
} from '../../src/transport/partition-delivery.js';
import { RingView } from '../../src/transport/routing-table.js';
import { ShardServer } from '../../src/transport/shard-server.js';
import { rng, toBatches, type TestEvent } from '../support/events.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const P = 2;
const MONDAY = Date.UTC(2026, 2, 23);
const dirs: string[] = [];

afterEach(async () => {
  for (const dir of dirs.splice(0)) await fs.rm(dir, { recursive: true, force: true });
});

/** A router on a clock far past the events, so that nothing is rejected as future. */
function newRouter(): EventRouter {
  return new EventRouter({
    partitions: P,
    allowedLatenessMs: 10 * MIN,
    restatementHorizonMs: 3 * 24 * HOUR,
    maxFutureSkewMs: 5 * MIN,
    maxOutOfOrdernessMs: 0,
    watermarkMode: 'clock',
    now: () => Date.UTC(2030, 0, 1),
  });
}

async function host(ringEpoch = 0): Promise<PartitionHost> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'speedlayer-coalesce-'));
  dirs.push(dir);

  return PartitionHost.open({
    stateDir: dir,
    ringEpoch,
    partitionCount: P,
    allowedLatenessMs: 10 * MIN,
    memoryBudgetBytes: 1024 ** 3,
    logger: silentLogger(),
  });
}

describe('concatPartitionBatches', () => {
  it('moves marks by the events before them and keeps the later of two at one place', () => {
    const batch = (n: number, marks: [number, number][]): PartitionBatch => ({
      partition: 1,
      length: n,
      userIds: Array.from({ length: n }, (_, i) => `u${i}`),
      slotHashes: new Uint32Array(n),
      eventTimeMs: new Float64Array(n),
      marks: marks.map(([before, watermarkMs]) => ({ before, watermarkMs })),
    });

    const joined = concatPartitionBatches([
      batch(2, [
        [1, 10],
        [2, 20],
      ]),
      batch(0, [[0, 30]]),
      batch(3, [
        [0, 40],
        [3, 50],
      ]),
    ]);

    expect(joined.length).toBe(5);
    expect(joined.userIds).toEqual(['u0', 'u1', 'u0', 'u1', 'u2']);
    expect(joined.marks).toEqual([
      { before: 1, watermarkMs: 10 },
      { before: 2, watermarkMs: 40 },
      { before: 5, watermarkMs: 50 },
    ]);
  });

  it('applies to the same state as the batches one by one, late events included', async () => {
    const next = rng(3);
    const events: TestEvent[] = Array.from({ length: 3000 }, (_, i) => {
      const receiveMs = MONDAY + Math.floor((i / 3000) * 6 * HOUR);
      const late = next() < 0.1 ? 40 * MIN + Math.floor(next() * 2 * HOUR) : 0;
      return { userId: `user-${Math.floor(next() * 300)}`, eventMs: receiveMs - late, receiveMs };
    });
    const router = newRouter();
    const perPartition: PartitionBatch[][] = [[], []];
    for (const batch of toBatches(events, 100)) {
      for (const b of router.route(batch).batches) perPartition[b.partition]?.push(b);
    }
    const separate = await host();
    const joined = await host();

    for (const batches of perPartition) {
      await separate.apply(batches);
      // In runs of up to seven, as a queue behind a slow owner would coalesce them.
      for (let i = 0; i < batches.length; i += 7) {
        await joined.apply([concatPartitionBatches(batches.slice(i, i + 7))]);
      }
    }

    const keys = Array.from({ length: 6 }, (_, h) =>
      periodKey({ type: 'hour', startMs: MONDAY + h * HOUR }),
    );
    const reports = await separate.reports();
    expect(reports.some((r) => r.changes.length > 0)).toBe(true);
    expect(await joined.reports()).toEqual(reports);
    expect(await joined.counts(keys)).toEqual(await separate.counts(keys));
    await separate.close();
    await joined.close();
  });
});

describe('PartitionDelivery', () => {
  it('logs a batch its owner refuses as malformed at error at once, and keeps it', async () => {
    const ring = computeRing(P, ['shard-a']);
    const owner = await host(ring.epoch);
    const server = await ShardServer.start({
      host: owner,
      address: '127.0.0.1:0',
      logger: silentLogger(),
    });
    const lines: { level: number; msg: string; partition?: number; err?: { type: string } }[] = [];
    const delivery = new PartitionDelivery({
      nodeId: 'router-1',
      senderId: 'router-1@1',
      partitions: P,
      ring: new RingView({ ring, addresses: [['shard-a', server.address]] }),
      localHost: () => undefined,
      logger: pino({ level: 'debug' }, { write: (line: string) => lines.push(JSON.parse(line)) }),
      initialBackoffMs: 20,
      maxBackoffMs: 50,
    });
    const router = newRouter();
    const events = Array.from({ length: 40 }, (_, i) => ({
      userId: `user-${i}`,
      eventMs: MONDAY,
      receiveMs: MONDAY,
    }));
    const ofOne = router
      .route(toBatches(events, 40)[0]!)
      .batches.find((b) => b.partition === 1) as PartitionBatch;

    // As a sender that partitions differently would send them: partition 1's users for 0.
    const sent = delivery.send({ ...ofOne, partition: 0 });
    sent.catch(() => undefined);
    const startedMs = Date.now();
    while (!lines.some((l) => l.level >= 40) && Date.now() - startedMs < 5000) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(
      lines.map(({ level, msg, partition, err }) => ({ level, msg, partition, type: err?.type })),
    ).toEqual([
      {
        level: 50,
        msg: 'owner refused a routed batch; retrying',
        partition: 0,
        type: 'WireFormatError',
      },
    ]);
    expect(Date.now() - startedMs).toBeLessThan(1000);
    const key = periodKey({ type: 'hour', startMs: MONDAY });
    expect((await owner.counts([key])).map((c) => c.counts.get(key))).toEqual([0, 0]);

    delivery.close();
    await expect(sent).rejects.toThrow();
    await server.close();
    await owner.close();
  });
});
