/**
 * The PostgreSQL baseline of `npm run bench`, on a real server: COPY the raw
 * events into a scratch table, then count(DISTINCT user_id) per hour, day and
 * ISO week (date_trunc('week') is Monday-based) at query time, as
 * shared/bench/peers/peers/postgres.mjs does. One cold pass (the first read
 * after the load, which also sets hint bits) and one warm pass, each query
 * timed on its own; both are checked against the oracle. The table is dropped
 * at the end.
 */
import fs from 'node:fs';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';

import {
  compareCounts,
  countKey,
  progress,
  type BenchPeriodType,
  type Comparison,
  type Counts,
} from './bench-lib.js';

export interface PostgresPass {
  readonly hourMs: number;
  readonly dayMs: number;
  readonly weekMs: number;
  readonly allMs: number;
  readonly comparison: Comparison;
}

export interface PostgresResult {
  readonly serverVersion: string;
  readonly settings: Record<string, string>;
  readonly events: number;
  readonly copySeconds: number;
  readonly analyzeSeconds: number;
  readonly cold: PostgresPass;
  readonly warm: PostgresPass;
  /** VmHWM of the session's backend process, if it runs on this machine. */
  readonly backendPeakRssMb: number | null;
  readonly heapBytes: number;
}

const QUERIES: Record<BenchPeriodType, (table: string) => string> = {
  hour: (t) =>
    `SELECT date_trunc('hour', event_time) AS p, count(DISTINCT user_id)::int AS c FROM ${t} GROUP BY 1 ORDER BY 1`,
  day: (t) =>
    `SELECT date_trunc('day', event_time) AS p, count(DISTINCT user_id)::int AS c FROM ${t} GROUP BY 1 ORDER BY 1`,
  week: (t) =>
    `SELECT date_trunc('week', event_time) AS p, count(DISTINCT user_id)::int AS c FROM ${t} GROUP BY 1 ORDER BY 1`,
};

/** Connects, or returns why it could not. */
export async function connectPostgres(url: string): Promise<pg.Client | string> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return client;
  } catch (error) {
    await client.end().catch(() => undefined);
    return error instanceof Error ? error.message || error.name : String(error);
  }
}

function backendHwmMb(pid: number): number | null {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    if (!/^Name:\s+postgres/m.test(status)) return null;
    const m = /^VmHWM:\s+(\d+) kB/m.exec(status);

    return m === null ? null : Number(m[1]) / 1024;
  } catch {
    return null;
  }
}

export async function runPostgres(
  client: pg.Client,
  file: string,
  oracle: Counts,
  expectedEvents: number,
): Promise<PostgresResult> {
  const table = `speedlayer_bench_events_${process.pid}`;
  await client.query("SET TIME ZONE 'UTC'");
  const pid = Number(
    (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid,
  );
  const serverVersion = String(
    (await client.query<{ server_version: string }>('SHOW server_version')).rows[0]?.server_version,
  );
  const settings = Object.fromEntries(
    (
      await client.query<{ name: string; v: string }>(
        "SELECT name, current_setting(name) AS v FROM pg_settings WHERE name IN ('work_mem','shared_buffers','max_parallel_workers_per_gather','synchronous_commit')",
      )
    ).rows.map((r) => [r.name, r.v]),
  );

  await client.query(`DROP TABLE IF EXISTS ${table}`);
  await client.query(
    `CREATE TABLE ${table} (user_id text NOT NULL, event_time timestamptz NOT NULL)`,
  );
  try {
    const total = fs.statSync(file).size;
    let sent = 0;
    let nextReport = 0.25;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        sent += chunk.length;
        if (sent / total >= nextReport) {
          progress(
            `postgres: COPY ${Math.round((sent / total) * 100)} % of ${(total / 1048576).toFixed(0)} MB`,
          );
          nextReport += 0.25;
        }
        done(null, chunk);
      },
    });
    progress(`postgres: COPY ${file} into ${table}`);
    const t0 = performance.now();
    await pipeline(
      fs.createReadStream(file, { highWaterMark: 1 << 20 }),
      meter,
      client.query(
        copyFrom(`COPY ${table} (user_id, event_time) FROM STDIN WITH (FORMAT csv, HEADER true)`),
      ),
    );
    const t1 = performance.now();
    await client.query(`ANALYZE ${table}`);
    const t2 = performance.now();
    const events = Number(
      (await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`)).rows[0]?.n,
    );
    if (expectedEvents > 0 && events !== expectedEvents)
      progress(`postgres: WARNING loaded ${events} rows, expected ${expectedEvents}`);

    const pass = async (label: string): Promise<PostgresPass> => {
      const got: Counts = new Map();
      const ms: Record<BenchPeriodType, number> = { hour: 0, day: 0, week: 0 };
      for (const type of ['hour', 'day', 'week'] as const) {
        progress(`postgres: ${label} count(DISTINCT) per ${type}`);
        const s = performance.now();
        const { rows } = await client.query<{ p: Date; c: number }>(QUERIES[type](table));
        ms[type] = performance.now() - s;
        for (const r of rows) got.set(countKey(type, r.p.getTime()), r.c);
      }

      return {
        hourMs: ms.hour,
        dayMs: ms.day,
        weekMs: ms.week,
        allMs: ms.hour + ms.day + ms.week,
        comparison: compareCounts(oracle, got),
      };
    };
    const cold = await pass('cold');
    const warm = await pass('warm');
    const size = (
      await client.query<{ heap: string }>(`SELECT pg_relation_size('${table}')::bigint AS heap`)
    ).rows[0];

    return {
      serverVersion,
      settings,
      events,
      copySeconds: (t1 - t0) / 1000,
      analyzeSeconds: (t2 - t1) / 1000,
      cold,
      warm,
      backendPeakRssMb: backendHwmMb(pid),
      heapBytes: Number(size?.heap ?? 0),
    };
  } finally {
    await client.query(`DROP TABLE IF EXISTS ${table}`);
  }
}
