/**
 * The Git project's commit history (81,966 commits over 21 years, author date as event
 * time, in file order: most periods get late commits and are restated) through a local
 * cluster of real processes (etcd, three `speedlayer shard --postgres --watermark
 * event-time --restatement-horizon 10000d`, two `speedlayer coordinator`, P = 6) and
 * through the single process, on the real PostgreSQL server (skipped without
 * SPEEDLAYER_TEST_POSTGRES_URL).
 *
 * How many restated versions a period gets depends on how many rounds saw its late
 * events, so two runs only write the same history under the same round schedule. The
 * single process replays with one round at the end (--round-interval 24h); in the
 * cluster both coordinators are stopped during `speedlayer replay --target` and started
 * after it, so that the first round of the new leader publishes everything. Scenario:
 * - the current rows equal expected-counts.csv and the single process's;
 * - the version histories are identical (period, version, count, status, reason),
 *   versions run 1..n, and every period with late commits has its restatement;
 * - the dead letters per reason are the same (none: the horizon takes every commit).
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { LocalCluster } from '../../cluster/local-cluster.js';
import { Warehouse } from '../../src/sink/warehouse.js';
import {
  GIT_DIR,
  GIT_FILE,
  GIT_FLAGS,
  comparable,
  dropSchema,
  eventually,
  expectedCounts,
  latestCounts,
  runSpeedlayer,
  sortVersions,
  versionProblems,
  type ComparableVersion,
} from '../support/cluster-runs.js';
import { diffCounts, rowsToCounts } from '../support/oracle.js';
import { postgresTestUrl } from '../support/postgres.js';

const P = 6;
const HORIZON = ['--restatement-horizon', '10000d'];
const QUIET = ['--no-progress', '--log-level', 'warn'];
const postgresUrl = postgresTestUrl();
const singleSchema = `sl_git_single_${Math.random().toString(36).slice(2, 10)}`;

interface SingleProcess {
  readonly history: ComparableVersion[];
  readonly rejects: Record<string, number>;
}

let cluster: LocalCluster | undefined;
let warehouse: Warehouse | undefined;
let workDir: string | undefined;
let single: SingleProcess | undefined;

async function replaySingleProcess(dir: string): Promise<SingleProcess> {
  const run = await runSpeedlayer([
    'replay',
    GIT_FILE,
    ...GIT_FLAGS,
    ...HORIZON,
    ...['--partitions', String(P), '--round-interval', '24h', '--data-dir', dir],
    ...['--postgres', postgresUrl as string, '--postgres-schema', singleSchema],
    ...QUIET,
  ]).done;
  expect(run.code, run.stderr).toBe(0);
  expect(run.stdout).toContain('accepted:         81966\n');

  const store = await Warehouse.open({ postgresUrl: postgresUrl as string, schema: singleSchema });
  try {
    return {
      history: sortVersions((await store.queryHistory()).map(comparable)),
      rejects: { ...(await store.rejectSummary()).counts },
    };
  } finally {
    await store.close();
  }
}

beforeAll(async () => {
  if (postgresUrl === undefined) return;
  workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'speedlayer-git-'));
  const starting = LocalCluster.start({
    shards: 3,
    partitions: P,
    port: 0,
    postgresUrl,
    watermark: 'event-time',
    roundIntervalMs: 200,
    leaseTtlMs: 3000,
    extraArgs: { shard: HORIZON },
  });
  [cluster, single] = await Promise.all([starting, replaySingleProcess(workDir)]);
  warehouse = await Warehouse.open({ postgresUrl, schema: cluster.postgresSchema });
}, 120_000);

afterAll(async () => {
  await warehouse?.close();
  await cluster?.stop();
  if (postgresUrl !== undefined) await dropSchema(postgresUrl, singleSchema);
  if (workDir !== undefined) await fs.rm(workDir, { recursive: true, force: true });
}, 60_000);

describe.skipIf(postgresUrl === undefined)('git-git-commits through a cluster', () => {
  it('writes the history of the single process, and the rows of expected-counts.csv', async () => {
    const c = cluster as LocalCluster;
    const w = warehouse as Warehouse;
    const s = single as SingleProcess;
    const expected = expectedCounts(GIT_DIR);
    expect(latestCounts(s.history)).toEqual(expected);
    expect(s.history.some((v) => v.status === 'restated')).toBe(true);

    // No round during the replay: the coordinators stop, and nothing runs them.
    for (const name of c.coordinators) {
      expect(await c.kill(name, 'SIGTERM')).toEqual({ code: 0, signal: null });
    }
    expect(await c.leader()).toBeUndefined();

    const replay = await runSpeedlayer([
      'replay',
      GIT_FILE,
      ...GIT_FLAGS,
      '--target',
      c.addresses.ingest,
      ...QUIET,
    ]).done;
    expect(replay.code, replay.stderr).toBe(0);
    expect(replay.stdout).toContain('accepted:         81966\n');
    expect(replay.stdout).toMatch(/rejected: +0\n/);
    expect(await w.queryHistory()).toEqual([]);

    for (const name of c.coordinators) await c.restart(name);
    const history = await eventually(
      `${s.history.length} versions in the cluster's history`,
      async () => {
        const rows = await w.queryHistory();
        return rows.length >= s.history.length ? rows : undefined;
      },
      90_000,
      1000,
    );
    const versions = sortVersions(history.map(comparable));
    expect(versions.length).toBe(s.history.length);
    expect(versions).toEqual(s.history);
    expect(versionProblems(versions)).toEqual([]);
    // One leader wrote it all, under the ring the cluster started with.
    expect(new Set(history.map((r) => r.ringEpoch))).toEqual(new Set([1]));
    expect(new Set(history.map((r) => r.fencingToken)).size).toBe(1);

    const current = rowsToCounts(await w.queryCurrent());
    expect(diffCounts(expected, current)).toEqual([]);
    expect(current).toEqual(expected);

    expect({ ...(await w.rejectSummary()).counts }).toEqual(s.rejects);
    expect(s.rejects).toEqual({});
  });
});
