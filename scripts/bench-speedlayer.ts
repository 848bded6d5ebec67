/**
 * The speedlayer side of `npm run bench`, run in its own process so that its
 * peak RSS is speedlayer's alone:
 *
 *   node --expose-gc --import tsx scripts/bench-speedlayer.ts --file EVENTS.csv
 *     --data-dir DIR --out RESULT.json [--events N] [--partitions 16]
 *     [--lateness-ms 600000] [--cpu-prof FILE.cpuprofile]
 *
 * 1. runReplay over the file with durable LevelDB state and the embedded
 *    warehouse (PGlite) in DIR, watermarkMode 'event-time'. Ingest time runs
 *    from the replay's 'replay started' log line (warehouse and state open,
 *    first batch next) to 'replay finished' (after the final round).
 * 2. Reads the rows back from the warehouse (the served read path), timed.
 * 3. Reopens the partition actors from LevelDB to measure the dictionaries
 *    (knownUsers, dictionaryBytes) and the native memory of the hour sets.
 *
 * Writes everything to RESULT.json; progress goes to stderr.
 */
import fs from 'node:fs';
import inspector from 'node:inspector';
import path from 'node:path';

import { Level } from 'level';
import { pino, type Logger } from 'pino';
import roaring from 'roaring';

import { resolveEngineSettings } from '../src/config/index.js';
import { runReplay, type ReplaySummary } from '../src/embedded/replay.js';
import { LevelStateStore } from '../src/shard/level-state-store.js';
import { PartitionActor } from '../src/shard/partition-actor.js';
import { hourIndexOfKey } from '../src/shard/partition-keys.js';
import { Warehouse } from '../src/sink/warehouse.js';
import {
  dirBytes,
  median,
  numberArg,
  parseArgs,
  peakRssMb,
  progress,
  requiredArg,
  stringArg,
} from './bench-lib.js';

const HOUR_MS = 3_600_000;
const READ_REPEATS = 9;

export interface SpeedlayerRow {
  readonly type: string;
  readonly startMs: number;
  readonly users: number;
  readonly version: number;
  readonly status: string;
}

export interface SpeedlayerResult {
  readonly summary: ReplaySummary;
  /** 'replay started' → 'replay finished': first batch to the end of the final round. */
  readonly ingestSeconds: number;
  /** CPU time (user + system, all threads) of the process over the ingest window. */
  readonly ingestCpuSeconds: { user: number; system: number };
  /** runReplay call → 'replay started': warehouse open + migrations, state open, coordinator resume. */
  readonly startupSeconds: number;
  /** The whole runReplay call, warehouse open and close included. */
  readonly runReplaySeconds: number;
  readonly roundsPublished: number;
  readonly peakRssAfterReplayMb: number;
  /** RSS before runReplay (node, tsx, modules loaded). */
  readonly rssBeforeReplayMb: number;
  /** RSS and peak RSS when the first batch was about to be read (warehouse and state open). */
  readonly rssAtIngestStartMb: number;
  readonly peakRssAtIngestStartMb: number;
  readonly peakRssEndMb: number;
  readonly memoryAfterReplay: NodeJS.MemoryUsage;
  /** Highest roaring.getRoaringUsedMemory() seen after any batch (hours + cached day/week unions). */
  readonly roaringPeakBytes: number;
  readonly read: {
    readonly warehouseOpenMs: number;
    readonly dauFirstMs: number;
    readonly dauWarmMs: number;
    readonly allFirstMs: number;
    readonly allWarmMs: number;
    readonly dauRows: number;
    readonly historyRows: number;
    readonly rows: SpeedlayerRow[];
  };
  readonly state: {
    readonly partitions: number;
    readonly knownUsers: number;
    readonly dictionaryResidentBytes: number;
    readonly dictionarySegmentBytes: number;
    readonly hourSets: number;
    readonly hourSetsSerializedBytes: number;
    readonly hourSetsNativeBytes: number;
    readonly engineHourlyMemberships: number;
    readonly levelDbDiskBytes: number;
    readonly warehouseDiskBytes: number;
  };
  readonly profileFile?: string;
}

const args = parseArgs();
const FILE = requiredArg(args, 'file');
const DATA_DIR = requiredArg(args, 'data-dir');
const OUT = requiredArg(args, 'out');
const EXPECTED = numberArg(args, 'events', 0);
const PARTITIONS = numberArg(args, 'partitions', 16);
const LATENESS_MS = numberArg(args, 'lateness-ms', 10 * 60_000);
const PROFILE = stringArg(args, 'cpu-prof');

/** Called on the first log line of each message (profiling hooks in). */
let onMark: (msg: string) => void = () => undefined;

const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined);

interface Mark {
  readonly t: number;
  /** process.cpuUsage(): user and system µs of this process so far. */
  readonly cpu: NodeJS.CpuUsage;
  readonly rssMb: number;
  readonly peakRssMb: number;
}

/** A pino logger to a file that also notes when each message was first logged. */
function markingLogger(
  file: string,
  marks: Map<string, Mark>,
  counts: Map<string, number>,
): Logger {
  return pino(
    {
      level: 'info',
      hooks: {
        logMethod(inputArgs, method) {
          const msg = inputArgs.find((a): a is string => typeof a === 'string');
          if (msg !== undefined) {
            if (!marks.has(msg)) {
              marks.set(msg, {
                t: performance.now(),
                cpu: process.cpuUsage(),
                rssMb: process.memoryUsage.rss() / 1048576,
                peakRssMb: peakRssMb(),
              });
              onMark(msg);
            }
            counts.set(msg, (counts.get(msg) ?? 0) + 1);
          }
          method.apply(this, inputArgs);
        },
      },
    },
    pino.destination({ dest: file, sync: false }),
  );
}

function post<T>(session: inspector.Session, method: string, params?: object): Promise<T> {
  return new Promise((resolve, reject) => {
    session.post(method, params ?? {}, (err, result) => (err ? reject(err) : resolve(result as T)));
  });
}

function cpuBetween(a: Mark | undefined, b: Mark | undefined): { user: number; system: number } {
  if (a === undefined || b === undefined) return { user: Number.NaN, system: Number.NaN };

  return { user: (b.cpu.user - a.cpu.user) / 1e6, system: (b.cpu.system - a.cpu.system) / 1e6 };
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const value = await fn();

  return [value, performance.now() - t];
}

async function main(): Promise<void> {
  fs.mkdirSync(DATA_DIR, { recursive: true });
  const marks = new Map<string, Mark>();
  const logCounts = new Map<string, number>();
  const logger = markingLogger(path.join(DATA_DIR, 'replay.log'), marks, logCounts);
  const settings = resolveEngineSettings({
    partitions: PARTITIONS,
    allowedLatenessMs: LATENESS_MS,
    watermarkMode: 'event-time',
  });

  // The profile covers the ingest window only: it starts and stops on the replay's
  // 'replay started' and 'replay finished' log lines (an in-thread session's post runs
  // synchronously), so the warehouse's startup and close are not in it.
  let session: inspector.Session | null = null;
  let profile: unknown = null;
  if (PROFILE !== undefined) {
    const s = new inspector.Session();
    s.connect();
    await post(s, 'Profiler.enable');
    await post(s, 'Profiler.setSamplingInterval', { interval: 1000 });
    session = s;
    onMark = (msg) => {
      if (msg === 'replay started') s.post('Profiler.start');
      if (msg === 'replay finished') {
        s.post('Profiler.stop', (err, result) => {
          if (err === null) profile = result.profile;
        });
      }
    };
  }

  const rssBeforeReplayMb = process.memoryUsage.rss() / 1048576;
  let roaringPeakBytes = 0;
  let nextReport = 500_000;
  let firstBatchAt = Number.NaN;
  const t0 = performance.now();
  progress(
    `speedlayer: replaying ${FILE} (${PARTITIONS} partitions, lateness ${LATENESS_MS / 60_000} min, event-time watermark)`,
  );
  const summary = await runReplay({
    paths: [FILE],
    read: { format: 'csv', userField: 'user_id', timeField: 'event_time', timeFormat: 'iso' },
    dataDir: DATA_DIR,
    settings,
    logger,
    onProgress: (p) => {
      if (Number.isNaN(firstBatchAt)) firstBatchAt = performance.now();
      const used = roaring.getRoaringUsedMemory();
      if (used > roaringPeakBytes) roaringPeakBytes = used;
      if (p.records >= nextReport) {
        const s = (performance.now() - (marks.get('replay started')?.t ?? t0)) / 1000;
        const of = EXPECTED > 0 ? ` / ${(EXPECTED / 1e6).toFixed(1)}M` : '';
        progress(
          `speedlayer: ${(p.records / 1e6).toFixed(1)}M${of} events, ${Math.round(p.records / s).toLocaleString('en-US')} ev/s, RSS ${Math.round(process.memoryUsage.rss() / 1048576)} MB`,
        );
        nextReport += 500_000;
      }
    },
  });
  const t1 = performance.now();
  const peakRssAfterReplayMb = peakRssMb();
  const memoryAfterReplay = process.memoryUsage();

  let profileFile: string | undefined;
  if (session !== null && PROFILE !== undefined) {
    if (profile === null)
      profile = (await post<{ profile: unknown }>(session, 'Profiler.stop')).profile;
    fs.writeFileSync(PROFILE, JSON.stringify(profile));
    session.disconnect();
    profileFile = PROFILE;
  }

  const started = marks.get('replay started')?.t ?? firstBatchAt;
  const finished = marks.get('replay finished')?.t ?? t1;
  progress(
    `speedlayer: replay done in ${((finished - started) / 1000).toFixed(1)} s (+${((started - t0) / 1000).toFixed(1)} s startup); reading rows back`,
  );

  // --- the served read path -----------------------------------------------------------
  const [warehouse, warehouseOpenMs] = await timed(() => Warehouse.open({ dataDir: DATA_DIR }));
  let read: SpeedlayerResult['read'];
  try {
    const [dau, dauFirstMs] = await timed(() => warehouse.queryCurrent({ periodType: 'day' }));
    const dauTimes: number[] = [];
    for (let i = 0; i < READ_REPEATS; i++)
      dauTimes.push((await timed(() => warehouse.queryCurrent({ periodType: 'day' })))[1]);
    const [all, allFirstMs] = await timed(() => warehouse.queryCurrent());
    const allTimes: number[] = [];
    for (let i = 0; i < READ_REPEATS; i++)
      allTimes.push((await timed(() => warehouse.queryCurrent()))[1]);
    const history = await warehouse.queryHistory();
    read = {
      warehouseOpenMs,
      dauFirstMs,
      dauWarmMs: median(dauTimes),
      allFirstMs,
      allWarmMs: median(allTimes),
      dauRows: dau.length,
      historyRows: history.length,
      rows: all.map((r) => ({
        type: r.periodType,
        startMs: r.periodStartMs,
        users: r.distinctUsers,
        version: r.version,
        status: r.status,
      })),
    };
  } finally {
    await warehouse.close();
  }

  // --- state: sizes in LevelDB, then the actors reopened ------------------------------
  const stateDir = path.join(DATA_DIR, 'state');
  const hoursByPartition = new Map<number, number[]>();
  let hourSetsSerializedBytes = 0;
  let dictionarySegmentBytes = 0;
  {
    const db = new Level<string, Uint8Array>(stateDir, {
      keyEncoding: 'utf8',
      valueEncoding: 'view',
    });
    await db.open();
    for await (const [key, value] of db.iterator({ gte: 'p/', lt: 'p0' })) {
      const m = /^p\/(\d+)\/(d|h)\//.exec(key);
      if (m === null) continue;
      if (m[2] === 'd') {
        dictionarySegmentBytes += value.byteLength;
      } else {
        hourSetsSerializedBytes += value.byteLength;
        const p = Number(m[1]);
        let list = hoursByPartition.get(p);
        if (list === undefined) hoursByPartition.set(p, (list = []));
        list.push(hourIndexOfKey(key));
      }
    }
    await db.close();
  }

  gc();
  gc();
  const store = await LevelStateStore.open(stateDir);
  let state: SpeedlayerResult['state'];
  try {
    // Measured before the actors open: an actor loads the hours of open weeks on open.
    const before = roaring.getRoaringUsedMemory();
    const actors: PartitionActor[] = [];
    for (let p = 0; p < PARTITIONS; p++)
      actors.push(
        await PartitionActor.open({ partition: p, allowedLatenessMs: LATENESS_MS }, store),
      );
    let engineHourlyMemberships = 0;
    let hourSets = 0;
    for (const actor of actors) {
      const keys = (hoursByPartition.get(actor.partition) ?? []).map((h) => `hour:${h * HOUR_MS}`);
      hourSets += keys.length;
      for (const n of (await actor.counts(keys)).values()) engineHourlyMemberships += n;
    }
    const hourSetsNativeBytes = roaring.getRoaringUsedMemory() - before;
    state = {
      partitions: actors.length,
      knownUsers: actors.reduce((n, a) => n + a.knownUsers, 0),
      dictionaryResidentBytes: actors.reduce((n, a) => n + a.dictionaryBytes, 0),
      dictionarySegmentBytes,
      hourSets,
      hourSetsSerializedBytes,
      hourSetsNativeBytes,
      engineHourlyMemberships,
      levelDbDiskBytes: dirBytes(stateDir),
      warehouseDiskBytes: dirBytes(path.join(DATA_DIR, 'warehouse')),
    };
  } finally {
    await store.close();
  }

  const result: SpeedlayerResult = {
    summary,
    ingestSeconds: (finished - started) / 1000,
    startupSeconds: (started - t0) / 1000,
    ingestCpuSeconds: cpuBetween(marks.get('replay started'), marks.get('replay finished')),
    runReplaySeconds: (t1 - t0) / 1000,
    roundsPublished: logCounts.get('round published') ?? 0,
    peakRssAfterReplayMb,
    rssBeforeReplayMb,
    rssAtIngestStartMb: marks.get('replay started')?.rssMb ?? Number.NaN,
    peakRssAtIngestStartMb: marks.get('replay started')?.peakRssMb ?? Number.NaN,
    peakRssEndMb: peakRssMb(),
    memoryAfterReplay,
    roaringPeakBytes,
    read,
    state,
    profileFile,
  };
  fs.writeFileSync(OUT, JSON.stringify(result));
  logger.flush();
}

await main();
