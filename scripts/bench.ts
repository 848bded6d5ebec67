/**
 * `npm run bench`: speedlayer against a brute-force oracle and PostgreSQL's
 * count(DISTINCT), on one seeded workload, in one run.
 *
 *   npm run bench -- [--quick] [--events N] [--users U] [--days D] [--seed S]
 *                    [--data DIR] [--postgres URL] [--skip-postgres]
 *                    [--cluster] [--cluster-shards N]
 *                    [--partitions P] [--cpu-prof] [--keep]
 *
 * Defaults: 5,000,000 events, 1,000,000 users, 7 days (--quick: 500,000 /
 * 100,000); data cached in DIR (default <os temp>/speedlayer-bench); PostgreSQL
 * at --postgres, else $SPEEDLAYER_BENCH_POSTGRES_URL, else
 * postgres://postgres@127.0.0.1:5432/test. --cpu-prof profiles the speedlayer
 * child's replay and adds its top functions to the report (timings of such a
 * run carry the profiler's overhead). --keep keeps the speedlayer data dir.
 *
 * --cluster adds a row for the cluster (scripts/bench-cluster.ts): a LocalCluster
 * of --cluster-shards shards (default 2), two coordinators and an etcd (on PATH)
 * over the PostgreSQL server above, P = --partitions, event-time watermark, in a
 * schema of its own that is dropped after; the file goes in through
 * `speedlayer replay FILE --target`. Off by default: it adds a minute or more to
 * the full-size run. With --cpu-prof every process of the cluster is profiled too,
 * and with --keep its data directory is kept.
 *
 * `npm run bench -- --help` lists the options.
 *
 * Steps: generate the workload (scripts/bench-gen.ts, child) unless cached;
 * oracle counts (scripts/bench-oracle.ts, child) unless cached; speedlayer's
 * replay (scripts/bench-speedlayer.ts, child, fresh data dir); the PostgreSQL
 * baseline (scripts/bench-postgres.ts); with --cluster, the cluster; then one
 * report on stdout and in bench-results/<time>.md. Progress goes to stderr.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import type { ClusterBenchResult } from './bench-cluster.js';
import { clusterDetails, clusterRow, type ClusterOutcome } from './bench-cluster-report.js';
import type { SpeedlayerResult } from './bench-speedlayer.js';
import { connectPostgres, runPostgres, type PostgresResult } from './bench-postgres.js';
import { profileTables, summarizeProfile, type ProfileSummary } from './bench-profile.js';
import {
  compareCounts,
  countKey,
  exactLabel,
  fmtInt,
  fmtMb,
  fmtNum,
  numberArg,
  oracleCsvOf,
  oracleMetaOf,
  parseArgs,
  progress,
  readCountsCsv,
  stringArg,
  workloadFile,
  workloadMetaOf,
  type BenchPeriodType,
  type Comparison,
  type Counts,
  type OracleMeta,
  type Workload,
  type WorkloadMeta,
} from './bench-lib.js';

const SCRIPTS = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(SCRIPTS);
const DEFAULT_POSTGRES = 'postgres://postgres@127.0.0.1:5432/test';

const USAGE = `npm run bench -- [options]

Generates a seeded workload, counts it with a brute-force oracle, replays it
through speedlayer (embedded) and PostgreSQL (COPY + count(DISTINCT)), checks
both against the oracle and prints the figures side by side; the report also
goes to bench-results/<time>.md.

  --quick             500,000 events / 100,000 users instead of 5,000,000 / 1,000,000
  --events N, --users U, --days D, --seed S   the workload (default 7 days, seed 20241)
  --data DIR          where the workload and oracle are cached (<os temp>/speedlayer-bench)
  --postgres URL      PostgreSQL server (else $SPEEDLAYER_BENCH_POSTGRES_URL, else ${DEFAULT_POSTGRES})
  --skip-postgres     leave the PostgreSQL baseline out
  --cluster           also run a local cluster (etcd on PATH, the PostgreSQL server above):
                      the same file through \`speedlayer replay --target\`, its own schema,
                      dropped after; adds a minute or more to the full-size run
  --cluster-shards N  shards of that cluster (default 2)
  --partitions P      partitions of the embedded run and of the cluster (default 16)
  --cpu-prof          CPU-profile the embedded replay and every cluster process
  --keep              keep the speedlayer and cluster data directories
  --help              this text
`;
const KNOWN_FLAGS = new Set([
  'quick',
  'events',
  'users',
  'days',
  'seed',
  'data',
  'postgres',
  'skip-postgres',
  'cluster',
  'cluster-shards',
  'partitions',
  'cpu-prof',
  'keep',
  'help',
]);

const args = parseArgs();
if (args.has('help')) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const unknown = [...args.keys()].filter((name) => !KNOWN_FLAGS.has(name));
if (unknown.length > 0) {
  throw new Error(`unknown option ${unknown.map((n) => `--${n}`).join(', ')}; see --help`);
}
const quick = args.get('quick') === true;
const workload: Workload = {
  events: numberArg(args, 'events', quick ? 500_000 : 5_000_000),
  users: numberArg(args, 'users', quick ? 100_000 : 1_000_000),
  days: numberArg(args, 'days', 7),
  start: '2024-01-01T00:00:00Z',
  zipf: 0.8,
  seed: stringArg(args, 'seed') ?? '20241',
};
const cacheDir = path.resolve(
  stringArg(args, 'data') ?? path.join(os.tmpdir(), 'speedlayer-bench'),
);
const skipPostgres = args.get('skip-postgres') === true;
const postgresUrl =
  stringArg(args, 'postgres') ?? process.env.SPEEDLAYER_BENCH_POSTGRES_URL ?? DEFAULT_POSTGRES;
const partitions = numberArg(args, 'partitions', 16);
const cpuProf = args.get('cpu-prof') === true;
const keep = args.get('keep') === true;
const withCluster = args.get('cluster') === true;
const clusterShards = numberArg(args, 'cluster-shards', 2);
const CLUSTER_PUBLISH_TIMEOUT_MS = 10 * 60_000;
const LATENESS_MS = 10 * 60_000;

const startedAt = new Date();
const loadAtStart = os
  .loadavg()
  .map((x) => x.toFixed(2))
  .join('/');
const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
const resultsDir = path.join(ROOT, 'bench-results');

/** Runs a script of scripts/ in a child node (with tsx); stdout is returned, stderr passes through. */
function runChild(
  script: string,
  childArgs: string[],
  nodeFlags: string[] = [],
): Promise<{ stdout: string; seconds: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(
      process.execPath,
      [...nodeFlags, '--import', 'tsx', path.join(SCRIPTS, script), ...childArgs],
      {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let stdout = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => (stdout += d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve({ stdout, seconds: (performance.now() - t0) / 1000 });
      else reject(new Error(`${script} failed (${signal ?? `exit ${code}`})`));
    });
  });
}

// --- 1. workload ----------------------------------------------------------------------

async function ensureWorkload(): Promise<{ file: string; meta: WorkloadMeta; cached: boolean }> {
  const file = workloadFile(cacheDir, workload);
  const metaFile = workloadMetaOf(file);
  if (fs.existsSync(file) && fs.existsSync(metaFile)) {
    const meta = JSON.parse(fs.readFileSync(metaFile, 'utf8')) as WorkloadMeta;
    if (meta.bytes === fs.statSync(file).size && meta.events === workload.events) {
      progress(`workload: reusing ${file}`);
      return { file, meta, cached: true };
    }
  }
  const a = [
    '--out',
    file,
    '--events',
    String(workload.events),
    '--users',
    String(workload.users),
    '--days',
    String(workload.days),
  ];
  a.push('--start', workload.start, '--zipf', String(workload.zipf), '--seed', workload.seed);
  await runChild('bench-gen.ts', a);

  return {
    file,
    meta: JSON.parse(fs.readFileSync(metaFile, 'utf8')) as WorkloadMeta,
    cached: false,
  };
}

// --- 2. oracle ------------------------------------------------------------------------

async function ensureOracle(
  file: string,
): Promise<{ counts: Counts; meta: OracleMeta; cached: boolean }> {
  const csv = oracleCsvOf(file);
  const metaFile = oracleMetaOf(file);
  const fresh = (p: string): boolean =>
    fs.existsSync(p) && fs.statSync(p).mtimeMs >= fs.statSync(file).mtimeMs;
  let cached = true;
  if (fresh(csv) && fresh(metaFile)) {
    progress(`oracle: reusing ${csv}`);
  } else {
    cached = false;
    await runChild('bench-oracle.ts', ['--file', file, '--events', String(workload.events)]);
  }

  return {
    counts: readCountsCsv(csv),
    meta: JSON.parse(fs.readFileSync(metaFile, 'utf8')) as OracleMeta,
    cached,
  };
}

// --- 3. speedlayer --------------------------------------------------------------------

interface SpeedlayerRun {
  readonly result: SpeedlayerResult;
  readonly comparison: Comparison;
  readonly statuses: Record<string, number>;
  readonly childSeconds: number;
  readonly dataDir: string;
  readonly profile: ProfileSummary | null;
}

async function runSpeedlayer(file: string, oracle: Counts): Promise<SpeedlayerRun> {
  const dataDir = path.join(cacheDir, `run-${stamp}`);
  fs.rmSync(dataDir, { recursive: true, force: true });
  const out = path.join(cacheDir, `run-${stamp}.json`);
  const profile = cpuProf ? path.join(resultsDir, `${stamp}-speedlayer.cpuprofile`) : undefined;
  if (profile !== undefined) fs.mkdirSync(resultsDir, { recursive: true });

  const a = [
    '--file',
    file,
    '--data-dir',
    dataDir,
    '--out',
    out,
    '--events',
    String(workload.events),
  ];
  a.push('--partitions', String(partitions), '--lateness-ms', String(LATENESS_MS));
  if (profile !== undefined) a.push('--cpu-prof', profile);
  let seconds: number;
  let result: SpeedlayerResult;
  try {
    seconds = (await runChild('bench-speedlayer.ts', a, ['--expose-gc'])).seconds;
    result = JSON.parse(fs.readFileSync(out, 'utf8')) as SpeedlayerResult;
  } finally {
    fs.rmSync(out, { force: true });
    if (!keep) fs.rmSync(dataDir, { recursive: true, force: true });
  }

  const got: Counts = new Map();
  const statuses: Record<string, number> = {};
  for (const r of result.read.rows) {
    got.set(countKey(r.type as BenchPeriodType, r.startMs), r.users);
    statuses[r.status] = (statuses[r.status] ?? 0) + 1;
  }

  return {
    result,
    comparison: compareCounts(oracle, got),
    statuses,
    childSeconds: seconds,
    dataDir,
    profile: profile === undefined ? null : summarizeProfile(profile, 15, ROOT),
  };
}

// --- 4. the cluster ------------------------------------------------------------------

/** The cluster's figures, or why there are none (the run's other rows still count). */
async function runCluster(file: string, oracle: Counts): Promise<ClusterOutcome> {
  // Loaded only here: the cluster's modules (gRPC, etcd) are not needed otherwise.
  const { runClusterBench } = await import('./bench-cluster.js');
  try {
    const result: ClusterBenchResult = await runClusterBench({
      file,
      oracle,
      postgresUrl,
      shards: clusterShards,
      partitions,
      root: ROOT,
      ...(keep ? { keepDir: path.join(cacheDir, `cluster-${stamp}`) } : {}),
      ...(cpuProf ? { cpuProfDir: path.join(resultsDir, `${stamp}-cluster-profiles`) } : {}),
      publishTimeoutMs: CLUSTER_PUBLISH_TIMEOUT_MS,
    });
    progress(`cluster: exact ${exactLabel(result.comparison)}`);

    return result;
  } catch (err) {
    const why = (err instanceof Error ? err.message : String(err)).split('\n')[0] as string;
    progress(`cluster: failed: ${err instanceof Error ? (err.stack ?? err.message) : why}`);

    return `failed: ${why.replace(/\|/g, '/')}`;
  }
}

// --- 5. report ------------------------------------------------------------------------

function machineLine(): string {
  const cpus = os.cpus();
  const model = (cpus[0]?.model ?? 'unknown CPU').trim();
  const load = os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join('/');

  return (
    `${cpus.length} cores (${model}), ${fmtNum(os.totalmem() / 1024 ** 3, 1)} GiB, Node ${process.version}, ${os.platform()} ${os.release()}, ${startedAt.toISOString()}; ` +
    `load average at the start ${loadAtStart}, at the end ${load} (a shared machine: other work running meanwhile slows every figure)`
  );
}

function report(
  w: { file: string; meta: WorkloadMeta; cached: boolean },
  o: { meta: OracleMeta; cached: boolean },
  sl: SpeedlayerRun,
  pgOutcome: PostgresResult | string,
  clusterOutcome: ClusterOutcome | null,
  totalSeconds: number,
): string {
  const r = sl.result;
  const s = r.state;
  const lines: string[] = [];
  const eventsPerS = r.summary.records / r.ingestSeconds;
  const dictPerUser = s.dictionaryResidentBytes / s.knownUsers;
  const nativePerMembership = s.hourSetsNativeBytes / o.meta.hourlyMemberships;
  const serializedPerMembership = s.hourSetsSerializedBytes / o.meta.hourlyMemberships;

  lines.push(
    `# speedlayer bench ${startedAt.toISOString()}${cpuProf ? ' (CPU-profiled run: speedlayer timings include profiler overhead)' : ''}`,
  );
  lines.push('');
  lines.push(`Machine: ${machineLine()}. MB = 2^20 bytes.`);
  lines.push('');
  lines.push(
    `Workload: ${fmtInt(w.meta.events)} events, ${fmtInt(w.meta.users)} users, ${w.meta.days} days from ${w.meta.start}, Zipf s=${w.meta.zipf}, seed ${w.meta.seed}, ` +
      `csv ${fmtMb(w.meta.bytes)} MB, sha256 ${w.meta.sha256.slice(0, 16)}… (${w.cached ? 'cached' : `generated in ${w.meta.genSeconds} s`}; ${w.file}).`,
  );
  lines.push(
    `Oracle (Date.parse + one Set per period, child process): ${o.meta.periods} periods, ${fmtInt(o.meta.hourlyMemberships)} hourly memberships ` +
      `(${fmtInt(o.meta.allMemberships)} over all periods), ${fmtInt(o.meta.distinctUsers)} distinct users` +
      `${o.cached ? ' (cached)' : `; ${o.meta.seconds} s, ${o.meta.peakRssMb} MB`}.`,
  );
  lines.push('');

  const header = [
    'system',
    'exact?',
    'ingest/load events/s',
    'ingest s',
    'read DAU series ms',
    'read all periods ms',
    'peak RSS MB',
    'bytes / hourly membership',
    'bytes / known user (dict)',
  ];
  lines.push(`| ${header.join(' | ')} |`);
  lines.push(`|${header.map(() => '---').join('|')}|`);
  lines.push(
    `| speedlayer (embedded: LevelDB state + PGlite, ${s.partitions} partitions) | ${exactLabel(sl.comparison)} | ${fmtInt(eventsPerS)} | ${fmtNum(r.ingestSeconds, 2)} | ` +
      `${fmtNum(r.read.dauWarmMs, 2)} | ${fmtNum(r.read.allWarmMs, 2)} | ${fmtInt(r.peakRssAfterReplayMb)} (child) | ` +
      `${fmtNum(nativePerMembership, 2)} (serialized ${fmtNum(serializedPerMembership, 2)}) | ${fmtNum(dictPerUser, 1)} |`,
  );
  if (typeof pgOutcome === 'string') {
    lines.push(
      `| PostgreSQL (COPY + count(DISTINCT)) | skipped: ${pgOutcome} | – | – | – | – | – | – | – |`,
    );
  } else {
    const p = pgOutcome;
    const exact =
      p.cold.comparison.exact && p.warm.comparison.exact
        ? `${exactLabel(p.warm.comparison)}`
        : `cold ${exactLabel(p.cold.comparison)}; warm ${exactLabel(p.warm.comparison)}`;
    lines.push(
      `| PostgreSQL ${p.serverVersion.split(' ')[0]} (COPY, then count(DISTINCT) per read; warm) | ${exact} | ${fmtInt(p.events / p.copySeconds)} (COPY) | ${fmtNum(p.copySeconds, 2)} | ` +
        `${fmtInt(p.warm.dayMs)} | ${fmtInt(p.warm.allMs)} | ${p.backendPeakRssMb === null ? '–' : `${fmtInt(p.backendPeakRssMb)} (server backend)`} | ` +
        `– (raw rows: ${fmtNum(p.heapBytes / p.events, 1)} B/event) | – |`,
    );
  }
  if (clusterOutcome !== null) lines.push(clusterRow(clusterOutcome, clusterShards, partitions));
  lines.push('');

  // speedlayer details
  lines.push('speedlayer details:');
  if (!sl.comparison.exact)
    for (const e of sl.comparison.examples) lines.push(`- difference: ${e}`);
  lines.push(
    `- exact: ${sl.comparison.exact ? 'yes' : 'no'} (${sl.comparison.matched}/${sl.comparison.expected} periods); current rows by status: ` +
      `${Object.entries(sl.statuses)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}; version history rows ${r.read.historyRows}; ` +
      `records ${fmtInt(r.summary.records)}, accepted ${fmtInt(r.summary.accepted)}, rejected ${fmtInt(r.summary.records - r.summary.accepted)}; rounds that published ${r.roundsPublished}.`,
  );
  lines.push(
    `- time: ingest ${fmtNum(r.ingestSeconds, 2)} s (first batch to the end of the final round), CPU over that window ` +
      `${fmtNum(r.ingestCpuSeconds.user + r.ingestCpuSeconds.system, 2)} s (user ${fmtNum(r.ingestCpuSeconds.user, 2)}, system ${fmtNum(r.ingestCpuSeconds.system, 2)}; all threads); startup ${fmtNum(r.startupSeconds, 2)} s ` +
      `(warehouse open + migrations, state open); runReplay total ${fmtNum(r.runReplaySeconds, 2)} s (${fmtInt(r.summary.records / r.runReplaySeconds)} events/s end to end, ` +
      `warehouse close included); child process ${fmtNum(sl.childSeconds, 1)} s with process start, read-back and state measurement.`,
  );
  lines.push(
    `- reads (PGlite, warm median of 9): DAU series (queryCurrent periodType 'day', ${r.read.dauRows} rows) ${fmtNum(r.read.dauWarmMs, 2)} ms, first after open ${fmtNum(r.read.dauFirstMs, 2)} ms; ` +
      `all ${r.read.rows.length} current rows ${fmtNum(r.read.allWarmMs, 2)} ms, first ${fmtNum(r.read.allFirstMs, 2)} ms; warehouse open ${fmtInt(r.read.warehouseOpenMs)} ms.`,
  );
  lines.push(
    `- memory: peak RSS ${fmtInt(r.peakRssAfterReplayMb)} MB at the end of the replay (${fmtInt(r.peakRssEndMb)} MB after read-back and state measurement); ` +
      `RSS ${fmtInt(r.rssBeforeReplayMb)} MB before runReplay (node + tsx + modules); when ingest started (PGlite warehouse and LevelDB open, nothing read yet) RSS was ${fmtInt(r.rssAtIngestStartMb)} MB, peak so far ${fmtInt(r.peakRssAtIngestStartMb)} MB` +
      `${r.peakRssAtIngestStartMb >= r.peakRssAfterReplayMb - 1 ? ' (so the peak came from the warehouse startup, not from ingest)' : ''}; RSS at the end of the replay ${fmtInt(r.memoryAfterReplay.rss / 1048576)} MB; heap used ` +
      `${fmtMb(r.memoryAfterReplay.heapUsed)} MB, external ${fmtMb(r.memoryAfterReplay.external)} MB, array buffers ${fmtMb(r.memoryAfterReplay.arrayBuffers)} MB; ` +
      `roaring native memory peak seen between batches ${fmtMb(r.roaringPeakBytes)} MB (hours + cached day/week unions + garbage not yet collected).`,
  );
  lines.push(
    `- hour sets: ${fmtInt(s.hourSets)} (partition, hour) bitmaps, all loaded: ${fmtMb(s.hourSetsNativeBytes)} MB roaring native memory, ` +
      `${fmtMb(s.hourSetsSerializedBytes)} MB serialized in LevelDB (portable, run-optimized); / ${fmtInt(o.meta.hourlyMemberships)} hourly memberships (oracle) = ` +
      `${fmtNum(nativePerMembership, 2)} B native, ${fmtNum(serializedPerMembership, 2)} B serialized; engine's own sum of hour counts ${fmtInt(s.engineHourlyMemberships)}` +
      `${s.engineHourlyMemberships === o.meta.hourlyMemberships ? ' (= oracle)' : ' (**differs from the oracle**)'}.`,
  );
  lines.push(
    `- dictionaries: ${fmtInt(s.knownUsers)} known users${s.knownUsers === o.meta.distinctUsers ? ' (= oracle)' : ` (**oracle: ${fmtInt(o.meta.distinctUsers)}**)`}, ` +
      `${fmtMb(s.dictionaryResidentBytes)} MB resident (PartitionActor.dictionaryBytes, array capacity) = ${fmtNum(dictPerUser, 1)} B/user; ` +
      `segments in LevelDB ${fmtMb(s.dictionarySegmentBytes)} MB = ${fmtNum(s.dictionarySegmentBytes / s.knownUsers, 1)} B/user.`,
  );
  lines.push(
    `- on disk: LevelDB state ${fmtMb(s.levelDbDiskBytes)} MB, PGlite warehouse ${fmtMb(s.warehouseDiskBytes)} MB.`,
  );
  lines.push(
    `- settings: partitions ${partitions}, allowed lateness ${LATENESS_MS / 60_000} min, watermarkMode event-time, other settings at their defaults (memory budget 1 GiB, round interval 5 s).`,
  );
  lines.push('');

  if (typeof pgOutcome !== 'string') {
    const p = pgOutcome;
    lines.push(
      `PostgreSQL details (${postgresUrl.replace(/\/\/[^@/]*@/, '//…@')}; ${Object.entries(
        p.settings,
      )
        .map(([k, v]) => `${k}=${v}`)
        .join(', ')}):`,
    );
    for (const [label, c] of [
      ['cold', p.cold.comparison],
      ['warm', p.warm.comparison],
    ] as const) {
      if (!c.exact) for (const e of c.examples) lines.push(`- ${label} difference: ${e}`);
    }
    lines.push(
      `- load: COPY ${fmtInt(p.events)} rows in ${fmtNum(p.copySeconds, 2)} s (${fmtInt(p.events / p.copySeconds)} events/s), ANALYZE ${fmtNum(p.analyzeSeconds, 2)} s; table heap ${fmtMb(p.heapBytes)} MB.`,
    );
    const passLine = (label: string, x: typeof p.cold): string =>
      `- ${label}: hour ${fmtInt(x.hourMs)} ms, day (DAU series) ${fmtInt(x.dayMs)} ms, week ${fmtInt(x.weekMs)} ms, all three ${fmtInt(x.allMs)} ms; exact: ${exactLabel(x.comparison)}.`;
    lines.push(passLine('first read after COPY (cold)', p.cold));
    lines.push(passLine('second read (warm, in the table)', p.warm));
    const e2e = p.copySeconds + p.analyzeSeconds + p.cold.allMs / 1000;
    lines.push(
      `- end to end (COPY + ANALYZE + first hour/day/week queries): ${fmtNum(e2e, 2)} s = ${fmtInt(p.events / e2e)} events/s.`,
    );
    lines.push(
      `- peak RSS: the session's server backend (VmHWM; parallel workers not included)${p.backendPeakRssMb === null ? ': not readable' : ` ${fmtInt(p.backendPeakRssMb)} MB`}.`,
    );
    lines.push('');
  }

  if (clusterOutcome !== null && typeof clusterOutcome !== 'string') {
    lines.push(...clusterDetails(clusterOutcome, ROOT));
  }

  lines.push(
    'Context, measured earlier on this machine type by shared/bench/peers (BASELINE.md, run of 2026-12-03), not from this run:',
  );
  lines.push(
    '- Redis sets, grouped pipelines (SADD per period): 340,469 events/s (14.69 s ingest), exact; server 479 MB, 62 B per membership.',
  );
  lines.push(
    '- Redis sets, grouped pipelines with AOF everysec: 256,748 events/s (19.47 s ingest).',
  );
  lines.push(
    '- PostgreSQL 15, count(DISTINCT) at read time, no index, warm: DAU series 6,593 ms (all three series 20,281 ms); COPY 1,294,148 events/s.',
  );
  lines.push('');

  if (sl.profile !== null) {
    const pr = sl.profile;
    const file = path.relative(ROOT, path.join(resultsDir, `${stamp}-speedlayer.cpuprofile`));
    lines.push(
      `CPU profile of the speedlayer child over the ingest window ('replay started' to 'replay finished'; ${fmtNum(pr.totalMs / 1000, 2)} s sampled at 1 ms; ${file}). ` +
        'Self time; V8 attributes inlined callees (e.g. the dictionary lookup inside PartitionActor.apply) to the caller.',
    );
    lines.push('');
    lines.push(...profileTables(pr, fmtInt));
    lines.push('');
  }

  lines.push(`Whole bench run: ${fmtNum(totalSeconds, 1)} s.`);

  return `${lines.join('\n')}\n`;
}

// --- main -----------------------------------------------------------------------------

async function main(): Promise<void> {
  const t0 = performance.now();
  fs.mkdirSync(cacheDir, { recursive: true });
  const w = await ensureWorkload();
  const o = await ensureOracle(w.file);
  if (o.meta.events !== w.meta.events)
    throw new Error(
      `the oracle counted ${o.meta.events} events, the workload has ${w.meta.events}`,
    );

  const sl = await runSpeedlayer(w.file, o.counts);
  progress(`speedlayer: exact ${exactLabel(sl.comparison)}`);

  let pgOutcome: PostgresResult | string;
  if (skipPostgres) {
    pgOutcome = '--skip-postgres';
  } else {
    const client = await connectPostgres(postgresUrl);
    if (typeof client === 'string') {
      pgOutcome = `unreachable at ${postgresUrl} (${client})`;
      progress(`postgres: skipped, ${pgOutcome}`);
    } else {
      try {
        pgOutcome = await runPostgres(client, w.file, o.counts, w.meta.events);
      } finally {
        await client.end();
      }
    }
  }

  const clusterOutcome = withCluster ? await runCluster(w.file, o.counts) : null;

  const text = report(w, o, sl, pgOutcome, clusterOutcome, (performance.now() - t0) / 1000);
  fs.mkdirSync(resultsDir, { recursive: true });
  const out = path.join(resultsDir, `${stamp}.md`);
  fs.writeFileSync(out, text);
  process.stdout.write(text);
  progress(
    `report written to ${path.relative(ROOT, out)}${keep ? `; speedlayer data kept in ${sl.dataDir}` : ''}`,
  );
}

await main();
