/**
 * What the real-process cluster tests share: `speedlayer` run as a child process the way
 * a user runs it, the datasets' expected counts, and the checks on a version history
 * (comparable fields, versions 1..n without gaps or duplicates).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';

import pg from 'pg';

import type { Counts } from './oracle.js';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const BIN = path.join(ROOT, 'bin/speedlayer.js');
export const APACHE_DIR = path.join(ROOT, 'datasets/elastic-apache-logs');
export const APACHE_FILE = path.join(APACHE_DIR, 'apache_logs');
export const APACHE_FLAGS = ['--format', 'combined'];
export const GIT_DIR = path.join(ROOT, 'datasets/git-git-commits');
export const GIT_FILE = path.join(GIT_DIR, 'git-git-commits.csv.gz');
export const GIT_FLAGS = [
  '--user-field',
  'author_email',
  '--time-field',
  'author_date',
  '--event-id-field',
  'commit',
];

/** A `speedlayer` child process: its output so far and how it ended. */
export interface SpeedlayerRun {
  readonly child: ChildProcess;
  /** Resolves when it has exited and its output is read. */
  readonly done: Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** The JSON log lines it wrote to stderr so far. */
  readonly logLines: Record<string, unknown>[];
}

/** Runs `speedlayer ARGS` as a child process. */
export function runSpeedlayer(args: readonly string[]): SpeedlayerRun {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const logLines: Record<string, unknown>[] = [];
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (line) => {
    stderr += `${line}\n`;
    if (!line.startsWith('{')) return;
    try {
      logLines.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // Not a log line.
    }
  });
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.once('close', (code) => resolve({ code, stdout, stderr })),
  );

  return { child, done, logLines };
}

/** Resolves with the first log line of `run` with message `msg`; fails if it exits first. */
export async function untilLogged(
  run: SpeedlayerRun,
  msg: string,
  timeoutMs = 30_000,
): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const line = run.logLines.find((l) => l.msg === msg);
    if (line !== undefined) return line;
    if (run.child.exitCode !== null)
      throw new Error(`exited (${run.child.exitCode}) before '${msg}'`);
    if (Date.now() > deadline) throw new Error(`no '${msg}' within ${timeoutMs} ms`);
    await sleep(20);
  }
}

/** A dataset's `expected-counts.csv` as `type,startIso` -> distinct users. */
export function expectedCounts(datasetDir: string): Counts {
  const text = fs.readFileSync(path.join(datasetDir, 'expected-counts.csv'), 'utf8');

  return new Map(
    text
      .trimEnd()
      .split('\n')
      .slice(1)
      .map((line) => {
        const [type, start, n] = line.split(',');
        return [`${type},${start}`, Number(n)];
      }),
  );
}

const PERIOD_TYPES: Readonly<Record<string, string>> = {
  PERIOD_TYPE_HOUR: 'hour',
  PERIOD_TYPE_DAY: 'day',
  PERIOD_TYPE_WEEK: 'week',
  hour: 'hour',
  day: 'day',
  week: 'week',
};

/** `type,startIso` of a period as the wire (`PERIOD_TYPE_HOUR`) or the warehouse (`hour`) names it. */
export function periodKeyOf(type: string, startMs: number): string {
  const name = PERIOD_TYPES[type] ?? type;

  return `${name},${new Date(startMs).toISOString().replace('.000Z', 'Z')}`;
}

/** `final` of `PERIOD_STATUS_FINAL`, or the warehouse's name unchanged. */
export function statusName(status: string): string {
  return status.replace(/^PERIOD_STATUS_/, '').toLowerCase();
}

/** One version as two runs must agree on it: no write time, fencing token or ring epoch. */
export interface ComparableVersion {
  readonly period: string;
  readonly version: number;
  readonly distinctUsers: number;
  readonly status: string;
  readonly reason: string;
}

/** A version row of the warehouse or the wire, reduced to what two runs must agree on. */
export function comparable(row: {
  periodType?: string;
  periodStartMs?: number;
  period?: { type: string; start_ms: number };
  version: number;
  distinctUsers?: number;
  distinct_users?: number;
  status: string;
  reason: string;
}): ComparableVersion {
  const type = row.period?.type ?? (row.periodType as string);
  const start = row.period?.start_ms ?? (row.periodStartMs as number);

  return {
    period: periodKeyOf(type, start),
    version: row.version,
    distinctUsers: row.distinctUsers ?? (row.distinct_users as number),
    status: statusName(row.status),
    reason: row.reason,
  };
}

/** Sorted by period, then version, so that two histories compare with toEqual. */
export function sortVersions(rows: readonly ComparableVersion[]): ComparableVersion[] {
  return [...rows].sort((a, b) =>
    a.period === b.period ? a.version - b.version : a.period < b.period ? -1 : 1,
  );
}

/**
 * What is wrong with a history's version numbers: a period whose versions are not exactly
 * 1..n (a duplicate, a gap, or not starting at 1). Empty when every period is right.
 */
export function versionProblems(
  rows: readonly { period: string; version: number }[],
  limit = 20,
): string[] {
  const byPeriod = new Map<string, number[]>();
  for (const r of rows) byPeriod.set(r.period, [...(byPeriod.get(r.period) ?? []), r.version]);

  const problems: string[] = [];
  for (const [period, versions] of byPeriod) {
    const sorted = [...versions].sort((a, b) => a - b);
    if (sorted.some((v, i) => v !== i + 1))
      problems.push(`${period}: versions ${sorted.join(',')}`);
  }

  return problems.slice(0, limit);
}

/** The latest version's count of each period of a history: what the current rows must say. */
export function latestCounts(rows: readonly ComparableVersion[]): Counts {
  const latest = new Map<string, ComparableVersion>();
  for (const r of rows) {
    const seen = latest.get(r.period);
    if (seen === undefined || seen.version < r.version) latest.set(r.period, r);
  }

  return new Map([...latest].map(([k, r]) => [k, r.distinctUsers]));
}

/** Polls `probe` until it returns something other than undefined. */
export async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 60_000,
  pollMs = 250,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(pollMs);
  }
}

/** Drops a schema the test made on the PostgreSQL server. */
export async function dropSchema(postgresUrl: string, schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: postgresUrl });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await client.end();
  }
}
