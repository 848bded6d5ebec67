/**
 * `speedlayer shard --postgres ... --watermark event-time` as real processes: two shards
 * and a coordinator over a real etcd and the real PostgreSQL server (a fresh schema,
 * dropped afterwards; skipped without SPEEDLAYER_TEST_POSTGRES_URL). P = 4. Scenario:
 * - each shard's port lists Ingest and Query beside Shard through reflection, and health
 *   reports Ingest SERVING once the ring is written;
 * - events sent to shard-a's Ingest service (an invalid user id among them) and Finish:
 *   the periods are published, and shard-b's Query service answers with rows equal to
 *   the brute-force recount and with the rejected event in the dead letters;
 * - each shard's --metrics-port: shard-a counts every event sent as accepted but the
 *   rejected one, the two shards' partition actors applied them all between them, and
 *   each holds two partitions under ring epoch 1;
 * - SIGTERM: every process drains and exits 0.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import * as grpc from '@grpc/grpc-js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ClusterProcess } from '../../cluster/cluster-process.js';
import { freePorts } from '../../cluster/ports.js';
import {
  loadSpeedlayerProtos,
  type EventBatchRequestWire,
  type FinishResponseWire,
  type IngestAckWire,
} from '../../src/transport/proto.js';
import { QueryClient } from '../../src/transport/query-client.js';
import { startEtcd, type EtcdServer } from '../support/etcd.js';
import { rng } from '../support/events.js';
import { checkHealth, listServices } from '../support/grpc-probes.js';
import { bruteForceCounts, diffCounts, rowsToCounts } from '../support/oracle.js';
import { postgresTestUrl } from '../support/postgres.js';

const BIN = path.resolve(import.meta.dirname, '../../bin/speedlayer.js');
const MIN = 60_000;
const HOUR = 60 * MIN;
const P = 4;
/** Monday 2026-03-23. */
const MONDAY = Date.UTC(2026, 2, 23);
const READY_MS = 30_000;

const postgresUrl = postgresTestUrl();
const schema = `sl_ingest_${randomBytes(4).toString('hex')}`;
const cluster = `ingest-${randomBytes(4).toString('hex')}`;

let etcd: EtcdServer | undefined;
let dir: string | undefined;
const procs: ClusterProcess[] = [];

beforeAll(async () => {
  if (postgresUrl === undefined) return;
  etcd = await startEtcd();
  dir = await mkdtemp(path.join(tmpdir(), 'speedlayer-shard-ingest-'));
});

afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop(5000)));
  if (postgresUrl !== undefined) {
    const client = new pg.Client({ connectionString: postgresUrl });
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await client.end();
  }
  await etcd?.stop();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

function start(name: string, args: readonly string[]): ClusterProcess {
  const proc = new ClusterProcess({ name, command: process.execPath, args: [BIN, ...args] });
  procs.push(proc);
  proc.start();

  return proc;
}

/** The value of the sample `name{...}` whose labels include each of `labels`. */
async function metric(url: string, name: string, labels: string[] = []): Promise<number> {
  const text = await (await fetch(url)).text();
  const line = text
    .split('\n')
    .find((l) => l.startsWith(`${name}{`) && labels.every((label) => l.includes(label)));
  if (line === undefined) throw new Error(`no ${name} ${labels.join(',')} at ${url}`);

  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

async function eventually<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + READY_MS;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

describe.skipIf(postgresUrl === undefined)('speedlayer shard --postgres', () => {
  it('serves Ingest and Query on the shard port, and what it takes is published exactly', async () => {
    const endpoint = (etcd as EtcdServer).endpoint;
    const ports = await freePorts(2);
    const common = ['--etcd', endpoint, '--cluster', cluster, '--partitions', String(P)];
    const store = ['--postgres', postgresUrl as string, '--postgres-schema', schema];
    const shards = ['shard-a', 'shard-b'].map((id, i) =>
      start(id, [
        'shard',
        ...['--id', id, ...common, ...store, '--watermark', 'event-time'],
        ...['--data-dir', path.join(dir as string, id), '--port', String(ports[i])],
        ...['--allowed-lateness', '10m', '--max-out-of-orderness', '5m', '--lease-ttl', '3s'],
        ...['--metrics-port', '0'],
      ]),
    );
    const metricsUrls: string[] = [];
    for (const shard of shards) {
      const listening = await shard.waitForLog((l) => l.msg === 'metrics endpoint listening');
      metricsUrls.push(`http://${listening.address as string}/metrics`);
      await shard.waitForLog((l) => l.msg === 'waiting for ring assignment');
      expect(shard.lines().find((l) => l.msg === 'ingest router started')).toMatchObject({
        mode: 'event-time',
      });
    }
    start('coordinator', [
      'coordinator',
      ...['--id', 'coord-1', ...common, ...store],
      ...['--allowed-lateness', '10m', '--round-interval', '200ms', '--lease-ttl', '3s'],
    ]);
    for (const shard of shards) await shard.waitForLog((l) => l.msg === 'shard serving');
    const [a, b] = ports.map((port) => `127.0.0.1:${port}`) as [string, string];

    expect(await listServices(a)).toEqual(
      expect.arrayContaining([
        'grpc.health.v1.Health',
        'speedlayer.v1.Ingest',
        'speedlayer.v1.Query',
        'speedlayer.v1.Shard',
      ]),
    );
    await eventually('Ingest SERVING', async () =>
      (await checkHealth(a, 'speedlayer.v1.Ingest')) === 'SERVING' ? true : undefined,
    );

    // Three hours of events in file order, and one with an invalid user id.
    const next = rng(5);
    const events = Array.from({ length: 1200 }, (_, i) => ({
      userId: `user-${Math.floor(next() * 400)}`,
      eventMs: MONDAY + 9 * HOUR + Math.floor((i / 1200) * 3 * HOUR),
    }));
    const request = (batchId: string, slice: typeof events): EventBatchRequestWire => ({
      batch_id: batchId,
      source: 'process-test',
      events: slice.map((e, j) => ({
        user_id: e.userId,
        event_time_ms: e.eventMs,
        event_id: '',
        attributes: {},
        line: j + 1,
      })),
      unreadable: [],
    });
    const { ingest } = loadSpeedlayerProtos();
    const client = new ingest.Client(a, grpc.credentials.createInsecure());
    const call = <T>(start: (cb: grpc.requestCallback<T>) => void): Promise<T> =>
      new Promise((resolve, reject) =>
        start((err, res) => (err ? reject(err) : resolve(res as T))),
      );
    try {
      const first = request('b-1', events.slice(0, 600));
      const bad = { ...request('b-2', events.slice(600)) };
      const badEvents = [...bad.events, { ...bad.events[0]!, user_id: '', line: 601 }];
      const acks = [
        await call<IngestAckWire>((cb) => client.Send(first, cb)),
        await call<IngestAckWire>((cb) => client.Send({ ...bad, events: badEvents }, cb)),
      ];
      expect(acks.map((x) => [x.accepted, x.rejected.length])).toEqual([
        [600, 0],
        [600, 1],
      ]);

      // An acknowledgement waits for the owners, so their counts are in before it.
      const [metricsA, metricsB] = metricsUrls as [string, string];
      const accepted = 'speedlayer_ingest_events_accepted_total';
      expect(await metric(metricsA, accepted, ['shard_id="shard-a"', 'role="shard"'])).toBe(1200);
      expect(await metric(metricsB, accepted, ['shard_id="shard-b"'])).toBe(0);
      const rejected = 'speedlayer_ingest_events_rejected_total';
      expect(await metric(metricsA, rejected, ['reason="invalid_user_id"'])).toBe(1);
      const applied = 'speedlayer_shard_events_applied_total';
      expect((await metric(metricsA, applied)) + (await metric(metricsB, applied))).toBe(1200);
      for (const url of metricsUrls) {
        expect(await metric(url, 'speedlayer_shard_partitions_owned')).toBe(2);
        expect(await metric(url, 'speedlayer_shard_ring_epoch')).toBe(1);
      }
      const finished = await call<FinishResponseWire>((cb) => client.Finish({}, cb));
      expect(finished.watermark_ms).toBe(MONDAY + 7 * 24 * HOUR + 10 * MIN);
    } finally {
      client.close();
    }

    const query = await QueryClient.connect(b);
    try {
      const expected = bruteForceCounts(events);
      const rows = await eventually('every period final', async () => {
        const current = await query.current();
        const done = current.length === expected.size && current.every((r) => r.status === 'final');
        return done ? current : undefined;
      });
      expect(diffCounts(expected, rowsToCounts(rows))).toEqual([]);
      expect((await query.rejects()).counts).toEqual({ invalid_user_id: 1 });
    } finally {
      query.close();
    }

    for (const proc of [...procs].reverse()) {
      expect(await proc.stop(10_000)).toEqual({ code: 0, signal: null });
    }
    for (const shard of shards) {
      expect(shard.lines().filter((l) => (l.level ?? 0) >= 50)).toEqual([]);
      expect(shard.lines().map((l) => l.msg)).toContain('ingest router stopped');
    }
  });
});
