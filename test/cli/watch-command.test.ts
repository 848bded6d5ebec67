/**
 * `speedlayer watch` as real processes against a Query server in this process, over an
 * embedded warehouse the test publishes versions into. Scenarios:
 * - a csv and a json watcher print each version published after they started once, in
 *   the order written, with the change of a restatement from the version before it
 *   (also when that one was published before they started); versions that existed
 *   before, and those outside --period, --from and --to, are not printed;
 * - the server stops mid-stream, versions are published while it is down, and it comes
 *   back on the same port: both watchers resume and print what they missed, once;
 * - SIGTERM and SIGINT end a watcher with exit code 0;
 * - --since first prints the versions written since then (table format);
 * - with nothing listening it gives up after --stall-timeout with exit code 1;
 * - --from not before --to is refused.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { DAY_MS, HOUR_MS } from '../../src/periods/index.js';
import {
  Warehouse,
  type PeriodRange,
  type VersionRow,
  type VersionWrite,
  type WriterFence,
} from '../../src/sink/index.js';
import { startQueryServer, type QueryServer } from '../../src/transport/query-server.js';
import { runCli } from '../support/cli.js';

const BIN = path.resolve(import.meta.dirname, '../../bin/speedlayer.js');
const FENCE: WriterFence = { ringEpoch: 1, fencingToken: 1 };
const POLL_MS = 40;

/** June 2026: the range the restart scenario watches. */
const JUNE = { from: '2026-06-01', to: '2026-07-01' };
const DAY_X = Date.UTC(2026, 5, 10);
const DAY_Y = Date.UTC(2026, 5, 11);
const DAY_W = Date.UTC(2026, 5, 12);
/** August 2026: the range the --since scenario watches. */
const DAY_A = Date.UTC(2026, 7, 3);
const DAY_B = Date.UTC(2026, 7, 4);
const DAY_C = Date.UTC(2026, 7, 5);

let dir: string;
let warehouse: Warehouse;
const servers: QueryServer[] = [];
const children: ChildProcess[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'speedlayer-watch-'));
  warehouse = await Warehouse.open({ dataDir: path.join(dir, 'store') });
  await warehouse.claimFence(FENCE);
});

afterEach(async () => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
  for (const server of servers.splice(0)) await server.close();
});

afterAll(async () => {
  await warehouse?.close();
  await rm(dir, { recursive: true, force: true });
});

function version(
  periodStartMs: number,
  n: number,
  distinctUsers: number,
  overrides: Partial<VersionWrite> = {},
): VersionWrite {
  return {
    periodType: 'day',
    periodStartMs,
    version: n,
    distinctUsers,
    status: n === 1 ? 'final' : 'restated',
    reason: n === 1 ? 'closed' : 'late events',
    watermarkMs: periodStartMs + DAY_MS + HOUR_MS,
    ...overrides,
  };
}

async function publish(...versions: VersionWrite[]): Promise<void> {
  await warehouse.publish({ versions, provisional: [] }, FENCE);
}

async function serve(address = '127.0.0.1:0'): Promise<QueryServer> {
  const server = await startQueryServer({
    warehouse,
    address,
    pollIntervalMs: POLL_MS,
    shutdownGraceMs: 1_000,
  });
  servers.push(server);

  return server;
}

/** Resolves once `done()` holds, polling every 20 ms, or fails after `timeoutMs`. */
async function waitFor(what: string, done: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

interface LogLine {
  readonly msg: string;
  readonly level: number;
  readonly component?: string;
}

/** A `speedlayer watch` process: its stdout lines and its log lines, as they come. */
class Watcher {
  readonly lines: string[] = [];
  readonly logs: LogLine[] = [];
  private readonly child: ChildProcess;
  private readonly exited: Promise<number | null>;

  constructor(
    readonly name: string,
    args: readonly string[],
  ) {
    const child = spawn(process.execPath, [BIN, 'watch', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    this.exited = new Promise((resolve) => child.once('exit', resolve));
    createInterface({ input: child.stdout }).on('line', (line) => this.lines.push(line));
    createInterface({ input: child.stderr }).on('line', (text) => {
      this.logs.push(JSON.parse(text) as LogLine);
    });
    this.child = child;
  }

  /** Log messages in order, without the failed connection attempts (how many is timing). */
  get events(): string[] {
    return this.logs.map((l) => l.msg).filter((msg) => msg !== 'watch stream failed to open');
  }

  async waitForLog(msg: string): Promise<void> {
    await waitFor(`${this.name}: '${msg}'`, () => this.logs.some((l) => l.msg === msg));
  }

  async waitForLines(count: number): Promise<void> {
    await waitFor(`${this.name}: ${count} lines`, () => this.lines.length >= count);
  }

  /** Sends `signal` and returns the exit code. */
  async stop(signal: NodeJS.Signals): Promise<number | null> {
    this.child.kill(signal);

    return this.exited;
  }
}

/** The written_at of each version in `range`, by `period_start/version`. */
async function writtenAt(range: PeriodRange): Promise<Map<string, string>> {
  const rows = await warehouse.queryHistory(range);

  return new Map(rows.map((r: VersionRow) => [`${r.periodStartMs}/${r.version}`, iso(r)]));
}

function iso(row: VersionRow): string {
  return new Date(row.writtenAtMs).toISOString();
}

describe('speedlayer watch', () => {
  it('prints each new version once, in order, across a restart of the server', async () => {
    // Before the watchers start: X v1 (its restatement later shows the change from it),
    // and an hour of the same day.
    await publish(
      version(DAY_X, 1, 10),
      version(DAY_X + 3 * HOUR_MS, 1, 4, { periodType: 'hour' }),
    );
    const server = await serve();
    const filter = ['--period', 'day', '--from', JUNE.from, '--to', JUNE.to];
    const csv = new Watcher('csv', ['--target', server.address, '--format', 'csv', ...filter]);
    const json = new Watcher('json', ['--target', server.address, '--format', 'json', ...filter]);
    const watchers = [csv, json];
    await Promise.all(watchers.map((w) => w.waitForLog('watching versions')));

    await publish(version(DAY_X, 2, 12, { reason: 'restated: +2 users from 3 late events' }));
    await Promise.all([csv.waitForLines(2), json.waitForLines(1)]);
    // An hour and a day of July are outside the filter; Y v1 is inside.
    await publish(
      version(DAY_Y, 1, 20),
      version(DAY_Y + HOUR_MS, 1, 9, { periodType: 'hour' }),
      version(Date.UTC(2026, 6, 1), 1, 99),
    );
    await Promise.all([csv.waitForLines(3), json.waitForLines(2)]);

    await server.close();
    await Promise.all(watchers.map((w) => w.waitForLog('watch stream ended')));
    // Published while no server runs: the watchers must catch up on both.
    await publish(version(DAY_Y, 2, 23, { reason: 'restated: +3 users, from "late" events' }));
    await publish(version(DAY_W, 1, 30));
    await serve(server.address);
    await Promise.all(watchers.map((w) => w.waitForLog('watch resumed')));
    await Promise.all([csv.waitForLines(5), json.waitForLines(4)]);

    await publish(version(DAY_X, 3, 11));
    await Promise.all([csv.waitForLines(6), json.waitForLines(5)]);
    // Long enough for a stray duplicate to arrive: the server polls every 40 ms.
    await sleep(10 * POLL_MS);

    expect(await csv.stop('SIGTERM')).toBe(0);
    expect(await json.stop('SIGTERM')).toBe(0);

    const at = await writtenAt({ fromMs: DAY_X, toMs: DAY_W + 1 });
    expect(csv.lines).toEqual([
      'period_type,period_start,version,distinct_users,status,reason,written_at,change',
      `day,2026-06-10T00:00:00Z,2,12,restated,restated: +2 users from 3 late events,${at.get(`${DAY_X}/2`)},2`,
      `day,2026-06-11T00:00:00Z,1,20,final,closed,${at.get(`${DAY_Y}/1`)},`,
      `day,2026-06-11T00:00:00Z,2,23,restated,"restated: +3 users, from ""late"" events",${at.get(`${DAY_Y}/2`)},3`,
      `day,2026-06-12T00:00:00Z,1,30,final,closed,${at.get(`${DAY_W}/1`)},`,
      `day,2026-06-10T00:00:00Z,3,11,restated,late events,${at.get(`${DAY_X}/3`)},-1`,
    ]);
    expect(json.lines.map((line) => JSON.parse(line) as unknown)).toEqual([
      {
        period_type: 'day',
        period_start: '2026-06-10T00:00:00Z',
        version: 2,
        distinct_users: 12,
        status: 'restated',
        reason: 'restated: +2 users from 3 late events',
        written_at: at.get(`${DAY_X}/2`),
        change: 2,
      },
      {
        period_type: 'day',
        period_start: '2026-06-11T00:00:00Z',
        version: 1,
        distinct_users: 20,
        status: 'final',
        reason: 'closed',
        written_at: at.get(`${DAY_Y}/1`),
        change: null,
      },
      {
        period_type: 'day',
        period_start: '2026-06-11T00:00:00Z',
        version: 2,
        distinct_users: 23,
        status: 'restated',
        reason: 'restated: +3 users, from "late" events',
        written_at: at.get(`${DAY_Y}/2`),
        change: 3,
      },
      {
        period_type: 'day',
        period_start: '2026-06-12T00:00:00Z',
        version: 1,
        distinct_users: 30,
        status: 'final',
        reason: 'closed',
        written_at: at.get(`${DAY_W}/1`),
        change: null,
      },
      {
        period_type: 'day',
        period_start: '2026-06-10T00:00:00Z',
        version: 3,
        distinct_users: 11,
        status: 'restated',
        reason: 'late events',
        written_at: at.get(`${DAY_X}/3`),
        change: -1,
      },
    ]);
    for (const watcher of watchers) {
      expect(watcher.events).toEqual(['watching versions', 'watch stream ended', 'watch resumed']);
      expect(watcher.logs.every((l) => l.component === 'watch' && l.level === 30)).toBe(true);
    }
  });

  it('with --since first prints the versions written since then, as a table', async () => {
    await publish(version(DAY_A, 1, 5));
    const rows = await warehouse.queryHistory({ fromMs: DAY_A, toMs: DAY_A + 1 });
    const afterA = (rows[0] as VersionRow).writtenAtMs + 1;
    await waitFor('the clock to pass A', () => Date.now() > afterA);
    await publish(version(DAY_B, 1, 7));
    await publish(version(DAY_B, 2, 1_234_567, { reason: 'restated: many late events' }));
    const server = await serve();

    const table = new Watcher('table', [
      '--target',
      server.address,
      '--since',
      new Date(afterA).toISOString(),
      '--from',
      '2026-08-01',
      '--to',
      '2026-09-01',
    ]);
    await table.waitForLog('watching versions');
    await publish(version(DAY_C, 1, 0));
    await table.waitForLines(5);
    await sleep(10 * POLL_MS);

    expect(await table.stop('SIGINT')).toBe(0);

    const at = await writtenAt({ fromMs: DAY_A, toMs: DAY_C + 1 });
    expect(table.lines).toEqual([
      'period_type  period_start          version  distinct_users    change  status    written_at                reason',
      '-----------  --------------------  -------  --------------  --------  --------  ------------------------  ------',
      `day          2026-08-04T00:00:00Z        1               7            final     ${at.get(`${DAY_B}/1`)}  closed`,
      `day          2026-08-04T00:00:00Z        2         1234567  +1234560  restated  ${at.get(`${DAY_B}/2`)}  restated: many late events`,
      `day          2026-08-05T00:00:00Z        1               0            final     ${at.get(`${DAY_C}/1`)}  closed`,
    ]);
    expect(table.events).toEqual(['watching versions']);
  });

  it('gives up with exit code 1 when nothing listens for --stall-timeout', async () => {
    const port = await closedPort();

    const run = await runCli([
      'watch',
      '--target',
      `127.0.0.1:${port}`,
      '--stall-timeout',
      '1s',
      '--log-level',
      'silent',
    ]);

    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(
      new RegExp(
        `^speedlayer: \\[SL-QUERY-101\\] no WatchVersions stream from 127\\.0\\.0\\.1:${port} for 1s \\(--stall-timeout\\); last failure: \\[SL-QUERY-003\\] cannot reach the query service at 127\\.0\\.0\\.1:${port}`,
      ),
    );
    // No stream ever opened: not even the header.
    expect(run.stdout).toBe('');

    const zero = await runCli(['watch', '--target', `127.0.0.1:${port}`, '--stall-timeout', '0s']);
    expect(zero.code).toBe(2);
    expect(zero.stderr).toContain("--stall-timeout: must be longer than 0: '0s'");
  });

  it('refuses --from that is not before --to', async () => {
    const run = await runCli([
      'watch',
      '--target',
      '127.0.0.1:7400',
      '--from',
      '2026-06-02',
      '--to',
      '2026-06-01',
    ]);

    expect(run).toEqual({
      code: 2,
      stdout: '',
      stderr: 'speedlayer: [SL-CLI-002] --from must be before --to\n',
    });
  });
});

/** A loopback port where nothing listens. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');

  return address.port;
}
