/**
 * Every shared real dataset, replayed from the command line and read back
 * with `query --format csv`, gives exactly the rows of its
 * expected-counts.csv: on the embedded store and on the real PostgreSQL
 * server (when SPEEDLAYER_TEST_POSTGRES_URL is set). The commit history is
 * replayed twice: in file order with the watermark following event times,
 * and in receive-time order (committer date) with the watermark following
 * that clock, where most of its periods are restated by late commits.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';

import { runCli } from '../support/cli.js';
import { postgresTestUrl } from '../support/postgres.js';

const DATA = fileURLToPath(new URL('../../datasets/', import.meta.url));
const APACHE = path.join(DATA, 'elastic-apache-logs');
const GIT = path.join(DATA, 'git-git-commits');
const GIT_FLAGS = ['--user-field', 'author_email', '--time-field', 'author_date', '--event-id-field', 'commit', '--restatement-horizon', '10000d'];

const cases = [
  { name: 'elastic-apache-logs', dir: APACHE, args: [path.join(APACHE, 'apache_logs'), '--format', 'combined'], restated: false },
  { name: 'git-git-commits in file order', dir: GIT, args: [path.join(GIT, 'git-git-commits.csv.gz'), ...GIT_FLAGS], restated: true },
  {
    name: 'git-git-commits in receive order',
    dir: GIT,
    args: [path.join(GIT, 'git-git-commits.csv.gz'), ...GIT_FLAGS, '--receive-time-field', 'committer_date', '--max-future-skew', '2d'],
    restated: true,
  },
];

const postgresUrl = postgresTestUrl();
const backends = [
  { backend: 'embedded', flags: (): string[] => [] },
  ...(postgresUrl === undefined ? [] : [{ backend: 'postgres', flags: (schema: string): string[] => ['--postgres', postgresUrl, '--postgres-schema', schema] }]),
];
const tempDirs: string[] = [];
const schemas: string[] = [];

afterAll(async () => {
  for (const dir of tempDirs) await fsp.rm(dir, { recursive: true, force: true });
  if (postgresUrl !== undefined && schemas.length > 0) {
    const client = new pg.Client({ connectionString: postgresUrl });
    await client.connect();
    for (const schema of schemas) await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await client.end();
  }
});

describe.each(backends)('datasets on the $backend store', ({ flags }) => {
  it.each(cases)('$name matches expected-counts.csv', async ({ dir, args, restated }) => {
    const dataDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'speedlayer-dataset-'));
    tempDirs.push(dataDir);
    const schema = `sl_dataset_${Math.random().toString(36).slice(2, 10)}`;
    schemas.push(schema);
    const store = ['--data-dir', dataDir, ...flags(schema)];

    const replay = await runCli(['replay', ...args, ...store, '--no-progress', '--log-level', 'silent']);
    expect(replay.stderr).toBe('');
    expect(replay.code).toBe(0);
    expect(replay.stdout).toMatch(/rejected: +0\n/);

    const query = await runCli(['query', '--format', 'csv', ...store]);
    expect(query.code).toBe(0);
    const lines = query.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe('period_type,period_start,distinct_users,version,status');

    const expected = fs.readFileSync(path.join(dir, 'expected-counts.csv'), 'utf8').trimEnd().split('\n').slice(1);
    const actual = lines.slice(1).map((l) => l.split(',').slice(0, 3).join(','));
    expect(actual.length).toBe(expected.length);
    expect(actual).toEqual(expected);

    const statuses = new Set(lines.slice(1).map((l) => l.split(',')[4]));
    expect(statuses.has('restated')).toBe(restated);
    expect(statuses.has('provisional')).toBe(false);
  });
});
