/**
 * The web-server log dataset through a local cluster of real processes (etcd, three
 * `speedlayer shard --postgres --watermark event-time`, two `speedlayer coordinator`,
 * P = 6, rounds every 200 ms) and through the single process, on the real PostgreSQL
 * server (skipped without SPEEDLAYER_TEST_POSTGRES_URL). Scenarios:
 * - the ingest port lists Ingest, Query, Shard, Coordinator and health by server
 *   reflection;
 * - `speedlayer replay apache_logs --target <ingest>` as a child process: the current
 *   rows and the version history read back through a Query client built from proto/
 *   equal the single process's (`speedlayer replay` embedded, same P and settings) and
 *   expected-counts.csv; a WatchVersions stream opened before the replay delivered
 *   each version once;
 * - a second file with one late event and one record of each reject reason: the late
 *   event restates its hour, day and week identically in both (version 2, same reason),
 *   and the dead letters per reason are the same; the stream delivered the restatements
 *   once too.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { LocalCluster } from '../../cluster/local-cluster.js';
import { Warehouse } from '../../src/sink/warehouse.js';
import { fetchStatus } from '../../src/transport/status-client.js';
import { checkHealth, listServices } from '../support/grpc-probes.js';
import {
  APACHE_DIR,
  APACHE_FILE,
  APACHE_FLAGS,
  comparable,
  dropSchema,
  eventually,
  expectedCounts,
  latestCounts,
  periodKeyOf,
  runSpeedlayer,
  sortVersions,
  statusName,
  versionProblems,
  type ComparableVersion,
} from '../support/cluster-runs.js';
import { bruteForceCounts, diffCounts, periodsOfTime } from '../support/oracle.js';
import { postgresTestUrl } from '../support/postgres.js';
import { ProtoQueryClient, type VersionWatch } from '../support/proto-client.js';

const P = 6;
const postgresUrl = postgresTestUrl();
const embeddedSchema = `sl_apache_single_${Math.random().toString(36).slice(2, 10)}`;
const QUIET = ['--no-progress', '--log-level', 'warn'];
const LATE_USER = 'late-visitor';
const LATE_MS = Date.parse('2015-05-19T10:30:00Z');
/** One late event, then one record for each reject reason. */
const SECOND_FILE = [
  JSON.stringify({ user: LATE_USER, ts: '2015-05-19T10:30:00Z' }),
  '{not json',
  JSON.stringify({ user: '', ts: '2015-05-19T10:00:00Z' }),
  JSON.stringify({ user: 'no-time' }),
  JSON.stringify({ user: 'from-the-future', ts: '2036-01-01T00:00:00Z' }),
  JSON.stringify({ user: 'too-old', ts: '2015-01-01T00:00:00Z' }),
];
const NDJSON_FLAGS = ['--user-field', 'user', '--time-field', 'ts'];

interface SingleProcess {
  /** The history after the log, and after the second file. */
  readonly afterLog: ComparableVersion[];
  readonly afterSecond: ComparableVersion[];
  readonly rejects: Record<string, number>;
  readonly secondStdout: string;
}

let cluster: LocalCluster | undefined;
let client: ProtoQueryClient | undefined;
let workDir: string | undefined;
let secondFile: string | undefined;
let single: SingleProcess | undefined;
let watch: VersionWatch | undefined;

/** The single process: the log, then the second file, into a schema of its own. */
async function replaySingleProcess(dir: string, second: string): Promise<SingleProcess> {
  const store = [
    ...['--data-dir', path.join(dir, 'single'), '--partitions', String(P)],
    ...['--postgres', postgresUrl as string, '--postgres-schema', embeddedSchema],
  ];
  const log = await runSpeedlayer(['replay', APACHE_FILE, ...APACHE_FLAGS, ...store, ...QUIET])
    .done;
  expect(log.code, log.stderr).toBe(0);
  const warehouse = await Warehouse.open({
    postgresUrl: postgresUrl as string,
    schema: embeddedSchema,
  });
  try {
    const afterLog = sortVersions((await warehouse.queryHistory()).map(comparable));
    const more = await runSpeedlayer(['replay', second, ...NDJSON_FLAGS, ...store, ...QUIET]).done;
    expect(more.code, more.stderr).toBe(0);
    const afterSecond = sortVersions((await warehouse.queryHistory()).map(comparable));
    const rejects = { ...(await warehouse.rejectSummary()).counts } as Record<string, number>;

    return { afterLog, afterSecond, rejects, secondStdout: more.stdout };
  } finally {
    await warehouse.close();
  }
}

beforeAll(async () => {
  if (postgresUrl === undefined) return;
  workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'speedlayer-apache-'));
  secondFile = path.join(workDir, 'second.ndjson');
  await fs.writeFile(secondFile, `${SECOND_FILE.join('\n')}\n`);

  const starting = LocalCluster.start({
    shards: 3,
    partitions: P,
    port: 0,
    postgresUrl,
    watermark: 'event-time',
    roundIntervalMs: 200,
    leaseTtlMs: 3000,
  });
  [cluster, single] = await Promise.all([starting, replaySingleProcess(workDir, secondFile)]);
  client = new ProtoQueryClient(cluster.addresses.ingest);
}, 120_000);

afterAll(async () => {
  watch?.cancel();
  client?.close();
  await cluster?.stop();
  if (postgresUrl !== undefined) await dropSchema(postgresUrl, embeddedSchema);
  if (workDir !== undefined) await fs.rm(workDir, { recursive: true, force: true });
}, 60_000);

/** The cluster's history through the proto/ client, comparable and sorted. */
async function clusterHistory(): Promise<ComparableVersion[]> {
  return sortVersions((await (client as ProtoQueryClient).history()).map(comparable));
}

/** Waits until the cluster has written `n` versions (and none is provisional any more). */
async function untilVersions(n: number): Promise<ComparableVersion[]> {
  return eventually(`${n} versions in the cluster's history`, async () => {
    const history = await clusterHistory();
    return history.length >= n ? history : undefined;
  });
}

describe.skipIf(postgresUrl === undefined)('elastic-apache-logs through a cluster', () => {
  it('lists Ingest, Query, Shard, Coordinator and health on the ingest port', async () => {
    const c = cluster as LocalCluster;
    const services = await listServices(c.addresses.ingest);
    expect(services).toEqual(
      expect.arrayContaining([
        'grpc.health.v1.Health',
        'speedlayer.v1.Coordinator',
        'speedlayer.v1.Ingest',
        'speedlayer.v1.Query',
        'speedlayer.v1.Shard',
      ]),
    );
    for (const service of ['', 'speedlayer.v1.Ingest', 'speedlayer.v1.Query']) {
      expect(await checkHealth(c.addresses.ingest, service)).toBe('SERVING');
    }
    // Coordinator.Status on the shard's port answers from the leader's record in etcd.
    const leader = await c.leader();
    // The leader's first rounds may run while a shard is still opening its partitions.
    const view = await eventually('a status record with a complete round', async () => {
      const v = await fetchStatus(c.addresses.ingest);
      return v.lastRoundAtMs === undefined || v.missingPartitions.length > 0 ? undefined : v;
    });
    expect(view).toMatchObject({ answeredBy: 'shard-1', leaderId: leader, ringEpoch: 1 });
    expect(view.partitionCount).toBe(P);
    expect(view.missingPartitions).toEqual([]);
  });

  it('publishes the rows and history of the single process and of expected-counts.csv', async () => {
    const c = cluster as LocalCluster;
    const q = client as ProtoQueryClient;
    const s = single as SingleProcess;
    const expected = expectedCounts(APACHE_DIR);
    expect(expected.size).toBe(90);
    // The single process: one final version per period, exactly the expected counts.
    expect(latestCounts(s.afterLog)).toEqual(expected);
    expect(s.afterLog.every((v) => v.version === 1 && v.status === 'final')).toBe(true);

    watch = q.watch();
    await watch.opened;
    const replay = runSpeedlayer([
      'replay',
      APACHE_FILE,
      ...APACHE_FLAGS,
      '--target',
      c.addresses.ingest,
      ...QUIET,
    ]);
    const { code, stdout, stderr } = await replay.done;
    expect(code, stderr).toBe(0);
    expect(stdout).toContain('accepted:         10000\n');
    expect(stdout).toMatch(/rejected: +0\n/);

    const history = await untilVersions(s.afterLog.length);
    expect(history).toEqual(s.afterLog);
    expect(versionProblems(history)).toEqual([]);

    const current = await q.current();
    const counts = new Map(
      current.map((r) => [periodKeyOf(r.period.type, r.period.start_ms), r.distinct_users]),
    );
    expect(diffCounts(expected, counts)).toEqual([]);
    expect(counts).toEqual(expected);
    for (const row of current) {
      expect(row.version).toBe(1);
      expect(statusName(row.status)).toBe('final');
    }

    // The stream opened before the replay has delivered every version, each once.
    await eventually('the stream to deliver every version', async () =>
      watch !== undefined && watch.rows.length >= history.length ? true : undefined,
    );
    expectDeliveredOnce(watch, history);
  });

  it('restates identically after a late event, and keeps the same dead letters', async () => {
    const c = cluster as LocalCluster;
    const q = client as ProtoQueryClient;
    const s = single as SingleProcess;
    // The late event restates its hour, day and week: version 2 of each, in both.
    const restated = s.afterSecond.filter((v) => v.version === 2);
    expect(restated.map((v) => v.period).sort()).toEqual(periodsOfTime(LATE_MS).sort());
    for (const v of restated) expect(v.status).toBe('restated');
    expect(s.secondStdout).toContain('accepted:         1\n');

    const replay = runSpeedlayer([
      'replay',
      secondFile as string,
      ...NDJSON_FLAGS,
      '--target',
      c.addresses.ingest,
      ...QUIET,
    ]);
    const { code, stdout, stderr } = await replay.done;
    expect(code, stderr).toBe(0);
    expect(stdout).toContain('accepted:         1\n');
    expect(stdout).toContain('rejected:         5\n');

    const history = await untilVersions(s.afterSecond.length);
    expect(history).toEqual(s.afterSecond);
    expect(versionProblems(history)).toEqual([]);

    // Exact: the log's users plus the late visitor.
    const events = (await readApacheEvents()).concat({ userId: LATE_USER, eventMs: LATE_MS });
    const current = await q.current();
    const counts = new Map(
      current.map((r) => [periodKeyOf(r.period.type, r.period.start_ms), r.distinct_users]),
    );
    expect(diffCounts(bruteForceCounts(events), counts)).toEqual([]);

    const rejects = Object.fromEntries(
      (await q.rejects()).map((r) => [
        r.reason.replace('REJECT_REASON_', '').toLowerCase(),
        r.count,
      ]),
    );
    expect(rejects).toEqual({
      malformed: 1,
      invalid_user_id: 1,
      invalid_time: 1,
      future: 1,
      too_old: 1,
    });
    expect(rejects).toEqual(s.rejects);

    await eventually('the stream to deliver the restatements', async () =>
      watch !== undefined && watch.rows.length >= history.length ? true : undefined,
    );
    expectDeliveredOnce(watch as VersionWatch, history);
  });
});

/** Every (period, version) of the history came over the stream exactly once, and no other. */
function expectDeliveredOnce(stream: VersionWatch, history: readonly ComparableVersion[]): void {
  const pairs = stream.rows.map((row) => {
    const v = comparable(row);
    return `${v.period}#${v.version}`;
  });
  expect(pairs.length).toBe(new Set(pairs).size);
  expect(new Set(pairs)).toEqual(new Set(history.map((v) => `${v.period}#${v.version}`)));
  // Each delivered row carries the numbers the history has.
  const byPair = new Map(history.map((v) => [`${v.period}#${v.version}`, v]));
  for (const row of stream.rows) {
    const v = comparable(row);
    expect(v).toEqual(byPair.get(`${v.period}#${v.version}`));
  }
}

/** `client - - [17/May/2015:10:05:03 +0000]`: the user and the request time. */
const APACHE_LINE = /^(\S+) \S+ \S+ \[(\d\d)\/(\w{3})\/(\d{4}):(\d\d:\d\d:\d\d) ([+-]\d{4})\]/;

/** The log's (user, time) pairs, read independently of the engine's reader. */
async function readApacheEvents(): Promise<{ userId: string; eventMs: number }[]> {
  const text = await fs.readFile(APACHE_FILE, 'utf8');

  return text
    .trimEnd()
    .split('\n')
    .map((line) => {
      const m = APACHE_LINE.exec(line);
      if (m === null) throw new Error(`unreadable line: ${line}`);
      const [user, day, month, year, time, offset] = m.slice(1) as [string, ...string[]];
      const eventMs = Date.parse(`${day} ${month} ${year} ${time} ${offset}`);
      if (Number.isNaN(eventMs)) throw new Error(`unreadable time: ${line}`);

      return { userId: user, eventMs };
    });
}
