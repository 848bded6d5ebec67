/**
 * The local cluster launcher with real processes: etcd, `speedlayer shard` and
 * `speedlayer coordinator`, over the real PostgreSQL server (skipped without
 * SPEEDLAYER_TEST_POSTGRES_URL). Two shards, P = 4.
 * Scenarios:
 * - LocalCluster: each shard answers SERVING for Shard, Ingest and Query to gRPC health
 *   checks, holds its half of the ring in etcd and says so in its Prometheus metrics;
 *   one coordinator leads, the other stands by; both serve the Coordinator service and
 *   Prometheus metrics;
 * - a SIGKILLed shard is down, and restart() brings it back on the same address with the
 *   same partitions, SERVING;
 * - pausing the leader (SIGSTOP) lets the standby take over once the lease expires; the
 *   resumed one learns it lost;
 * - stop() ends every process with exit code 0 (etcd by SIGTERM), leaves no pid alive,
 *   drops the schema and removes the temporary directory;
 * - over a kept data directory, a second launch resumes the same cluster (name, ring,
 *   schema) and a launch with another P is refused;
 * - `npm run cluster -- --shards 2 --allowed-lateness 0s --restatement-horizon 400d` (on a free port)
 *   prints each part with its pid and a ready line, hands the settings to every shard and
 *   coordinator, and
 *   on SIGTERM stops them all and exits 0.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';

import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { LocalCluster } from '../../cluster/local-cluster.js';
import { freePorts } from '../../cluster/ports.js';
import { EtcdCoordinationStore, partitionsOf, type Ring } from '../../src/ring/index.js';
import { dropSchema } from '../support/cluster-runs.js';
import { checkHealth } from '../support/grpc-probes.js';
import { postgresTestUrl } from '../support/postgres.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const P = 4;
const postgresUrl = postgresTestUrl();

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

async function schemaExists(schema: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: postgresUrl });
  await client.connect();
  try {
    const found = await client.query(
      'SELECT 1 FROM information_schema.schemata WHERE schema_name = $1',
      [schema],
    );
    return found.rowCount === 1;
  } finally {
    await client.end();
  }
}

describe.skipIf(postgresUrl === undefined)('LocalCluster', () => {
  let cluster: LocalCluster | undefined;
  let store: EtcdCoordinationStore | undefined;

  beforeAll(async () => {
    cluster = await LocalCluster.start({
      shards: 2,
      partitions: P,
      port: 0,
      postgresUrl,
      leaseTtlMs: 3000,
      roundIntervalMs: 200,
    });
    store = await EtcdCoordinationStore.open({
      endpoints: [cluster.addresses.etcd],
      clusterName: cluster.clusterName,
    });
  });

  afterAll(async () => {
    await store?.close();
    await cluster?.stop();
  });

  it('starts shards that serve their half of the ring, and one leading coordinator', async () => {
    const c = cluster as LocalCluster;
    expect(c.shards).toEqual(['shard-1', 'shard-2']);
    expect(c.addresses.ingest).toBe(c.addresses.shards['shard-1']);

    const ring = (await (store as EtcdCoordinationStore).readRing()) as Ring;
    expect(ring).toMatchObject({ epoch: 1, partitions: P });
    for (const name of c.shards) {
      const address = c.addresses.shards[name] as string;
      expect(await checkHealth(address, '')).toBe('SERVING');
      for (const service of [
        'speedlayer.v1.Shard',
        'speedlayer.v1.Ingest',
        'speedlayer.v1.Query',
      ]) {
        expect(await checkHealth(address, service), `${name} ${service}`).toBe('SERVING');
      }
      const serving = c
        .process(name)
        .lines()
        .find((l) => l.msg === 'shard serving');
      expect(serving).toMatchObject({ ringEpoch: 1, partitions: partitionsOf(ring, name) });
      expect(partitionsOf(ring, name)).toHaveLength(P / 2);
      const metrics = await (await fetch(c.addresses.shardMetrics[name] as string)).text();
      expect(metrics).toContain(
        `speedlayer_shard_partitions_owned{role="shard",shard_id="${name}"} ${P / 2}`,
      );
    }

    const leader = await c.leader();
    expect(c.coordinators).toContain(leader);
    const acquired = (name: string): boolean =>
      c
        .process(name)
        .lines()
        .some((l) => l.msg === 'leadership acquired');
    for (const name of c.coordinators) {
      expect(acquired(name)).toBe(name === leader);
      const { status, metrics } = c.addresses.coordinators[name] as {
        status: string;
        metrics: string;
      };
      expect(await checkHealth(status, 'speedlayer.v1.Coordinator')).toBe('SERVING');
      const scraped = await fetch(metrics);
      expect(scraped.status).toBe(200);
      expect(await scraped.text()).toMatch(/^# HELP /m);
    }
  });

  it('brings a SIGKILLed shard back on its address with its partitions', async () => {
    const c = cluster as LocalCluster;
    const address = c.addresses.shards['shard-2'] as string;
    const before = c.pids()['shard-2'] as number;

    expect(await c.kill('shard-2')).toEqual({ code: null, signal: 'SIGKILL' });
    expect(isAlive(before)).toBe(false);
    expect(c.pids()['shard-2']).toBeUndefined();
    await expect(checkHealth(address, '')).rejects.toMatchObject({ code: 14 }); // UNAVAILABLE

    await c.restart('shard-2');
    const after = c.pids()['shard-2'] as number;
    expect(after).not.toBe(before);
    expect(c.process('shard-2').incarnation).toBe(2);
    expect(await checkHealth(address, '')).toBe('SERVING');
    const ring = (await (store as EtcdCoordinationStore).readRing()) as Ring;
    const back = await c.waitForLog('shard-2', (l) => l.msg === 'shard serving', 1000);
    expect(back).toMatchObject({ ringEpoch: 1, partitions: partitionsOf(ring, 'shard-2') });
    expect(ring.epoch).toBe(1);
  });

  it('hands leadership to the standby while the leader is paused', async () => {
    const c = cluster as LocalCluster;
    const leader = (await c.leader()) as string;
    const standby = c.coordinators.find((name) => name !== leader) as string;
    const mark = c.process(leader).mark();

    c.pause(leader);
    await c.waitForLog(standby, (l) => l.msg === 'leadership acquired', 15_000);
    expect(await c.leader()).toBe(standby);

    c.resume(leader);
    await c.waitForLog(leader, (l) => l.msg === 'leadership lost', { since: mark });
    expect(await c.leader()).toBe(standby);
  });

  it('stops every process with exit code 0 and leaves nothing behind', async () => {
    const c = cluster as LocalCluster;
    await store?.close();
    store = undefined;
    const pids = c.pids();
    expect(Object.keys(pids).sort()).toEqual(
      ['coordinator-1', 'coordinator-2', 'etcd', 'shard-1', 'shard-2'].sort(),
    );

    const exits = await c.stop();
    for (const name of [...c.shards, ...c.coordinators]) {
      expect(exits[name], name).toEqual({ code: 0, signal: null });
    }
    expect(exits.etcd).toEqual({ code: null, signal: 'SIGTERM' });
    for (const [name, pid] of Object.entries(pids)) expect(isAlive(pid), name).toBe(false);
    expect(c.pids()).toEqual({});
    expect(existsSync(c.dataDir)).toBe(false);
    expect(await schemaExists(c.postgresSchema)).toBe(false);
    expect(await c.stop()).toBe(exits);
  });
});

describe.skipIf(postgresUrl === undefined)('LocalCluster over a kept data directory', () => {
  it('resumes the same cluster on a second launch, and refuses another partition count', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'speedlayer-kept-'));
    const options = { shards: 1, partitions: 2, port: 0, postgresUrl, dataDir, leaseTtlMs: 3000 };
    let second: LocalCluster | undefined;
    try {
      const first = await LocalCluster.start(options);
      const { clusterName, postgresSchema } = first;
      await first.stop();
      expect(existsSync(path.join(dataDir, 'etcd'))).toBe(true);
      expect(await schemaExists(postgresSchema)).toBe(true);

      second = await LocalCluster.start({ ...options, dropSchema: true });
      expect([second.clusterName, second.postgresSchema]).toEqual([clusterName, postgresSchema]);
      const serving = await second.waitForLog('shard-1', (l) => l.msg === 'shard serving', 1000);
      expect(serving).toMatchObject({ ringEpoch: 1, partitions: [0, 1] });
      await second.stop();
      expect(await schemaExists(postgresSchema)).toBe(false);
      expect(existsSync(dataDir)).toBe(true);

      await expect(LocalCluster.start({ ...options, partitions: 4 })).rejects.toThrow(
        /SL-CLUSTER-006.*partitions 2 \(asked: 4\)/,
      );
    } finally {
      await second?.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

/** `npm run cluster -- ...args` with the test's PostgreSQL server, read line by line. */
function launchCluster(args: readonly string[]): {
  npm: ReturnType<typeof spawn>;
  lines: string[];
  ready: Promise<void>;
  exited: Promise<number | null>;
} {
  const npm = spawn('npm', ['run', '--silent', 'cluster', '--', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SPEEDLAYER_POSTGRES_URL: postgresUrl },
  });
  const exited = new Promise<number | null>((resolve) => npm.once('exit', resolve));
  const lines: string[] = [];
  let stderr = '';
  npm.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const ready = new Promise<void>((resolve, reject) => {
    createInterface({ input: npm.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      lines.push(line);
      if (line.startsWith('ready in ')) resolve();
    });
    void exited.then((code) => reject(new Error(`exited ${code} before ready:\n${stderr}`)));
  });

  return { npm, lines, ready, exited };
}

describe.skipIf(postgresUrl === undefined)('npm run cluster', () => {
  it('prints each part and a ready line, and stops them all on SIGTERM with exit code 0', async () => {
    const { npm, lines, ready, exited } = launchCluster([
      '--shards',
      '2',
      '--partitions',
      String(P),
      '--port',
      '0',
      '--allowed-lateness',
      '0s',
      '--restatement-horizon',
      '400d',
    ]);

    try {
      await ready;
      const parts = new Map<string, number>();
      for (const line of lines) {
        const m = /^ {2}(\S+)\s+pid (\d+) /.exec(line);
        if (m !== null) parts.set(m[1] as string, Number(m[2]));
      }
      expect([...parts.keys()].sort()).toEqual(
        ['coordinator-1', 'coordinator-2', 'etcd', 'shard-1', 'shard-2'].sort(),
      );
      const first = /^ {2}shard-1\s+pid \d+\s+(\S+) \(ingest and queries\)/.exec(
        lines.find((l) => l.startsWith('  shard-1 ')) ?? '',
      )?.[1];
      for (const name of ['shard-1', 'shard-2']) {
        const line = lines.find((l) => l.startsWith(`  ${name} `)) ?? '';
        expect(line, name).toMatch(/, http:\/\/127\.0\.0\.1:\d+\/metrics$/);
      }
      expect(lines.at(-1)).toContain(`send events and queries to ${first}`);
      expect(lines.filter((l) => l.includes('(leader)'))).toHaveLength(1);
      for (const pid of parts.values()) expect(isAlive(pid)).toBe(true);
      const dataDir = /^data: (\S+)/.exec(lines.find((l) => l.startsWith('data: ')) ?? '')?.[1];
      expect(dataDir !== undefined && existsSync(dataDir)).toBe(true);

      // The engine settings reach every shard's router and every coordinator.
      expect(lines).toContain('shards run with --allowed-lateness 0s --restatement-horizon 400d');
      const logLine = (name: string, msg: string): Record<string, unknown> | undefined =>
        readFileSync(path.join(dataDir as string, 'logs', `${name}.log`), 'utf8')
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as Record<string, unknown>)
          .find((l) => l.msg === msg);
      for (const name of ['shard-1', 'shard-2']) {
        expect(logLine(name, 'ingest router started'), name).toMatchObject({
          allowedLatenessMs: 0,
          restatementHorizonMs: 400 * 86_400_000,
          maxFutureSkewMs: 5 * 60_000,
        });
      }
      for (const name of ['coordinator-1', 'coordinator-2']) {
        expect(logLine(name, 'campaigning'), name).toMatchObject({ allowedLatenessMs: 0 });
      }

      npm.kill('SIGTERM');
      expect(await exited).toBe(0);
      for (const [name, pid] of parts) expect(isAlive(pid), name).toBe(false);
      expect(lines.at(-1)).toMatch(/^stopped; removed /);
      expect(existsSync(dataDir as string)).toBe(false);
    } finally {
      if (npm.exitCode === null) npm.kill('SIGKILL');
    }
  });

  it('launches a kept cluster again with the flags of its earlier launch, unless given', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'speedlayer-kept-'));
    const [port] = await freePorts(1);
    let schema: string | undefined;
    const shardLog = (name: string): Record<string, unknown>[] =>
      readFileSync(path.join(dataDir, 'logs', `${name}.log`), 'utf8')
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => l.msg === 'ingest router started');
    const stopped = async (launch: ReturnType<typeof launchCluster>): Promise<void> => {
      launch.npm.kill('SIGTERM');
      expect(await launch.exited).toBe(0);
    };
    try {
      const common = ['--shards', '1', '--partitions', '2', '--data-dir', dataDir];
      const first = launchCluster([
        ...common,
        '--port',
        String(port),
        '--restatement-horizon',
        '400d',
      ]);
      await first.ready;
      schema = /schema (\S+)$/.exec(
        first.lines.find((l) => l.startsWith('  postgres ')) ?? '',
      )?.[1];
      expect(first.lines.some((l) => l.startsWith('resuming'))).toBe(false);
      await stopped(first);

      const second = launchCluster(common);
      await second.ready;
      expect(second.lines[0]).toBe(
        `resuming with the flags of the earlier launch: --port ${port} --restatement-horizon 400d (give a flag to change it)`,
      );
      expect(second.lines.at(-1)).toContain(`send events and queries to 127.0.0.1:${port}`);
      expect(second.lines).toContain('shards run with --restatement-horizon 400d');
      expect(shardLog('shard-1').at(-1)).toMatchObject({ restatementHorizonMs: 400 * 86_400_000 });
      await stopped(second);

      // A flag given wins, and is remembered in turn.
      const third = launchCluster([...common, '--restatement-horizon', '50d']);
      await third.ready;
      expect(third.lines[0]).toBe(
        `resuming with the flags of the earlier launch: --port ${port} (give a flag to change it)`,
      );
      expect(shardLog('shard-1').at(-1)).toMatchObject({ restatementHorizonMs: 50 * 86_400_000 });
      await stopped(third);
      expect(
        JSON.parse(readFileSync(path.join(dataDir, 'launch-flags.json'), 'utf8')),
      ).toMatchObject({ port: String(port), restatementHorizon: '50d' });
    } finally {
      await rm(dataDir, { recursive: true, force: true });
      if (schema !== undefined) await dropSchema(postgresUrl as string, schema);
    }
  });
});
