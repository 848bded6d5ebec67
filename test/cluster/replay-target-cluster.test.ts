/**
 * `speedlayer replay --target` into a real cluster: a LocalCluster of one
 * `speedlayer shard --postgres --watermark event-time` (P = 4) and its coordinators over
 * a real etcd and the real PostgreSQL server (skipped without
 * SPEEDLAYER_TEST_POSTGRES_URL). Scenarios:
 * - the shipped web-server log replayed through the shard's Ingest port with --wait: when
 *   it returns, the published rows equal expected-counts.csv, all final; the same replay
 *   again adds no version;
 * - a replay whose node is stopped (SIGSTOP) right at the first acknowledgement, then
 *   SIGKILLed and restarted: the client reconnects and resends what was not
 *   acknowledged, the published rows equal the brute-force recount, and the records the
 *   reader could not read are in the cluster's dead letters with their reasons.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { LocalCluster } from '../../cluster/local-cluster.js';
import { runTargetReplay } from '../../src/cli/replay-target.js';
import { silentLogger } from '../../src/observability/index.js';
import type { CurrentRow } from '../../src/sink/index.js';
import { Warehouse } from '../../src/sink/warehouse.js';
import { runCli } from '../support/cli.js';
import { rng } from '../support/events.js';
import { bruteForceCounts, diffCounts, rowsToCounts, type Counts } from '../support/oracle.js';
import { postgresTestUrl } from '../support/postgres.js';

const APACHE = fileURLToPath(new URL('../../datasets/elastic-apache-logs/', import.meta.url));
const QUIET = ['--no-progress', '--log-level', 'silent'];
const PUBLISH_MS = 30_000;
/** Monday 2026-03-23. */
const MONDAY = Date.UTC(2026, 2, 23);

const postgresUrl = postgresTestUrl();
let cluster: LocalCluster | undefined;
let warehouse: Warehouse | undefined;
let dir: string | undefined;

beforeAll(async () => {
  if (postgresUrl === undefined) return;
  cluster = await LocalCluster.start({
    shards: 1,
    partitions: 4,
    port: 0,
    postgresUrl,
    watermark: 'event-time',
    roundIntervalMs: 200,
    leaseTtlMs: 3_000,
    // Under the hook's timeout, so that a slow start stops what it started.
    readyTimeoutMs: 100_000,
  });
  warehouse = await Warehouse.open({ postgresUrl, schema: cluster.postgresSchema });
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'speedlayer-replay-cluster-'));
}, 120_000);

afterAll(async () => {
  await warehouse?.close();
  await cluster?.stop();
  if (dir !== undefined) await fs.rm(dir, { recursive: true, force: true });
});

/** The final rows of the periods in [fromMs, toMs), once there are `size` of them. */
async function finalRows(fromMs: number, toMs: number, size: number): Promise<CurrentRow[]> {
  const deadline = Date.now() + PUBLISH_MS;
  for (;;) {
    const rows = (await (warehouse as Warehouse).queryCurrent({})).filter(
      (r) => r.periodStartMs >= fromMs && r.periodStartMs < toMs,
    );
    if (rows.length === size && rows.every((r) => r.status !== 'provisional')) return rows;
    if (Date.now() > deadline) {
      throw new Error(`${rows.length} of ${size} periods published in ${PUBLISH_MS} ms`);
    }
    await sleep(200);
  }
}

async function expectedCounts(): Promise<Counts> {
  const text = await fs.readFile(path.join(APACHE, 'expected-counts.csv'), 'utf8');

  return new Map(
    text
      .trimEnd()
      .split('\n')
      .slice(1)
      .map((line) => {
        const [type, start, n] = line.split(',');
        return [`${type},${start}`, Number(n)];
      }),
  );
}

describe.skipIf(postgresUrl === undefined)('speedlayer replay --target into a cluster', () => {
  it('publishes the web-server log as expected-counts.csv, and a second replay adds no version', async () => {
    const c = cluster as LocalCluster;
    const args = ['replay', path.join(APACHE, 'apache_logs'), '--format', 'combined'];
    const first = await runCli([...args, '--target', c.addresses.ingest, '--wait', ...QUIET]);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toContain('records read:     10000\n');
    expect(first.stdout).toContain('accepted:         10000\n');
    // The log ends on Wednesday 2015-05-20: Finish closes its ISO week (and 10 min of lateness).
    expect(first.stdout).toContain('watermark:        2015-05-25T00:10:00.000Z');
    expect(first.stdout).toMatch(/published: {8}every period before the watermark \(round at /);

    // --wait returned once they were published: read at once, no polling.
    const expected = await expectedCounts();
    const from = Date.UTC(2015, 0, 1);
    const to = Date.UTC(2016, 0, 1);
    const rows = (await (warehouse as Warehouse).queryCurrent({})).filter(
      (r) => r.periodStartMs >= from && r.periodStartMs < to,
    );
    expect(diffCounts(expected, rowsToCounts(rows))).toEqual([]);
    expect(rows.every((r) => r.status === 'final' && r.version === 1)).toBe(true);

    const versions = (await (warehouse as Warehouse).queryHistory({})).length;
    const second = await runCli([...args, '--target', c.addresses.ingest, ...QUIET]);
    expect(second.code).toBe(0);
    expect(second.stdout).toContain('accepted:         10000\n');
    await sleep(2_000); // Ten rounds: time enough for a version that should not come.
    expect((await (warehouse as Warehouse).queryHistory({})).length).toBe(versions);
    expect(rowsToCounts(await finalRows(from, to, expected.size))).toEqual(expected);
  });

  it('resends what a killed node had not acknowledged, and the unreadable records reach the dead letters', async () => {
    const c = cluster as LocalCluster;
    const next = rng(11);
    const events = Array.from({ length: 3_000 }, (_, i) => ({
      userId: `v${Math.floor(next() * 400)}`,
      eventMs: MONDAY + Math.floor((i / 3_000) * 2 * 86_400_000),
    }));
    const lines = events.map((e) =>
      JSON.stringify({ u: e.userId, t: new Date(e.eventMs).toISOString() }),
    );
    lines.splice(100, 0, '{not json');
    lines.splice(1_700, 0, JSON.stringify({ u: 'no-time' }));
    const file = path.join(dir as string, 'events.ndjson');
    await fs.writeFile(file, lines.join('\n') + '\n');

    const shard = c.shards[0] as string;
    let outage: Promise<void> | undefined;
    const summary = await runTargetReplay({
      paths: [file],
      read: { userField: 'u', timeField: 't', batchSize: 200 },
      target: c.addresses.ingest,
      logger: silentLogger(),
      client: { initialBackoffMs: 50, maxBackoffMs: 500 },
      onProgress: () => {
        if (outage !== undefined) return;
        // At the first acknowledgement: the node answers nothing more, then dies and comes back.
        c.pause(shard);
        outage = (async () => {
          await c.kill(shard, 'SIGKILL');
          await c.restart(shard);
        })();
      },
    });
    await outage;

    expect(summary.reconnects).toBeGreaterThan(0);
    expect(summary).toMatchObject({ records: 3_002, accepted: 3_000, interrupted: false });
    expect(summary.rejected).toEqual({ malformed: 1, invalid_time: 1 });

    const expected = bruteForceCounts(events);
    const rows = await finalRows(MONDAY, MONDAY + 7 * 86_400_000, expected.size);
    expect(diffCounts(expected, rowsToCounts(rows))).toEqual([]);

    const letters = await (warehouse as Warehouse).rejectSummary(5);
    expect(letters.counts).toMatchObject({ malformed: 1, invalid_time: 1 });
    expect(letters.examples.malformed?.map((l) => [l.line, l.raw])).toEqual([[101, '{not json']]);
    expect(letters.examples.invalid_time?.map((l) => l.line)).toEqual([1_701]);
  });
});
