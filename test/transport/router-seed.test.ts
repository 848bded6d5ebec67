/**
 * A node that joins a running cluster with no saved router position (a new shard, or one
 * whose data directory was lost) judges the restatement horizon as the nodes that were
 * there: in event-time mode its watermark starts at the published watermark, so an event
 * from before the horizon is rejected as too_old and kept as a dead letter, not counted
 * into a period closed long ago. Without a published row there is nothing to start from.
 */
import path from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { silentLogger } from '../../src/observability/index.js';
import { IngestRouter } from '../../src/transport/ingest-router.js';
import type { EventBatchRequestWire } from '../../src/transport/proto.js';
import { RingView } from '../../src/transport/routing-table.js';
import {
  DAY,
  HOUR,
  Ingest,
  IngestCluster,
  NOW,
  RING,
  SETTINGS,
  cleanups,
  tempDir,
} from '../support/ingest-cluster.js';

/** Monday 2026-03-23. */
const MONDAY = Date.UTC(2026, 2, 23);

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function request(batchId: string, events: ReadonlyArray<[string, number]>): EventBatchRequestWire {
  return {
    batch_id: batchId,
    source: 'joiner',
    events: events.map(([userId, eventMs], i) => ({
      user_id: userId,
      event_time_ms: eventMs,
      received_time_ms: eventMs,
      event_id: '',
      attributes: {},
      line: i + 1,
    })),
    unreadable: [],
  };
}

describe('a router with no saved position', () => {
  it('starts at the published watermark and rejects events behind the horizon', async () => {
    const dir = await tempDir('speedlayer-router-seed-');
    const cluster = await IngestCluster.start(dir);
    const ingest = new Ingest(cluster.a.address);
    const floorBefore = await cluster.warehouse.latestWatermark();
    await ingest.send(
      request('first', [
        ['u1', MONDAY + HOUR],
        ['u2', MONDAY + 3 * DAY],
      ]),
    );
    const { watermark_ms: finished } = await ingest.finish();
    await cluster.coordinator.round();
    const floor = await cluster.warehouse.latestWatermark();

    expect(floorBefore).toBeUndefined();
    expect(floor).toBe(finished);

    // A new node: no data directory of its own yet, the same ring and owners.
    const ring = new RingView({
      ring: RING,
      addresses: [
        ['shard-a', cluster.a.address],
        ['shard-b', cluster.b.address],
      ],
    });
    const joiner = await IngestRouter.open({
      ...SETTINGS,
      nodeId: 'shard-c',
      watermark: 'event-time',
      ring,
      localHost: () => undefined,
      deadLetters: cluster.warehouse,
      dataDir: path.join(dir, 'node-c'),
      watermarkFloor: () => cluster.warehouse.latestWatermark(),
      logger: silentLogger(),
      now: () => NOW,
    });
    cleanups.push(() => joiner.close());

    expect(joiner.watermarkMs).toBe(floor);
    const ancientMs = (floor as number) - SETTINGS.restatementHorizonMs - DAY;
    const lateMs = MONDAY + 2 * DAY;
    const ack = await joiner.submit(
      request('join-1', [
        ['ancient', ancientMs],
        ['late', lateMs],
      ]),
    );

    expect(ack.accepted).toBe(1);
    expect(ack.rejected.map((r) => [r.index, r.reason])).toEqual([[0, 'REJECT_REASON_TOO_OLD']]);
    expect((await cluster.warehouse.rejectSummary()).examples.too_old).toEqual([
      expect.objectContaining({ source: 'joiner', line: 1, reason: 'too_old' }),
    ]);
    await joiner.finish();
    await cluster.coordinator.round();
    const day = await cluster.warehouse.queryHistory({
      periodType: 'day',
      fromMs: MONDAY + 2 * DAY,
      toMs: MONDAY + 3 * DAY,
    });
    expect(day.map((v) => [v.version, v.distinctUsers, v.status])).toEqual([
      [1, 0, 'final'],
      [2, 1, 'restated'],
    ]);
  });
});
