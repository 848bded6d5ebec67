/**
 * `npm run bench:watch`: what one WatchVersions poll costs the warehouse, over a
 * history of a year of hours, days and weeks with a restatement for every period,
 * side by side: reading the range's whole history (what a poll did before it kept a
 * horizon) and reading what was written since the stream's horizon (what it does now,
 * over the index on written_at). Each stream polls every 500 ms, so this is the load a
 * watcher puts on the database while nothing changes.
 *
 *   npm run bench:watch -- [--postgres URL] [--years N] [--polls K]
 *
 * PostgreSQL at --postgres, else $SPEEDLAYER_BENCH_POSTGRES_URL, else
 * postgres://postgres@127.0.0.1:5432/test, in a schema of its own that is dropped after.
 */
import { randomBytes } from 'node:crypto';

import pg from 'pg';

import { DAY_MS, HOUR_MS, WEEK_MS, weekStart } from '../src/periods/index.js';
import { Warehouse, type VersionWrite } from '../src/sink/index.js';
import { fmtInt, fmtNum, numberArg, parseArgs, progress, stringArg } from './bench-lib.js';

const args = parseArgs();
const postgresUrl =
  stringArg(args, 'postgres') ??
  process.env.SPEEDLAYER_BENCH_POSTGRES_URL ??
  'postgres://postgres@127.0.0.1:5432/test';
const years = numberArg(args, 'years', 1);
const polls = numberArg(args, 'polls', 50);
const START = Date.UTC(2025, 0, 6); // a Monday

/** v1 and a restated v2 of every hour, day and week in `years` years. */
function history(): VersionWrite[] {
  const out: VersionWrite[] = [];
  const endMs = START + Math.round(years * 365) * DAY_MS;
  const add = (type: VersionWrite['periodType'], startMs: number, lengthMs: number): void => {
    for (const version of [1, 2]) {
      out.push({
        periodType: type,
        periodStartMs: startMs,
        version,
        distinctUsers: 1000 + version,
        status: version === 1 ? 'final' : 'restated',
        reason: version === 1 ? 'closed' : 'restated: +1 users from 1 late events',
        watermarkMs: startMs + lengthMs + 600_000,
      });
    }
  };
  for (let t = START; t < endMs; t += HOUR_MS) add('hour', t, HOUR_MS);
  for (let t = START; t < endMs; t += DAY_MS) add('day', t, DAY_MS);
  for (let t = weekStart(START); t < endMs; t += WEEK_MS) add('week', t, WEEK_MS);

  return out;
}

async function timePolls(read: () => Promise<unknown[]>): Promise<{ ms: number; rows: number }> {
  await read(); // warm the plan and the cache
  let rows = 0;
  const t0 = performance.now();
  for (let i = 0; i < polls; i++) rows = (await read()).length;

  return { ms: (performance.now() - t0) / polls, rows };
}

async function main(): Promise<void> {
  const schema = `sl_bench_watch_${randomBytes(4).toString('hex')}`;
  const warehouse = await Warehouse.open({ postgresUrl, schema });
  try {
    const fence = { ringEpoch: 1, fencingToken: 1 };
    await warehouse.claimFence(fence);
    // The year as it was written: each version some minutes after its period ended (the
    // table is append-only, so the rows go in with their written_at), then one publish now.
    const versions = history();
    const latest = versions.splice(-6);
    progress(`writing ${fmtInt(versions.length + latest.length)} versions`);
    const client = new pg.Client({ connectionString: postgresUrl });
    await client.connect();
    try {
      await client.query(`SET search_path TO ${schema}`);
      for (let i = 0; i < versions.length; i += 5_000) {
        const rows = versions.slice(i, i + 5_000);
        await client.query(
          `INSERT INTO period_version (period_type, period_start, version, distinct_users, status,
             reason, written_at, watermark, ring_epoch, fencing_token)
           SELECT t, to_timestamp(s / 1000), v, u, st, r, to_timestamp(w / 1000 + v * 3600),
             to_timestamp(w / 1000), 1, 1
           FROM unnest($1::text[], $2::float8[], $3::int[], $4::bigint[], $5::text[], $6::text[],
             $7::float8[]) AS x(t, s, v, u, st, r, w)`,
          [
            rows.map((v) => v.periodType),
            rows.map((v) => v.periodStartMs),
            rows.map((v) => v.version),
            rows.map((v) => v.distinctUsers),
            rows.map((v) => v.status),
            rows.map((v) => v.reason),
            rows.map((v) => v.watermarkMs),
          ],
        );
      }
    } finally {
      await client.end();
    }
    await warehouse.publish({ versions: latest, provisional: [] }, fence);
    const all = await warehouse.queryHistory();
    const newest = Math.max(...all.map((row) => row.writtenAtMs));
    // A stream's horizon: the newest written_at it saw, less the 60 s reorder window.
    const horizonMs = newest - 60_000;

    progress(`timing ${polls} polls each way`);
    const whole = await timePolls(() => warehouse.queryHistory({}));
    const since = await timePolls(() => warehouse.queryHistory({}, { writtenSinceMs: horizonMs }));
    const idle = await timePolls(() => warehouse.queryHistory({}, { writtenSinceMs: newest + 1 }));

    // A stream polls twice a second: the share of one core its polls keep busy.
    const line = (name: string, r: { ms: number; rows: number }): string =>
      `| ${name} | ${fmtInt(r.rows)} | ${fmtNum(r.ms, 2)} | ${fmtNum((r.ms * 2) / 10, 1)}% |`;
    process.stdout.write(
      [
        `WatchVersions poll over ${fmtInt(all.length)} versions (${years} year(s) of hours, days and weeks, two versions each), PostgreSQL ${postgresUrl.replace(/\/\/[^@]*@/, '//')}, mean of ${polls} polls`,
        '',
        '| poll | rows read | ms per poll | one core busy at 2 polls/s |',
        '| --- | ---: | ---: | ---: |',
        line('whole history of the range (before)', whole),
        line('written since the horizon, right after a publish (now)', since),
        line('written since the horizon, nothing new (now)', idle),
        '',
      ].join('\n'),
    );
  } finally {
    await warehouse.close();
    const client = new pg.Client({ connectionString: postgresUrl });
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await client.end();
  }
}

await main();
