/**
 * A shard's Prometheus metrics, scraped over HTTP, against counts the test knows from
 * what it sent. Two shards in process under a fixed ring (P = 4: shard-a holds 0 and 2,
 * shard-b 1 and 3), Ingest on shard-a through an IngestRouter in event-time mode, each
 * shard with its own ShardMetrics, as two processes would have. Scenario:
 * - one batch of 40 valid events, 3 without a user id, 2 from too far in the future and
 *   2 unreadable records: accepted, rejected by reason and unreadable counts are exact;
 *   every partition got one batch (the watermark moved), two per owner; each shard
 *   applied the events of its own partitions (FNV-1a computed here) and knows their users;
 * - shard-b stopped: a batch of 10 waits; shard-b's two partition batches are queued and
 *   retried against it while shard-a's are delivered, and nothing is counted as accepted;
 *   shard-b back on its port: the batch is acknowledged, the queue is empty, and the
 *   counts take its 10 events;
 * - a batch without an id is refused as invalid_argument, and one sent after the router
 *   closed as unavailable; neither counts an event.
 */
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { afterEach, describe, expect, it } from 'vitest';

import {
  createMetricsRegistry,
  silentLogger,
  startMetricsServer,
} from '../../src/observability/index.js';
import type { DeadLetterWrite } from '../../src/sink/types.js';
import { IngestRouter } from '../../src/transport/ingest-router.js';
import { ingestService } from '../../src/transport/ingest-server.js';
import type { EventBatchRequestWire, EventWire } from '../../src/transport/proto.js';
import { RingView } from '../../src/transport/routing-table.js';
import type { ServedService } from '../../src/transport/served-service.js';
import { ShardMetrics } from '../../src/transport/shard-metrics.js';
import {
  HOUR,
  Ingest,
  MIN,
  NOW,
  P,
  RING,
  SETTINGS,
  TestShard,
  cleanups,
  tempDir,
} from '../support/ingest-cluster.js';

/** Monday 2026-03-23, 09:00. */
const START = Date.UTC(2026, 2, 23, 9);
const OWNED = { 'shard-a': [0, 2], 'shard-b': [1, 3] } as const;

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** 64-bit FNV-1a of the UTF-8 bytes, modulo P: the partition a user id belongs to. */
function partitionOfUser(userId: string): number {
  let h = 0xcbf29ce484222325n;
  for (const byte of new TextEncoder().encode(userId)) {
    h = ((h ^ BigInt(byte)) * 0x100000001b3n) & 0xffffffffffffffffn;
  }

  return Number(h % BigInt(P));
}

/** One Prometheus sample: its metric name, labels and value. */
interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

async function scrape(url: string): Promise<Sample[]> {
  const response = await fetch(url);
  expect(response.status).toBe(200);
  const samples: Sample[] = [];
  for (const line of (await response.text()).split('\n')) {
    const m = /^([a-z_:]+)(?:\{(.*)\})? (\S+)$/i.exec(line);
    if (m === null) continue;
    const labels: Record<string, string> = {};
    for (const [, key, value] of (m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)) {
      labels[key as string] = value as string;
    }
    samples.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }

  return samples;
}

/** The value of the one sample of `name` whose labels include `labels`; 0 when none. */
function valueOf(
  samples: readonly Sample[],
  name: string,
  labels: Record<string, string> = {},
): number {
  const found = samples.filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  expect(found.length, `${name} ${JSON.stringify(labels)}`).toBeLessThanOrEqual(1);

  return found[0]?.value ?? 0;
}

/** A shard in process: its host behind a Shard server, counting into `metrics`. */
function startShard(
  dir: string,
  id: keyof typeof OWNED,
  metrics: ShardMetrics,
  options: { port?: number; services?: readonly ServedService[] } = {},
): Promise<TestShard> {
  return TestShard.start(path.join(dir, id), OWNED[id], { ...options, metrics });
}

/** A shard's metrics on their own endpoint, as `speedlayer shard --metrics-port` serves them. */
async function shardMetrics(id: string): Promise<{ metrics: ShardMetrics; url: string }> {
  const registry = createMetricsRegistry({
    processMetrics: false,
    labels: { role: 'shard', shard_id: id },
  });
  const metrics = new ShardMetrics(registry);
  const server = await startMetricsServer({ registry, port: 0 });
  cleanups.push(() => server.close());

  return { metrics, url: `http://${server.address}/metrics` };
}

function event(userId: string, eventMs: number, receivedMs = eventMs): EventWire {
  return {
    user_id: userId,
    event_time_ms: eventMs,
    received_time_ms: receivedMs,
    event_id: '',
    attributes: {},
    line: 0,
  };
}

async function until(what: string, probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('ShardMetrics', () => {
  it('counts what an ingest node takes in, rejects, retries and delivers, and what each shard applies', async () => {
    const dir = await tempDir('speedlayer-shard-metrics-');
    const a = await shardMetrics('shard-a');
    const b = await shardMetrics('shard-b');
    let shardB = await startShard(dir, 'shard-b', b.metrics);
    const portB = shardB.server.port;

    const letters: DeadLetterWrite[] = [];
    const local: { server?: TestShard['server'] } = {};
    const router = await IngestRouter.open({
      ...SETTINGS,
      nodeId: 'shard-a',
      watermark: 'event-time',
      ring: new RingView({ ring: RING, addresses: [['shard-b', shardB.server.address]] }),
      localHost: () => local.server?.host,
      deadLetters: { recordRejects: async (rows) => void letters.push(...rows) },
      logger: silentLogger(),
      now: () => NOW,
      delivery: { initialBackoffMs: 20, maxBackoffMs: 100 },
      metrics: a.metrics,
    });
    cleanups.push(() => router.close());
    const shardA = await startShard(dir, 'shard-a', a.metrics, {
      services: [ingestService({ router, logger: silentLogger() })],
    });
    local.server = shardA.server;
    const client = new Ingest(shardA.server.address);

    // Before anything: every fixed series is there at zero, labelled with the shard.
    let scraped = await scrape(a.url);
    expect(valueOf(scraped, 'speedlayer_ingest_events_accepted_total')).toBe(0);
    expect(
      scraped.find((s) => s.name === 'speedlayer_ingest_events_rejected_total')?.labels,
    ).toMatchObject({ role: 'shard', shard_id: 'shard-a' });
    const reasons = scraped
      .filter((s) => s.name === 'speedlayer_ingest_events_rejected_total')
      .map((s) => s.labels.reason)
      .sort();
    expect(reasons).toEqual(['future', 'invalid_time', 'invalid_user_id', 'malformed', 'too_old']);
    expect(valueOf(scraped, 'speedlayer_shard_partitions_owned')).toBe(2);
    expect(valueOf(scraped, 'speedlayer_shard_ring_epoch')).toBe(RING.epoch);

    // 40 valid events a minute apart, 3 without a user id, 2 an hour past their receive time.
    const valid = Array.from({ length: 40 }, (_, i) => event(`user-${i}`, START + i * MIN));
    const noUser = Array.from({ length: 3 }, (_, i) => event(i === 0 ? '' : ' ', START));
    const future = [
      event('user-f1', START + 2 * HOUR, START),
      event('user-f2', START + HOUR, START),
    ];
    const first: EventBatchRequestWire = {
      batch_id: 'metrics-1',
      source: 'metrics-test',
      events: [...valid.slice(0, 20), ...noUser, ...future, ...valid.slice(20)],
      unreadable: [
        { line: 0, reason: 'REJECT_REASON_MALFORMED', detail: 'not JSON', raw: '{' },
        { line: 0, reason: 'REJECT_REASON_MALFORMED', detail: 'not JSON', raw: '}' },
      ],
    };
    const ack = await client.send(first);
    expect([ack.accepted, ack.rejected.length]).toEqual([40, 5]);
    expect(letters).toHaveLength(7);

    const validIds = valid.map((e) => e.user_id);
    const ofShard = (ids: readonly string[], id: keyof typeof OWNED): number =>
      ids.filter((u) => (OWNED[id] as readonly number[]).includes(partitionOfUser(u))).length;
    // Both shards get some, so that each side of the count is tested.
    expect(ofShard(validIds, 'shard-a')).toBeGreaterThan(0);
    expect(ofShard(validIds, 'shard-b')).toBeGreaterThan(0);

    scraped = await scrape(a.url);
    expect(valueOf(scraped, 'speedlayer_ingest_batches_total', { outcome: 'acknowledged' })).toBe(
      1,
    );
    expect(valueOf(scraped, 'speedlayer_ingest_events_accepted_total')).toBe(40);
    const rejected = (reason: string): number =>
      valueOf(scraped, 'speedlayer_ingest_events_rejected_total', { reason });
    expect([rejected('invalid_user_id'), rejected('future'), rejected('invalid_time')]).toEqual([
      3, 2, 0,
    ]);
    expect(rejected('too_old') + rejected('malformed')).toBe(0);
    expect(
      valueOf(scraped, 'speedlayer_ingest_unreadable_records_total', { reason: 'malformed' }),
    ).toBe(2);
    // The watermark moved, so every partition got one batch: two for each owner.
    const delivered = (owner: string): number =>
      valueOf(scraped, 'speedlayer_routed_batches_delivered_total', { owner });
    expect([delivered('shard-a'), delivered('shard-b')]).toEqual([2, 2]);
    expect(valueOf(scraped, 'speedlayer_routed_batches_queued')).toBe(0);
    expect(valueOf(scraped, 'speedlayer_route_retries_total', { owner: 'shard-b' })).toBe(0);
    expect(valueOf(scraped, 'speedlayer_shard_events_applied_total')).toBe(
      ofShard(validIds, 'shard-a'),
    );
    expect(valueOf(scraped, 'speedlayer_shard_known_users')).toBe(ofShard(validIds, 'shard-a'));
    const scrapedB = await scrape(b.url);
    expect(valueOf(scrapedB, 'speedlayer_shard_events_applied_total')).toBe(
      ofShard(validIds, 'shard-b'),
    );
    expect(valueOf(scrapedB, 'speedlayer_ingest_events_accepted_total')).toBe(0);

    // shard-b down: its partitions' batches wait and are retried; shard-a's go through.
    await shardB.stop();
    const later = Array.from({ length: 10 }, (_, i) => event(`late-${i}`, START + HOUR + i * MIN));
    const waiting = client.send({
      batch_id: 'metrics-2',
      source: 'metrics-test',
      events: later,
      unreadable: [],
    });
    await until('retries against shard-b', async () => {
      scraped = await scrape(a.url);
      return valueOf(scraped, 'speedlayer_route_retries_total', { owner: 'shard-b' }) >= 2;
    });
    expect(valueOf(scraped, 'speedlayer_routed_batches_queued')).toBe(2);
    expect(delivered('shard-a')).toBe(4);
    expect(delivered('shard-b')).toBe(2);
    expect(valueOf(scraped, 'speedlayer_ingest_events_accepted_total')).toBe(40);
    expect(valueOf(scraped, 'speedlayer_route_retries_total', { owner: 'shard-a' })).toBe(0);

    shardB = await startShard(dir, 'shard-b', b.metrics, { port: portB });
    expect((await waiting).accepted).toBe(10);
    scraped = await scrape(a.url);
    expect(valueOf(scraped, 'speedlayer_ingest_batches_total', { outcome: 'acknowledged' })).toBe(
      2,
    );
    expect(valueOf(scraped, 'speedlayer_ingest_events_accepted_total')).toBe(50);
    expect([delivered('shard-a'), delivered('shard-b')]).toEqual([4, 4]);
    expect(valueOf(scraped, 'speedlayer_routed_batches_queued')).toBe(0);
    const laterIds = later.map((e) => e.user_id);
    const appliedA = valueOf(scraped, 'speedlayer_shard_events_applied_total');
    const appliedB = valueOf(await scrape(b.url), 'speedlayer_shard_events_applied_total');
    expect(appliedA).toBe(ofShard([...validIds, ...laterIds], 'shard-a'));
    expect(appliedB).toBe(ofShard([...validIds, ...laterIds], 'shard-b'));
    expect(appliedA + appliedB).toBe(50);
    expect(valueOf(scraped, 'speedlayer_shard_duplicate_batches_total')).toBe(0);

    // Refused batches count no event.
    const noId = { batch_id: '', source: 'metrics-test', events: later, unreadable: [] };
    await expect(client.send(noId)).rejects.toMatchObject({ code: 3 }); // INVALID_ARGUMENT
    await router.close();
    const closed = { batch_id: 'metrics-3', source: 'metrics-test', events: later, unreadable: [] };
    await expect(client.send(closed)).rejects.toMatchObject({ code: 14 }); // UNAVAILABLE
    scraped = await scrape(a.url);
    const outcome = (o: string): number =>
      valueOf(scraped, 'speedlayer_ingest_batches_total', { outcome: o });
    expect([
      outcome('acknowledged'),
      outcome('invalid_argument'),
      outcome('unavailable'),
      outcome('internal'),
    ]).toEqual([2, 1, 1, 0]);
    expect(valueOf(scraped, 'speedlayer_ingest_events_accepted_total')).toBe(50);
  });
});
