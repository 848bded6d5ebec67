/**
 * Failures during a replay into a local cluster of real processes (etcd, three
 * `speedlayer shard --postgres --watermark event-time --restatement-horizon 10000d`,
 * two `speedlayer coordinator`, P = 6, rounds every 200 ms, leases of 3 s) on the real
 * PostgreSQL server (skipped without SPEEDLAYER_TEST_POSTGRES_URL). The input is the Git
 * project's commit history in file order. Scenario:
 * - the leader publishes its first commits (a file of the first rows, replayed first);
 * - `speedlayer replay` of the whole history runs as a child process; once it has
 *   started sending, shard-3 (not the ingest address) and the leading coordinator are
 *   SIGKILLed, and shard-3 is restarted 2.5 s later;
 * - the replay completes with every record acknowledged (the ingest node retried the
 *   batches of shard-3's partitions); the standby takes over with a higher fencing token,
 *   and every version written after the kill carries it;
 * - the current rows equal expected-counts.csv (so no acknowledged event was lost), each
 *   is its period's latest version, and every period's versions run 1..n, without a
 *   duplicate or a gap.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { gunzipSync } from 'node:zlib';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { LocalCluster } from '../../cluster/local-cluster.js';
import type { VersionRow } from '../../src/sink/index.js';
import { Warehouse } from '../../src/sink/warehouse.js';
import {
  GIT_DIR,
  GIT_FILE,
  GIT_FLAGS,
  comparable,
  eventually,
  expectedCounts,
  latestCounts,
  periodKeyOf,
  runSpeedlayer,
  untilLogged,
  sortVersions,
  versionProblems,
} from '../support/cluster-runs.js';
import { diffCounts, rowsToCounts } from '../support/oracle.js';
import { postgresTestUrl } from '../support/postgres.js';

const P = 6;
/** Rows of the first file: about a year of commits. */
const SLICE = 5000;
const postgresUrl = postgresTestUrl();

let cluster: LocalCluster | undefined;
let warehouse: Warehouse | undefined;
let workDir: string | undefined;
let sliceFile: string | undefined;

beforeAll(async () => {
  if (postgresUrl === undefined) return;
  cluster = await LocalCluster.start({
    shards: 3,
    partitions: P,
    port: 0,
    postgresUrl,
    watermark: 'event-time',
    roundIntervalMs: 200,
    leaseTtlMs: 3000,
    extraArgs: { shard: ['--restatement-horizon', '10000d'] },
  });
  warehouse = await Warehouse.open({ postgresUrl, schema: cluster.postgresSchema });

  workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'speedlayer-failover-'));
  sliceFile = path.join(workDir, 'first-commits.csv');
  const lines = gunzipSync(await fs.readFile(GIT_FILE))
    .toString('utf8')
    .split('\n');
  await fs.writeFile(sliceFile, `${lines.slice(0, SLICE + 1).join('\n')}\n`);
}, 90_000);

afterAll(async () => {
  await warehouse?.close();
  await cluster?.stop();
  if (workDir !== undefined) await fs.rm(workDir, { recursive: true, force: true });
}, 60_000);

function tokenOf(line: Readonly<Record<string, unknown>>): number {
  return Number(line.fencingToken);
}

describe.skipIf(postgresUrl === undefined)('a replay into a cluster that loses processes', () => {
  it('completes exactly through a SIGKILLed shard and a SIGKILLed leader', async () => {
    const c = cluster as LocalCluster;
    const w = warehouse as Warehouse;
    const expected = expectedCounts(GIT_DIR);
    const leader = (await c.leader()) as string;
    const standby = c.coordinators.find((name) => name !== leader) as string;
    const firstToken = tokenOf(
      await c.waitForLog(leader, (l) => l.msg === 'leadership acquired', 1000),
    );
    expect(c.addresses.ingest).toBe(c.addresses.shards['shard-1']);
    const target = ['--target', c.addresses.ingest, '--no-progress'];

    // The leader publishes the first commits (a file of the first SLICE rows).
    const first = await runSpeedlayer(['replay', sliceFile as string, ...GIT_FLAGS, ...target])
      .done;
    expect(first.code, first.stderr).toBe(0);
    await c.waitForLog(leader, (l) => l.msg === 'round published', 30_000);
    const published = (await w.queryHistory()).length;
    expect(published).toBeGreaterThan(0);

    // The whole history; once it sends, shard-3 (not the ingest node) and the leader die.
    const ingestMark = c.process('shard-1').mark();
    const replay = runSpeedlayer([
      'replay',
      GIT_FILE,
      ...GIT_FLAGS,
      ...target,
      '--log-level',
      'info',
    ]);
    await untilLogged(replay, 'replay started');
    expect(await c.kill('shard-3')).toEqual({ code: null, signal: 'SIGKILL' });
    expect(await c.kill(leader)).toEqual({ code: null, signal: 'SIGKILL' });
    const killedAtMs = Date.now();
    // No batch can be acknowledged without shard-3, nor the replay finish.
    expect(replay.child.exitCode).toBeNull();
    // Out for 2.5 s: the node logs an owner after 1 s of failed retries, and its backoff
    // (at most 1.6 s between tries so far) is sure to try once more in that time.
    await sleep(2500);
    expect(replay.child.exitCode).toBeNull();
    await c.restart('shard-3');

    const acquired = await c.waitForLog(standby, (l) => l.msg === 'leadership acquired', 20_000);
    const secondToken = tokenOf(acquired);
    expect(secondToken).toBeGreaterThan(firstToken);
    expect(await c.leader()).toBe(standby);

    const { code, stdout, stderr } = await replay.done;
    expect(code, stderr).toBe(0);
    expect(stdout).toContain('records read:     81966\n');
    expect(stdout).toContain('accepted:         81966\n');
    // The ingest node kept the batches for shard-3 and delivered them once it was back.
    expect(
      c
        .process('shard-1')
        .lines(ingestMark)
        .some((l) => l.msg === 'owner unreachable; retrying'),
    ).toBe(true);

    const current = await eventually(
      'the current rows to equal expected-counts.csv',
      async () => {
        const counts = rowsToCounts((await w.queryCurrent()).filter((r) => r.version >= 1));
        return diffCounts(expected, counts).length === 0 ? counts : undefined;
      },
      90_000,
      1000,
    );
    expect(current).toEqual(expected);
    await sleep(1000); // A few more rounds: nothing more may be written.
    const rows = await w.queryHistory();
    expectWellVersioned(rows);
    expect(latestCounts(rows.map(comparable))).toEqual(expected);
    // Each current row is its period's latest version.
    const latest = new Map(sortVersions(rows.map(comparable)).map((v) => [v.period, v.version]));
    const versionsNow = (await w.queryCurrent()).map((r): [string, number] => [
      periodKeyOf(r.periodType, r.periodStartMs),
      r.version,
    ]);
    expect(new Map(versionsNow)).toEqual(latest);

    // The fence: the first leader's rows, then only the standby's, from its takeover on.
    expect(new Set(rows.map((r) => r.fencingToken))).toEqual(new Set([firstToken, secondToken]));
    const byFirst = rows.filter((r) => r.fencingToken === firstToken);
    const bySecond = rows.filter((r) => r.fencingToken === secondToken);
    expect(byFirst.length).toBeGreaterThanOrEqual(published);
    expect(bySecond.length).toBeGreaterThan(0);
    const lastOfFirst = Math.max(...byFirst.map((r) => r.writtenAtMs));
    expect(lastOfFirst).toBeLessThanOrEqual(killedAtMs);
    expect(Math.min(...bySecond.map((r) => r.writtenAtMs))).toBeGreaterThanOrEqual(lastOfFirst);
    expect(new Set(rows.map((r) => r.ringEpoch))).toEqual(new Set([1]));
  });
});

/** Versions 1..n per period, and statuses that fit them. */
function expectWellVersioned(rows: readonly VersionRow[]): void {
  const versions = rows.map(comparable);
  expect(versionProblems(versions)).toEqual([]);
  for (const v of versions) expect(v.status).toBe(v.version === 1 ? 'final' : 'restated');
}
