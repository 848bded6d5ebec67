/**
 * The cluster row of `npm run bench -- --cluster`: the same workload file through a
 * {@link LocalCluster} of real processes (etcd, the shards, two coordinators) over the
 * PostgreSQL server, sent the way a user sends it.
 *
 * 1. Starts the cluster (event-time watermark, its own schema, dropped at the end).
 * 2. Runs `speedlayer replay FILE --target <first shard>` as a child process; the replay's
 *    own 'replay started' log line marks the first batch sent.
 * 3. Waits until every period the oracle knows has a published (non-provisional) row, or
 *    the leader's global watermark (Coordinator.Status) has passed the watermark Finish
 *    answered with; the last row written is the latest `written_at` of the version history.
 * 4. Reads the DAU series and every current row through the Query service on the ingest
 *    port (gRPC), the first read and the median of several.
 * 5. Reads VmRSS and VmHWM of every cluster process, and the CPU each spent between the
 *    first batch and the last row, from /proc; then stops the cluster.
 *
 * With a profile directory, every speedlayer process (shards, coordinators, the replay
 * client) is CPU-profiled (scripts/bench-cpu-prof.mjs); the profiles are cut to the
 * ingest window.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

import { LocalCluster } from '../cluster/local-cluster.js';
import type { CurrentRow } from '../src/sink/index.js';
import { QueryServiceClient, fetchStatus } from '../src/transport/index.js';
import {
  compareCounts,
  countKey,
  dirBytes,
  median,
  progress,
  type BenchPeriodType,
  type Comparison,
  type Counts,
} from './bench-lib.js';
import {
  monotonicUs,
  summarizeProfile,
  type ProfileSummary,
  type ProfileWindow,
} from './bench-profile.js';

const READ_REPEATS = 9;
const POLL_MS = 250;
const PROGRESS_EVERY_MS = 15_000;
const STATUS_CATCH_UP_MS = 10_000;
/** How long rows may lag a global watermark that has passed them (several rounds). */
const CLOSED_GRACE_MS = 5_000;
/** USER_HZ: /proc reports CPU time in these ticks, 100 a second on Linux. */
const TICKS_PER_SECOND = 100;

export interface ClusterBenchOptions {
  readonly file: string;
  readonly oracle: Counts;
  readonly postgresUrl: string;
  readonly shards: number;
  readonly partitions: number;
  /** The repository root, for bin/speedlayer.js and for paths in profiles. */
  readonly root: string;
  /** Keep the cluster's data (etcd, shards' LevelDB, logs) here; else a temporary dir. */
  readonly keepDir?: string;
  /** Profile every speedlayer process into this directory. */
  readonly cpuProfDir?: string;
  /** How long to wait after the replay for the last period. */
  readonly publishTimeoutMs: number;
}

/** One process of the cluster at the end of the run. */
export interface ClusterProcessFigures {
  readonly name: string;
  readonly pid: number;
  readonly rssMb: number;
  /** Peak RSS of the process (VmHWM). */
  readonly hwmMb: number;
  /** User + system CPU from the first batch sent to the last row written. */
  readonly ingestCpuSeconds: number;
}

export interface ClusterBenchResult {
  readonly shards: number;
  readonly partitions: number;
  readonly schema: string;
  readonly startupSeconds: number;
  readonly replay: {
    readonly records: number;
    readonly accepted: number;
    readonly batches: number;
    readonly reconnects: number;
    readonly watermarkMs: number | null;
    /** The client's own count: first batch to Finish answered. */
    readonly clientSeconds: number;
    /** CPU of the replay process, start-up included. */
    readonly clientCpuSeconds: number;
  };
  /** Every expected period had a published row before the timeout. */
  readonly published: boolean;
  /** First batch sent to the last row written. */
  readonly ingestSeconds: number;
  /** Finish answered to the last row written. */
  readonly publishLagSeconds: number;
  /**
   * What Coordinator.Status showed last, given up to {@link STATUS_CATCH_UP_MS} after the
   * rows to reach Finish's watermark (the leader writes its status record at most every 5 s).
   */
  readonly globalWatermarkMs: number | undefined;
  /** The coordinator that led at the end. */
  readonly leader: string | undefined;
  readonly comparison: Comparison;
  readonly statuses: Record<string, number>;
  readonly historyRows: number;
  readonly read: {
    readonly dauRows: number;
    readonly dauFirstMs: number;
    readonly dauWarmMs: number;
    readonly allRows: number;
    readonly allWarmMs: number;
  };
  readonly processes: readonly ClusterProcessFigures[];
  readonly rssSumMb: number;
  readonly hwmSumMb: number;
  /** Bytes under the shards' data directories (LevelDB state, router position). */
  readonly shardDiskBytes: number;
  readonly profiles: readonly { name: string; file: string; summary: ProfileSummary }[];
}

interface ReplayOutcome {
  readonly pid: number;
  readonly startedAtMs: number;
  readonly finishedAtMs: number;
  readonly summary: {
    readonly records: number;
    readonly accepted: number;
    readonly batches: number;
    readonly reconnects: number;
    readonly watermarkMs: number | null;
    readonly seconds: number;
  };
  readonly cpuSeconds: number;
}

/** Runs the workload through a local cluster and measures it; the cluster is stopped after. */
export async function runClusterBench(o: ClusterBenchOptions): Promise<ClusterBenchResult> {
  const env = o.cpuProfDir === undefined ? undefined : profiledEnv(o.cpuProfDir, o.root);
  const t0 = performance.now();
  const cluster = await withEnv(env, () =>
    LocalCluster.start({
      shards: o.shards,
      partitions: o.partitions,
      port: 0,
      postgresUrl: o.postgresUrl,
      clusterName: `bench-${randomBytes(3).toString('hex')}`,
      watermark: 'event-time',
      readyTimeoutMs: 120_000,
      ...(o.keepDir === undefined ? {} : { dataDir: o.keepDir, logFiles: true, dropSchema: true }),
    }),
  );
  const startupSeconds = (performance.now() - t0) / 1000;
  progress(
    `cluster: ${o.shards} shards, P = ${o.partitions}, ready in ${startupSeconds.toFixed(1)} s; replaying through ${cluster.addresses.ingest}`,
  );

  let measured: Measured;
  try {
    measured = await measure(cluster, o, startupSeconds, env);
  } finally {
    await cluster.stop();
  }

  // The profiles are written as the processes exit.
  const { result, window, pids } = measured;
  const profiles =
    o.cpuProfDir === undefined ? [] : readProfiles(o.cpuProfDir, pids, o.root, window);

  return { ...result, profiles };
}

interface Measured {
  readonly result: Omit<ClusterBenchResult, 'profiles'>;
  /** First batch sent to last row written, on the profiles' clock. */
  readonly window: ProfileWindow;
  /** Every profiled process by name: the cluster's and the replay client. */
  readonly pids: Readonly<Record<string, number>>;
}

async function measure(
  cluster: LocalCluster,
  o: ClusterBenchOptions,
  startupSeconds: number,
  env: NodeJS.ProcessEnv | undefined,
): Promise<Measured> {
  const target = cluster.addresses.ingest;
  const pids = cluster.pids();
  const cpuBefore = new Map(Object.entries(pids).map(([name, pid]) => [name, cpuTicks(pid)]));
  const monoOffsetUs = monotonicUs() - Date.now() * 1000;

  const replay = await runReplayCli(o.root, o.file, target, env);
  const query = await QueryServiceClient.connect(target);
  try {
    const done = await untilPublished(target, query, o, replay.summary.watermarkMs);
    const cpuAfter = new Map(Object.entries(pids).map(([name, pid]) => [name, cpuTicks(pid)]));

    const history = await query.history();
    // Nothing published before the timeout: the run ends now, and is reported not exact.
    const lastWrittenAtMs =
      history.length > 0 ? Math.max(...history.map((v) => v.writtenAtMs)) : Date.now();
    const read = await timeReads(query);
    const leader = await cluster.leader();
    const globalWatermarkMs = await statusCatchUp(target, replay.summary.watermarkMs);

    const processes = Object.entries(pids).map(([name, pid]): ClusterProcessFigures => {
      const memory = memoryOf(pid);
      const ticks = (cpuAfter.get(name) ?? 0) - (cpuBefore.get(name) ?? 0);
      return { name, pid, ...memory, ingestCpuSeconds: ticks / TICKS_PER_SECOND };
    });
    const shardDiskBytes = cluster.shards.reduce(
      (n, name) => n + dirBytes(path.join(cluster.dataDir, name)),
      0,
    );

    const got: Counts = new Map();
    const statuses: Record<string, number> = {};
    for (const r of done.rows) {
      got.set(countKey(r.periodType as BenchPeriodType, r.periodStartMs), r.distinctUsers);
      statuses[r.status] = (statuses[r.status] ?? 0) + 1;
    }

    const result: Measured['result'] = {
      shards: o.shards,
      partitions: o.partitions,
      schema: cluster.postgresSchema,
      startupSeconds,
      replay: {
        ...replay.summary,
        clientSeconds: replay.summary.seconds,
        clientCpuSeconds: replay.cpuSeconds,
      },
      published: done.published,
      ingestSeconds: (lastWrittenAtMs - replay.startedAtMs) / 1000,
      publishLagSeconds: (lastWrittenAtMs - replay.finishedAtMs) / 1000,
      globalWatermarkMs,
      leader,
      comparison: compareCounts(o.oracle, got),
      statuses,
      historyRows: history.length,
      read,
      processes,
      rssSumMb: processes.reduce((n, p) => n + p.rssMb, 0),
      hwmSumMb: processes.reduce((n, p) => n + p.hwmMb, 0),
      shardDiskBytes,
    };
    const window = {
      fromUs: replay.startedAtMs * 1000 + monoOffsetUs,
      toUs: lastWrittenAtMs * 1000 + monoOffsetUs,
    };

    return { result, window, pids: { ...pids, 'replay client': replay.pid } };
  } finally {
    query.close();
  }
}

/** The profile of each process in `dir` (`<pid>.cpuprofile`), cut to `window`. */
function readProfiles(
  dir: string,
  pids: Readonly<Record<string, number>>,
  root: string,
  window: ProfileWindow,
): ClusterBenchResult['profiles'] {
  const out: { name: string; file: string; summary: ProfileSummary }[] = [];
  for (const [name, pid] of Object.entries(pids)) {
    const full = path.join(dir, `${pid}.cpuprofile`);
    if (!fs.existsSync(full)) continue;

    out.push({ name, file: full, summary: summarizeProfile(full, 12, root, window) });
  }

  return out;
}

/** `speedlayer replay FILE --target ...` in a child; its JSON log lines give the timings. */
async function runReplayCli(
  root: string,
  file: string,
  target: string,
  env: NodeJS.ProcessEnv | undefined,
): Promise<ReplayOutcome> {
  const args = [
    path.join(root, 'bin/speedlayer.js'),
    'replay',
    file,
    ...['--format', 'csv', '--user-field', 'user_id', '--time-field', 'event_time'],
    ...['--time-format', 'iso', '--target', target, '--no-progress', '--log-level', 'info'],
  ];
  const childTicksBefore = ownChildrenTicks();
  const child = spawn(process.execPath, args, {
    cwd: root,
    env: env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Record<string, unknown>[] = [];
  const tail: string[] = [];
  let buffered = '';
  child.stdout.resume();
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    buffered += chunk;
    const parts = buffered.split('\n');
    buffered = parts.pop() ?? '';
    for (const line of parts) {
      tail.push(line);
      if (tail.length > 20) tail.shift();
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // Not a log line: kept in the tail for the error message.
      }
    }
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  if (code !== 0) {
    throw new Error(`speedlayer replay --target exited with ${code}:\n${tail.join('\n')}`);
  }

  const started = lines.find((l) => l.msg === 'replay started');
  const finished = lines.find((l) => l.msg === 'replay finished');
  if (started === undefined || finished === undefined) {
    throw new Error(`speedlayer replay logged no 'replay started'/'replay finished' line`);
  }
  const summary = finished as unknown as ReplayOutcome['summary'];
  progress(
    `cluster: replay sent ${summary.records.toLocaleString('en-US')} records in ${summary.seconds.toFixed(1)} s (client side, Finish included)`,
  );

  return {
    pid: child.pid as number,
    startedAtMs: started.time as number,
    finishedAtMs: finished.time as number,
    summary,
    cpuSeconds: (ownChildrenTicks() - childTicksBefore) / TICKS_PER_SECOND,
  };
}

/**
 * Polls until every expected period has a published row, or the timeout. Once the leader's
 * global watermark has passed `finishWatermarkMs` every period is closed: what is still
 * missing a few rounds later stays missing, and the wait ends there.
 */
async function untilPublished(
  target: string,
  query: QueryServiceClient,
  o: ClusterBenchOptions,
  finishWatermarkMs: number | null,
): Promise<{ rows: CurrentRow[]; published: boolean }> {
  const deadline = Date.now() + o.publishTimeoutMs;
  let closedAt: number | undefined;
  let nextProgress = Date.now() + PROGRESS_EVERY_MS;
  for (;;) {
    const rows = await query.current();
    const published = rows.filter((r) => r.status !== 'provisional').length;
    if (published >= o.oracle.size) return { rows, published: true };

    if (closedAt === undefined && finishWatermarkMs !== null) {
      const status = await fetchStatus(target).catch(() => undefined);
      if ((status?.globalWatermarkMs ?? -Infinity) >= finishWatermarkMs) closedAt = Date.now();
    }
    const givenUp = closedAt !== undefined && Date.now() - closedAt > CLOSED_GRACE_MS;
    if (givenUp || Date.now() > deadline) return { rows, published: false };

    if (Date.now() > nextProgress) {
      progress(`cluster: ${published}/${o.oracle.size} periods published`);
      nextProgress += PROGRESS_EVERY_MS;
    }
    await sleep(POLL_MS);
  }
}

/** The global watermark Status shows once it reaches `finishWatermarkMs`, or at the timeout. */
async function statusCatchUp(
  target: string,
  finishWatermarkMs: number | null,
): Promise<number | undefined> {
  const deadline = Date.now() + STATUS_CATCH_UP_MS;
  for (;;) {
    const status = await fetchStatus(target).catch(() => undefined);
    const shown = status?.globalWatermarkMs;
    const reached = finishWatermarkMs === null || (shown ?? -Infinity) >= finishWatermarkMs;
    if (reached || Date.now() > deadline) return shown;

    await sleep(POLL_MS);
  }
}

async function timeReads(query: QueryServiceClient): Promise<ClusterBenchResult['read']> {
  const timed = async <T>(fn: () => Promise<T>): Promise<[T, number]> => {
    const t = performance.now();
    const value = await fn();
    return [value, performance.now() - t];
  };

  const [dau, dauFirstMs] = await timed(() => query.current({ periodType: 'day' }));
  const dauTimes: number[] = [];
  for (let i = 0; i < READ_REPEATS; i++) {
    dauTimes.push((await timed(() => query.current({ periodType: 'day' })))[1]);
  }
  const allTimes: number[] = [];
  let allRows = 0;
  for (let i = 0; i < READ_REPEATS; i++) {
    const [all, ms] = await timed(() => query.current());
    allRows = all.length;
    allTimes.push(ms);
  }

  return {
    dauRows: dau.length,
    dauFirstMs,
    dauWarmMs: median(dauTimes),
    allRows,
    allWarmMs: median(allTimes),
  };
}

/** User + system ticks of a process (fields 14 and 15 of /proc/<pid>/stat). */
function cpuTicks(pid: number): number {
  const fields = statFields(pid);

  return Number(fields[11]) + Number(fields[12]);
}

/** User + system ticks of this process's waited-for children (fields 16 and 17). */
function ownChildrenTicks(): number {
  const fields = statFields('self');

  return Number(fields[13]) + Number(fields[14]);
}

/** The fields of /proc/<pid>/stat after the command name, from field 3 (state) on. */
function statFields(pid: number | 'self'): string[] {
  const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');

  return text.slice(text.lastIndexOf(')') + 2).split(' ');
}

function memoryOf(pid: number): { rssMb: number; hwmMb: number } {
  const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? Number.NaN);

  return { rssMb: kb('VmRSS') / 1024, hwmMb: kb('VmHWM') / 1024 };
}

/**
 * The environment that profiles every node process started from it into `dir`, through
 * scripts/bench-cpu-prof.mjs (Node 20 refuses `--cpu-prof` in NODE_OPTIONS).
 */
function profiledEnv(dir: string, root: string): NodeJS.ProcessEnv {
  fs.mkdirSync(dir, { recursive: true });
  const preload = `--import ${pathToFileURL(path.join(root, 'scripts/bench-cpu-prof.mjs')).href}`;

  return {
    ...process.env,
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} ${preload}`.trim(),
    SPEEDLAYER_BENCH_CPU_PROF_DIR: dir,
  };
}

/** LocalCluster hands its processes this process's environment: set it for the start. */
async function withEnv<T>(env: NodeJS.ProcessEnv | undefined, fn: () => Promise<T>): Promise<T> {
  if (env === undefined) return fn();

  const names = ['NODE_OPTIONS', 'SPEEDLAYER_BENCH_CPU_PROF_DIR'] as const;
  const saved = names.map((name) => process.env[name]);
  for (const name of names) process.env[name] = env[name];
  try {
    return await fn();
  } finally {
    names.forEach((name, i) => {
      const value = saved[i];
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    });
  }
}
