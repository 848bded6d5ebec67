/**
 * The Ingest service over real gRPC, in process: two shards (P = 4, fixed ring), Ingest
 * served by shard-a through an IngestRouter in event-time mode, PGlite for rows and dead
 * letters, a Coordinator over GrpcPartitionsPort. Scenarios:
 * - random events (duplicates, out of order within the bound, late by hours, too old,
 *   from the future, non-ASCII ids, invalid ids, no event time) in batches over Send and
 *   SendStream, then Finish: the published rows equal the brute-force recount and equal
 *   (rows and version histories) an EmbeddedNode run on the same batches with rounds at
 *   the same points; every ack has accepted + rejected = batch size with the expected
 *   reason per index; every reject and unreadable record is in the dead-letter table;
 * - the same batches sent again change no row, no version and no dead letter;
 * - an owner shard stopped mid-stream: acks wait, a Send past its deadline fails; the
 *   shard restarts on its port and data directory, the pending acks arrive, and every
 *   acknowledged event is counted; a restarted router restores its watermark;
 * - wall-clock mode: the idle wall clock seals an hour with no further input, and Finish
 *   seals nothing the clock has not passed;
 *   receive-time mode: a batch with no events and a clock_ms seals it;
 * - malformed requests are INVALID_ARGUMENT, a node without a ring UNAVAILABLE; health
 *   and reflection list Ingest beside Shard.
 */
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';

import { EmbeddedNode } from '../../src/embedded/embedded-node.js';
import type { EventBatch } from '../../src/ingest/types.js';
import { silentLogger } from '../../src/observability/index.js';
import type { CurrentRow, VersionRow } from '../../src/sink/index.js';
import { Warehouse } from '../../src/sink/warehouse.js';
import { periodKey } from '../../src/periods/index.js';
import { MAX_BATCH_ID_BYTES, MAX_SOURCE_BYTES } from '../../src/transport/ingest-batch.js';
import { IngestRouter, type IngestWatermarkMode } from '../../src/transport/ingest-router.js';
import { ingestService } from '../../src/transport/ingest-server.js';
import type {
  EventBatchRequestWire,
  IngestAckWire,
  RejectReasonWire,
} from '../../src/transport/proto.js';
import { RingView } from '../../src/transport/routing-table.js';
import { readErrorDetail } from '../../src/transport/status-details.js';
import { rng } from '../support/events.js';
import { checkHealth, listServices } from '../support/grpc-probes.js';
import {
  DAY,
  HOUR,
  Ingest,
  IngestCluster,
  MEMORY_BUDGET,
  MIN,
  NOW,
  P,
  SETTINGS,
  TestShard,
  cleanups,
  tempDir,
  wire,
  type WireEvent,
} from '../support/ingest-cluster.js';
import { bruteForceCounts, diffCounts, rowsToCounts } from '../support/oracle.js';

/** Monday 2026-03-23. */
const MONDAY = Date.UTC(2026, 2, 23);
const SOURCE = 'ingest-test';
const INVALID_IDS = ['', '   ', 'bad\uD800', 'x\uFFFDy', 'y'.repeat(1025)];
const ROUND_EVERY = 3;

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A user id of one of four scripts, so that non-ASCII ids travel everywhere. */
function idOf(k: number): string {
  return [`user-${k}`, `ユーザー${k}`, `josé-${k}`, `😀${k}`][k % 4] as string;
}

/**
 * `n` events over three days from `startMs` in the order a file would hold them, each
 * with the verdict of an independent model of event-time judging: the watermark is the
 * highest accepted event time less the out-of-orderness bound.
 */
function generate(seed: number, n: number, startMs: number): WireEvent[] {
  const next = rng(seed);
  const out: WireEvent[] = [];
  let watermark = Number.NEGATIVE_INFINITY;

  for (let i = 0; i < n; i++) {
    const t = startMs + Math.floor((i / n) * 3 * DAY);
    const r = next();
    let userId = idOf(Math.floor(next() ** 1.5 * 600));
    let eventMs: number | undefined = t - Math.floor(next() * 9 * MIN);
    let receivedMs: number | undefined = next() < 0.3 ? undefined : t + Math.floor(next() * MIN);
    if (r < 0.01) userId = INVALID_IDS[i % INVALID_IDS.length] as string;
    else if (r < 0.015) eventMs = undefined;
    else if (r < 0.025) [receivedMs, eventMs] = [t, t + 6 * MIN + Math.floor(next() * HOUR)];
    else if (r < 0.06) eventMs = t - HOUR - Math.floor(next() * 20 * HOUR);
    else if (r < 0.07 && i > n / 10) eventMs = t - 40 * DAY;
    else if (r < 0.1 && out.length > 0) {
      const previous = out[out.length - 1] as WireEvent;
      [userId, eventMs, receivedMs] = [previous.user_id, previous.event_time_ms, t];
    }

    let expected: WireEvent['expected'];
    const receive = receivedMs ?? NOW;
    if (INVALID_IDS.includes(userId)) expected = 'invalid_user_id';
    else if (eventMs === undefined) expected = 'invalid_time';
    else if (eventMs > receive + SETTINGS.maxFutureSkewMs) expected = 'future';
    else if (eventMs < watermark - SETTINGS.restatementHorizonMs) expected = 'too_old';
    else watermark = Math.max(watermark, eventMs - SETTINGS.maxOutOfOrdernessMs);

    out.push({
      user_id: userId,
      ...(eventMs === undefined ? {} : { event_time_ms: eventMs }),
      ...(receivedMs === undefined ? {} : { received_time_ms: receivedMs }),
      event_id: i % 5 === 0 ? `ev-${i}` : '',
      attributes: i % 7 === 0 ? { app: 'ios' } : {},
      line: 0,
      expected,
    });
  }

  return out;
}

interface TestBatch {
  readonly request: EventBatchRequestWire;
  readonly events: readonly WireEvent[];
}

/** Batches of `size`: even ones carry line numbers, odd ones none; two carry unreadable records. */
function toRequests(events: readonly WireEvent[], size: number, prefix: string): TestBatch[] {
  const out: TestBatch[] = [];
  for (let start = 0, b = 0; start < events.length; start += size, b++) {
    const slice = events.slice(start, start + size).map((e, j) => ({
      ...e,
      line: b % 2 === 0 ? start + j + 1 : 0,
    }));
    const unreadable =
      b === 1
        ? [
            {
              line: 0,
              reason: 'REJECT_REASON_MALFORMED' as const,
              detail: 'not JSON',
              raw: '{oops',
            },
          ]
        : b === 2
          ? [
              {
                line: 99_999,
                reason: 'REJECT_REASON_INVALID_TIME' as const,
                detail: 'bad',
                raw: 'x',
              },
            ]
          : [];
    const request = {
      batch_id: `${prefix}-${b}`,
      source: SOURCE,
      events: slice.map(wire),
      unreadable,
    };
    out.push({ request, events: slice });
  }

  return out;
}

/** The batch's counted events as the embedded node takes them. */
function toEventBatch(batch: TestBatch): EventBatch {
  const kept = batch.events.filter(
    (e) => e.expected !== 'invalid_user_id' && e.expected !== 'invalid_time',
  );

  return {
    source: SOURCE,
    length: kept.length,
    userIds: kept.map((e) => e.user_id),
    eventTimeMs: Float64Array.from(kept, (e) => e.event_time_ms as number),
    receiveTimeMs: Float64Array.from(kept, (e) => e.received_time_ms ?? Number.NaN),
    lines: Uint32Array.from(kept, (_, i) => i + 1),
    eventIds: null,
    rejects: [],
    lastLine: kept.length,
  };
}

function accepted(events: readonly WireEvent[]): { userId: string; eventMs: number }[] {
  return events
    .filter((e) => e.expected === undefined)
    .map((e) => ({ userId: e.user_id, eventMs: e.event_time_ms as number }));
}

/** Rows without wall-clock instants and fencing, which differ between the two runs. */
function currentValues(rows: readonly CurrentRow[]): Omit<CurrentRow, 'computedAtMs'>[] {
  return rows.map(({ computedAtMs: _, ...rest }) => rest);
}

function versionValues(rows: readonly VersionRow[]): unknown[] {
  return rows.map(({ writtenAtMs: _, ringEpoch: __, fencingToken: ___, ...rest }) => rest);
}

/** What the ack must say for each rejected event, by index. */
function expectedRejections(batch: TestBatch): { index: number; reason: RejectReasonWire }[] {
  const out: { index: number; reason: RejectReasonWire }[] = [];
  batch.events.forEach((e, index) => {
    if (e.expected === undefined) return;
    out.push({ index, reason: `REJECT_REASON_${e.expected.toUpperCase()}` as RejectReasonWire });
  });

  return out;
}

/** The dead letters the batches must leave, as `source|line|reason`. */
function expectedDeadLetters(batches: readonly TestBatch[]): string[] {
  const out: string[] = [];
  for (const { request, events } of batches) {
    events.forEach((e, i) => {
      if (e.expected === undefined) return;
      const place = e.line > 0 ? `${SOURCE}|${e.line}` : `${SOURCE}#${request.batch_id}|${i + 1}`;
      out.push(`${place}|${e.expected}`);
    });
    request.unreadable.forEach((u, j) => {
      const place =
        u.line > 0
          ? `${SOURCE}|${u.line}`
          : `${SOURCE}#${request.batch_id}|${events.length + j + 1}`;
      out.push(`${place}|${u.reason === 'REJECT_REASON_MALFORMED' ? 'malformed' : 'invalid_time'}`);
    });
  }

  return out.sort();
}

async function deadLetters(warehouse: Warehouse): Promise<string[]> {
  const summary = await warehouse.rejectSummary(100_000);

  return Object.values(summary.examples)
    .flat()
    .map((d) => `${d.source}|${d.line}|${d.reason}`)
    .sort();
}

async function runEmbedded(dir: string, batches: readonly TestBatch[]) {
  const warehouse = await Warehouse.open({ dataDir: path.join(dir, 'embedded') });
  cleanups.push(() => warehouse.close());
  const node = await EmbeddedNode.open({
    ...SETTINGS,
    watermarkMode: 'event-time',
    memoryBudgetBytes: MEMORY_BUDGET,
    stateDir: path.join(dir, 'embedded', 'state'),
    warehouse,
    logger: silentLogger(),
    now: () => NOW,
  });
  for (const [i, batch] of batches.entries()) {
    await node.ingest(toEventBatch(batch));
    if (i % ROUND_EVERY === ROUND_EVERY - 1) await node.round();
  }
  await node.finish();
  await node.close();

  return { current: await warehouse.queryCurrent(), history: await warehouse.queryHistory() };
}

function expectAck(ack: IngestAckWire, batch: TestBatch): void {
  expect(ack.batch_id).toBe(batch.request.batch_id);
  expect(ack.accepted + ack.rejected.length).toBe(batch.events.length);
  expect(ack.rejected.map(({ index, reason }) => ({ index, reason }))).toEqual(
    expectedRejections(batch),
  );
  for (const r of ack.rejected) expect(r.detail).not.toBe('');
}

interface SoloNode {
  readonly router: IngestRouter;
  readonly shard: TestShard;
  readonly client: Ingest;
}

/** One shard that owns every partition and serves Ingest itself. */
async function soloNode(
  dir: string,
  watermark: IngestWatermarkMode,
  now: () => number,
  clockTickMs = 1000,
  ring = new RingView({ ring: { epoch: 1, partitions: P, owners: Array(P).fill('solo') } }),
): Promise<SoloNode> {
  const local: { shard?: TestShard } = {};
  const router = await IngestRouter.open({
    ...SETTINGS,
    nodeId: 'solo',
    watermark,
    ring,
    localHost: () => local.shard?.server.host,
    deadLetters: { recordRejects: () => Promise.resolve() },
    logger: silentLogger(),
    now,
    clockTickMs,
  });
  cleanups.push(() => router.close());
  const shard = await TestShard.start(dir, [0, 1, 2, 3], {
    services: [ingestService({ router, logger: silentLogger() })],
  });
  local.shard = shard;

  return { router, shard, client: new Ingest(shard.address) };
}

async function eventually(what: string, probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function grpcCode(err: unknown): number | undefined {
  return (err as grpc.ServiceError).code;
}

describe('Ingest service', () => {
  it('publishes what the brute-force recount and the embedded node publish, and keeps every reject', async () => {
    const dir = await tempDir('speedlayer-ingest-grpc-');
    const events = generate(7, 3000, MONDAY);
    const batches = toRequests(events, 250, 'run');
    const embedded = await runEmbedded(dir, batches);
    const cluster = await IngestCluster.start(dir);
    const client = new Ingest(cluster.a.address);
    const stream = client.stream();

    // Groups of three batches, alternately over Send and SendStream, a round after each.
    const acks: IngestAckWire[] = [];
    for (let g = 0; g * ROUND_EVERY < batches.length; g++) {
      const group = batches.slice(g * ROUND_EVERY, (g + 1) * ROUND_EVERY);
      if (g % 2 === 0) for (const b of group) acks.push(await client.send(b.request));
      else acks.push(...(await Promise.all(group.map((b) => stream.send(b.request)))));
      expect((await cluster.coordinator.round()).missingPartitions).toEqual([]);
    }
    await stream.end();
    expect((await client.finish()).watermark_ms).toBe(MONDAY + 7 * DAY + 10 * MIN);
    await cluster.coordinator.round();

    acks.forEach((ack, i) => expectAck(ack, batches[i] as TestBatch));
    const current = await cluster.warehouse.queryCurrent();
    const history = await cluster.warehouse.queryHistory();
    expect(diffCounts(bruteForceCounts(accepted(events)), rowsToCounts(current))).toEqual([]);
    expect(currentValues(current)).toEqual(currentValues(embedded.current));
    expect(versionValues(history)).toEqual(versionValues(embedded.history));
    expect(history.filter((v) => v.status === 'restated').length).toBeGreaterThan(3);
    const verdicts = new Set(events.map((e) => e.expected));
    expect(verdicts).toEqual(
      new Set([undefined, 'invalid_user_id', 'invalid_time', 'future', 'too_old']),
    );
    expect(await deadLetters(cluster.warehouse)).toEqual(expectedDeadLetters(batches));

    // The same batches again: the same acks, and nothing changes.
    const letters = await deadLetters(cluster.warehouse);
    for (const i of [0, 1, 5]) {
      const again = await client.send((batches[i] as TestBatch).request);
      expect(again.accepted).toBe(acks[i]?.accepted);
      expect(again.rejected.map(({ index, reason }) => ({ index, reason }))).toEqual(
        acks[i]?.rejected.map(({ index, reason }) => ({ index, reason })),
      );
    }
    await cluster.coordinator.round();
    expect(currentValues(await cluster.warehouse.queryCurrent())).toEqual(currentValues(current));
    expect(await cluster.warehouse.queryHistory()).toEqual(history);
    expect(await deadLetters(cluster.warehouse)).toEqual(letters);
  });

  it('holds acks while an owner is down and loses nothing acknowledged when it returns', async () => {
    const dir = await tempDir('speedlayer-ingest-restart-');
    const events = generate(11, 2000, MONDAY);
    const batches = toRequests(events, 250, 'restart');
    const cluster = await IngestCluster.start(dir);
    const client = new Ingest(cluster.a.address);
    const stream = client.stream();
    const send = (i: number): Promise<IngestAckWire> =>
      stream.send((batches[i] as TestBatch).request);

    await Promise.all([0, 1, 2].map(send));
    const restartB = await cluster.stopB();
    const pending = [3, 4, 5].map(send);
    const late = client.send((batches[6] as TestBatch).request, 300);
    await expect(late).rejects.toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED });
    await sleep(300);
    expect(stream.acks.map((a) => a.batch_id)).toEqual(['restart-0', 'restart-1', 'restart-2']);
    expect(cluster.router.pendingBatches).toBeGreaterThan(0);

    await restartB();
    (await Promise.all(pending)).forEach((ack, k) => expectAck(ack, batches[3 + k] as TestBatch));
    expectAck(await send(6), batches[6] as TestBatch);
    expectAck(await send(7), batches[7] as TestBatch);
    await stream.end();
    const { watermark_ms: watermarkMs } = await client.finish();
    await cluster.coordinator.round();

    const current = await cluster.warehouse.queryCurrent();
    expect(diffCounts(bruteForceCounts(accepted(events)), rowsToCounts(current))).toEqual([]);
    expect(current.filter((r) => r.status === 'provisional')).toEqual([]);

    // A router started again on the node's data directory judges with the same watermark.
    await cluster.router.close();
    const again = await IngestRouter.open({
      ...SETTINGS,
      nodeId: 'shard-a',
      watermark: 'event-time',
      ring: cluster.ring,
      localHost: () => cluster.a.server.host,
      deadLetters: cluster.warehouse,
      dataDir: path.join(dir, 'node-a'),
      logger: silentLogger(),
    });
    cleanups.push(() => again.close());
    expect(again.watermarkMs).toBe(watermarkMs);
    expect(again.senderId).not.toBe(cluster.router.senderId);
  });

  it('moves the watermark with the idle wall clock, and with a batch clock in receive-time mode', async () => {
    const dir = await tempDir('speedlayer-ingest-clock-');
    let wallMs = MONDAY + 10 * HOUR + 30 * MIN;
    const closed = MONDAY + 11 * HOUR + SETTINGS.allowedLatenessMs;
    const hourKey = periodKey({ type: 'hour', startMs: MONDAY + 10 * HOUR });
    const sealed = async (node: SoloNode): Promise<boolean> => {
      const reports = await node.shard.server.host.reports();
      return (
        reports.every((r) => r.watermarkMs >= closed) &&
        reports.some((r) => r.seals.some((seal) => seal.key === hourKey))
      );
    };
    const live = await soloNode(path.join(dir, 'live'), 'wall-clock', () => wallMs, 20);
    const replay = await soloNode(path.join(dir, 'replay'), 'receive-time', () => NOW);
    // One event per partition in the hour; no receive time: it arrives now.
    const users = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'];
    const events = users.map((u, i) => ({
      user_id: u,
      event_time_ms: MONDAY + 10 * HOUR + i * MIN,
      event_id: '',
      attributes: {},
      line: i + 1,
    }));
    const batch = { batch_id: 'b', source: 's', events, unreadable: [] };

    await live.client.send(batch);
    expect(await sealed(live)).toBe(false);
    // The watermark trails the clock by the out-of-orderness bound.
    wallMs = closed + SETTINGS.maxOutOfOrdernessMs + MIN;
    await eventually('the idle hour sealed by the wall clock', async () => sealed(live));
    expect(live.router.watermarkMs).toBeGreaterThanOrEqual(closed);

    await replay.client.send({
      ...batch,
      events: events.map((e) => ({ ...e, received_time_ms: e.event_time_ms })),
    });
    expect(await sealed(replay)).toBe(false);
    await replay.client.send({
      ...batch,
      batch_id: 'idle',
      events: [],
      clock_ms: closed + SETTINGS.maxOutOfOrdernessMs,
    });
    expect(await sealed(replay)).toBe(true);
    expect(replay.router.watermarkMs).toBe(closed);
  });

  it('in wall-clock mode, Finish closes nothing the wall clock has not passed', async () => {
    const dir = await tempDir('speedlayer-ingest-finish-live-');
    const wallMs = MONDAY + 10 * HOUR + 30 * MIN;
    const live = await soloNode(dir, 'wall-clock', () => wallMs, 20);
    const events = ['a', 'b', 'c', 'd', 'e', 'f'].map((u, i) => ({
      user_id: u,
      event_time_ms: MONDAY + 10 * HOUR + i * MIN,
      event_id: '',
      attributes: {},
      line: i + 1,
    }));

    await live.client.send({ batch_id: 'b', source: 's', events, unreadable: [] });
    const finished = await live.client.finish();

    // A backfill's Finish used to move a live node to the end of the week: the open hour,
    // day and week sealed (final) at once, and restated by every later live event.
    const watermarkMs = wallMs - SETTINGS.maxOutOfOrdernessMs;
    expect(Number(finished.watermark_ms)).toBe(watermarkMs);
    expect(live.router.watermarkMs).toBe(watermarkMs);
    const reports = await live.shard.server.host.reports();
    expect(reports.map((r) => r.watermarkMs)).toEqual([0, 1, 2, 3].map(() => watermarkMs));
    expect(reports.flatMap((r) => r.seals)).toEqual([]);
  });

  it('refuses malformed requests, and takes batches only once it has a ring', async () => {
    const dir = await tempDir('speedlayer-ingest-refuse-');
    const ring = new RingView();
    const { router, shard, client } = await soloNode(dir, 'event-time', () => NOW, 1000, ring);
    const event = { user_id: 'u', event_time_ms: MONDAY, event_id: '', attributes: {}, line: 1 };
    const batch = { batch_id: 'b', source: 's', events: [event], unreadable: [] };

    const noRing = client.send(batch);
    await expect(noRing).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    const detail = readErrorDetail(
      ((await noRing.catch((e: unknown) => e)) as grpc.ServiceError).metadata,
    );
    expect(detail).toMatchObject({ code: 'SL-INGEST-002', retryable: true });

    ring.setRing({ epoch: 1, partitions: P, owners: ['solo', 'solo', 'solo', 'solo'] });
    await expect(client.send(batch)).resolves.toEqual({ batch_id: 'b', accepted: 1, rejected: [] });
    for (const bad of [
      { ...batch, batch_id: '' },
      { ...batch, events: Array.from({ length: 100_001 }, () => event) },
      {
        ...batch,
        unreadable: [
          { line: 1, reason: 'REJECT_REASON_UNSPECIFIED' as const, detail: '', raw: '' },
        ],
      },
      // Lines key dead letters: past 2^53 they are not exact, past 2^63 not storable.
      { ...batch, events: [{ ...event, user_id: '', line: 2 ** 63 }] },
      {
        ...batch,
        unreadable: [
          { line: 2 ** 53 + 2, reason: 'REJECT_REASON_MALFORMED' as const, detail: '', raw: '' },
        ],
      },
      // (source, line) keys a dead letter in a unique index that holds only so many bytes.
      { ...batch, source: 's'.repeat(MAX_SOURCE_BYTES + 1) },
      { ...batch, source: 'é'.repeat(MAX_SOURCE_BYTES / 2 + 1) },
      { ...batch, batch_id: 'b'.repeat(MAX_BATCH_ID_BYTES + 1) },
      // A line names one record: two with the same line would share one dead-letter row.
      { ...batch, events: [event, { ...event, user_id: '' }] },
      {
        ...batch,
        unreadable: [{ line: 1, reason: 'REJECT_REASON_MALFORMED' as const, detail: '', raw: '' }],
      },
    ]) {
      const refused = await client.send(bad).catch((e: unknown) => e);
      expect(grpcCode(refused)).toBe(grpc.status.INVALID_ARGUMENT);
    }
    const longest = {
      ...batch,
      source: 'é'.repeat(MAX_SOURCE_BYTES / 2),
      batch_id: 'b'.repeat(MAX_BATCH_ID_BYTES),
    };
    await expect(client.send(longest)).resolves.toMatchObject({ accepted: 1, rejected: [] });
    expect(router.watermarkMs).toBe(MONDAY - SETTINGS.maxOutOfOrdernessMs);

    await expect(checkHealth(shard.address, 'speedlayer.v1.Ingest')).resolves.toBe('NOT_SERVING');
    shard.server.setServiceServing('speedlayer.v1.Ingest', true);
    await expect(checkHealth(shard.address, 'speedlayer.v1.Ingest')).resolves.toBe('SERVING');
    await expect(listServices(shard.address)).resolves.toEqual([
      'grpc.health.v1.Health',
      'speedlayer.v1.Ingest',
      'speedlayer.v1.Shard',
    ]);
  });
});
