/**
 * The command line end to end on small files: rejections with reasons in
 * the dead-letter table, nested JSON paths, CSV and JSON output formats,
 * version history, filings, resuming a replay, and clear errors for bad
 * flags.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { runCli } from '../support/cli.js';

let dir: string;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'speedlayer-cli-'));
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const line = (o: unknown): string => JSON.stringify(o);

describe('speedlayer replay and query', () => {
  it('counts nested NDJSON ids, rejects bad records with reasons, and prints the exact CSV columns', async () => {
    const file = path.join(dir, 'events.ndjson.gz');
    const records = [
      line({ actor: { login: 'alice' }, at: '2026-03-29T10:15:00+02:00' }),
      line({ actor: { login: 'bob' }, at: '2026-03-29T08:59:59Z' }),
      line({ actor: { login: 123 }, at: '2026-03-29T09:30:00Z' }),
      line({ actor: { login: '123' }, at: '2026-03-29T09:31:00Z' }),
      line({ actor: { login: '  ' }, at: '2026-03-29T09:32:00Z' }),
      line({ actor: {}, at: '2026-03-29T09:33:00Z' }),
      line({ actor: { login: 'carol' }, at: 'yesterday' }),
      '{not json',
      line({ actor: { login: 'dave' }, at: '2026-03-30T23:00:00-05:00' }),
    ];
    await fs.writeFile(file, zlib.gzipSync(`${records.join('\n')}\n`));
    const store = ['--data-dir', path.join(dir, 'nd')];

    const replay = await runCli([
      'replay',
      file,
      '--user-field',
      'actor.login',
      '--time-field',
      'at',
      '--time-format',
      'iso',
      ...store,
      '--log-level',
      'silent',
    ]);
    expect(replay.code).toBe(0);
    expect(replay.stdout).toContain('records read:     9');
    expect(replay.stdout).toContain('accepted:         5');

    const csv = await runCli(['query', '--format', 'csv', ...store]);
    expect(csv.stdout).toBe(
      [
        'period_type,period_start,distinct_users,version,status',
        'hour,2026-03-29T08:00:00Z,2,1,final',
        'hour,2026-03-29T09:00:00Z,1,1,final',
        'hour,2026-03-31T04:00:00Z,1,1,final',
        'day,2026-03-29T00:00:00Z,3,1,final',
        'day,2026-03-31T00:00:00Z,1,1,final',
        'week,2026-03-23T00:00:00Z,3,1,final',
        'week,2026-03-30T00:00:00Z,1,1,final',
        '',
      ].join('\n'),
    );

    const rejects = await runCli(['rejects', '--format', 'json', ...store]);
    const summary = JSON.parse(rejects.stdout) as {
      counts: Record<string, number>;
      examples: Record<string, { line: number }[]>;
    };
    expect(summary.counts).toEqual({ invalid_user_id: 2, invalid_time: 1, malformed: 1 });
    expect(summary.examples.invalid_time?.[0]?.line).toBe(7);
  });

  it('filters by period and range, lists history, files a number and shows it beside the current one', async () => {
    const file = path.join(dir, 'late.csv');
    // In receive order: day 2026-03-29 closes at 00:10 on the 30th; bob arrives for it at 02:00.
    await fs.writeFile(
      file,
      [
        'user,event_time,received',
        'alice,2026-03-29T10:00:00Z,2026-03-29T10:00:01Z',
        'carol,2026-03-30T01:00:00Z,2026-03-30T01:00:01Z',
        'bob,2026-03-29T22:00:00Z,2026-03-30T02:00:00Z',
        '',
      ].join('\n'),
    );
    const store = ['--data-dir', path.join(dir, 'late')];
    const replay = await runCli([
      'replay',
      file,
      '--user-field',
      'user',
      '--time-field',
      'event_time',
      '--receive-time-field',
      'received',
      ...store,
      '--log-level',
      'silent',
    ]);
    expect(replay.code).toBe(0);

    const day = await runCli([
      'query',
      '--period',
      'day',
      '--from',
      '2026-03-29',
      '--to',
      '2026-03-30',
      '--format',
      'json',
      ...store,
    ]);
    expect(JSON.parse(day.stdout)).toEqual([
      {
        period_type: 'day',
        period_start: '2026-03-29T00:00:00Z',
        distinct_users: 2,
        version: 2,
        status: 'restated',
      },
    ]);

    const history = await runCli([
      'query',
      '--history',
      '--period',
      'day',
      '--format',
      'csv',
      ...store,
    ]);
    const rows = history.stdout.trimEnd().split('\n');
    expect(rows[0]).toBe(
      'period_type,period_start,version,distinct_users,status,reason,written_at',
    );
    expect(rows[1]).toMatch(/^day,2026-03-29T00:00:00Z,1,1,final,/);
    expect(rows[2]).toMatch(
      /^day,2026-03-29T00:00:00Z,2,2,restated,restated: \+1 user from 1 late event in 1 of 16 partitions,/,
    );

    const filed = await runCli([
      'file',
      '--period',
      'day',
      '--start',
      '2026-03-30',
      '--by',
      'finance',
      '--note',
      'board deck',
      ...store,
    ]);
    expect(filed.code).toBe(0);
    expect(filed.stdout).toMatch(
      /^filed #1: day 2026-03-30T00:00:00Z = 1 \(version 1\) by finance/,
    );

    const filings = await runCli(['filings', '--format', 'csv', ...store]);
    expect(filings.stdout.split('\n')[1]).toMatch(
      /^1,day,2026-03-30T00:00:00Z,1,1,1,1,final,0,finance,.*,board deck$/,
    );
  });

  it('resumes an interrupted replay and does not count a replayed file twice', async () => {
    const file = path.join(dir, 'twice.csv');
    await fs.writeFile(file, 'u,t\na,2026-01-05T10:00:00Z\nb,2026-01-05T11:00:00Z\n');
    const store = ['--data-dir', path.join(dir, 'twice')];
    const args = [
      'replay',
      file,
      '--user-field',
      'u',
      '--time-field',
      't',
      ...store,
      '--log-level',
      'silent',
    ];

    expect((await runCli(args)).code).toBe(0);
    const again = await runCli(args);
    expect(again.stdout).toContain(
      'records read:     0 (resumed: done earlier: twice.csv up to line 3)',
    );
    const csv = await runCli(['query', '--period', 'day', '--format', 'csv', ...store]);
    expect(csv.stdout).toBe(
      'period_type,period_start,distinct_users,version,status\nday,2026-01-05T00:00:00Z,2,1,final\n',
    );
  });

  it('explains bad flags and missing options', async () => {
    // Usage errors exit 2; failures of a well-formed command exit 1.
    const bad = await runCli(['replay', 'x.csv', '--allowed-lateness', 'ten minutes']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("not a duration: 'ten minutes'");
    const unknown = await runCli(['query', '--perod', 'day']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown option '--perod'");
    const missing = await runCli(['file', '--period', 'day']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("required option '--start <instant>' not specified");
    expect((await runCli(['--help'])).code).toBe(0);

    const noField = await runCli([
      'replay',
      path.join(dir, 'twice.csv'),
      '--data-dir',
      path.join(dir, 'nofield'),
      '--log-level',
      'silent',
    ]);
    // A missing field flag is a usage error, like a missing option.
    expect(noField.code).toBe(2);
    expect(noField.stderr).toContain('which needs a user field and a time field');

    const typo = await runCli(['query', '--data-dir', path.join(dir, 'no-such-dir')]);
    expect(typo.code).toBe(1);
    expect(typo.stderr).toContain('[SL-CLI-001] no speedlayer data in');

    const twice = path.join(dir, 'twice');
    const range = await runCli([
      'query',
      '--from',
      '2026-04-01',
      '--to',
      '2026-03-01',
      '--data-dir',
      twice,
    ]);
    expect(range.code).toBe(2);
    expect(range.stderr).toContain('[SL-CLI-002] --from must be before --to');

    const unaligned = await runCli([
      'file',
      '--period',
      'day',
      '--start',
      '2026-01-05T05:00:00Z',
      '--by',
      'x',
      '--data-dir',
      twice,
    ]);
    expect(unaligned.code).toBe(2);
    expect(unaligned.stderr).toContain(
      '[SL-CLI-003] 2026-01-05T05:00:00Z is not the start of a day',
    );
    const longNote = await runCli([
      'file',
      ...['--period', 'day', '--start', '2026-01-05', '--by', 'x', '--data-dir', twice],
      ...['--note', 'n'.repeat(5000)],
    ]);
    expect(longNote.code).toBe(2);
    expect(longNote.stderr).toBe(
      'speedlayer: [SL-CLI-004] --note is 5000 bytes long, above the limit of 4096\n',
    );
    for (const examples of ['abc', '1.5', '-1', '1001', '4294967297', '']) {
      const rejects = await runCli(['rejects', '--examples', examples, '--data-dir', twice]);
      expect(rejects.code).toBe(2);
      expect(rejects.stderr).toContain(`not a whole number from 0 to 1000: '${examples}'`);
    }

    // Well-formed but refused by the store: the same code the Query service answers with.
    const unpublished = await runCli([
      'file',
      ...['--period', 'day', '--start', '2026-02-01', '--by', 'x', '--data-dir', twice],
    ]);
    expect(unpublished.code).toBe(1);
    expect(unpublished.stderr).toBe(
      'speedlayer: [SL-QUERY-002] cannot file day 2026-02-01T00:00:00Z: no published version (it has no number at all)\n',
    );

    const garbage = path.join(dir, 'garbage.csv');
    await fs.writeFile(garbage, 'u,t\n,2026-01-05T10:00:00Z\nx,never\n');
    const allRejected = await runCli([
      'replay',
      garbage,
      '--user-field',
      'u',
      '--time-field',
      't',
      '--data-dir',
      path.join(dir, 'garbage'),
      '--log-level',
      'silent',
    ]);
    expect(allRejected.code).toBe(2);
    expect(allRejected.stderr).toContain('every record was rejected');

    const help = await runCli(['--help']);
    expect(help.stdout).toContain('replay');
    expect(help.stdout).toContain('filings');
  });

  it('knows a file by its content: another path to it is not read twice, a rotated file is new', async () => {
    const sub = path.join(dir, 'rotate');
    await fs.mkdir(sub);
    const file = path.join(sub, 'app.log.csv');
    const store = ['--data-dir', path.join(dir, 'rotate-data')];
    const flags = ['--user-field', 'u', '--time-field', 't', ...store, '--log-level', 'silent'];

    await fs.writeFile(
      file,
      'u,t\na,2026-03-29T10:00:00Z\nb,2026-03-29T10:00:00Z\n,2026-03-29T10:00:00Z\n',
    );
    expect((await runCli(['replay', file, ...flags])).code).toBe(0);
    const again = await runCli(['replay', path.join(sub, '..', 'rotate', 'app.log.csv'), ...flags]);
    expect(again.stdout).toContain('records read:     0');

    // Rotated: new content at the same path.
    await fs.writeFile(
      file,
      'u,t\nc,2026-03-29T11:00:00Z\nd,2026-03-29T11:00:00Z\n ,2026-03-29T11:00:00Z\n',
    );
    const rotated = await runCli(['replay', file, ...flags]);
    expect(rotated.stdout).toContain('records read:     3');

    const csv = await runCli(['query', '--period', 'day', '--format', 'csv', ...store]);
    expect(csv.stdout.split('\n')[1]).toMatch(/^day,2026-03-29T00:00:00Z,4,/);
    const rejects = JSON.parse(
      (await runCli(['rejects', '--format', 'json', ...store])).stdout,
    ) as {
      counts: Record<string, number>;
    };
    expect(rejects.counts).toEqual({ invalid_user_id: 2 });
  });

  it('accepts events before the first receive time in a receive-order replay', async () => {
    const file = path.join(dir, 'first.csv');
    await fs.writeFile(
      file,
      'user,event_time,received\nzed,2026-03-29T09:00:00Z,\nalice,2026-03-29T10:00:00Z,2026-03-29T10:00:01Z\n',
    );
    const store = ['--data-dir', path.join(dir, 'first')];
    const replay = await runCli([
      'replay',
      file,
      '--user-field',
      'user',
      '--time-field',
      'event_time',
      '--receive-time-field',
      'received',
      ...store,
      '--log-level',
      'silent',
    ]);
    expect(replay.stdout).toContain('accepted:         2');
    const csv = await runCli(['query', '--period', 'day', '--format', 'csv', ...store]);
    expect(csv.stdout.split('\n')[1]).toMatch(/^day,2026-03-29T00:00:00Z,2,1,final$/);
  });

  it('reads receive times in their own format, and rejects a record whose receive time is unreadable', async () => {
    // Case BH-06 as it is written: epoch-ms event times (one in seconds, one in microseconds,
    // one in nanoseconds), ISO receive times from the collector; then a receive time that
    // no format reads.
    const file = path.join(dir, 'epoch-units.ndjson');
    const records = [
      line({ user_id: 'u1', event_time: 1587556800000, receive_time: '2020-04-22T12:00:01Z' }),
      line({ user_id: 'u2', event_time: 1587556800, receive_time: '2020-04-22T12:00:02Z' }),
      line({ user_id: 'u3', event_time: 1587556800000000, receive_time: '2020-04-22T12:00:03Z' }),
      `{"user_id":"u4","event_time":1587556800000000000,"receive_time":"2020-04-22T12:00:04Z"}`,
      line({ user_id: 'u5', event_time: 1587556800000, receive_time: 'soon' }),
    ];
    await fs.writeFile(file, `${records.join('\n')}\n`);
    const store = ['--data-dir', path.join(dir, 'epoch-units')];
    const replay = await runCli([
      'replay',
      file,
      '--user-field',
      'user_id',
      '--time-field',
      'event_time',
      '--time-format',
      'epoch-ms',
      '--receive-time-field',
      'receive_time',
      '--allowed-lateness',
      '0s',
      '--restatement-horizon',
      '1d',
      '--max-future-skew',
      '5m',
      ...store,
      '--log-level',
      'silent',
    ]);
    expect(replay.code, replay.stderr).toBe(0);
    expect(replay.stdout).toContain('accepted:         1');

    const csv = await runCli(['query', '--history', '--format', 'csv', ...store]);
    const rows = csv.stdout
      .trim()
      .split('\n')
      .slice(1)
      .map((r) => r.split(',').slice(0, 5).join(','))
      .sort();
    expect(rows).toEqual([
      'day,2020-04-22T00:00:00Z,1,1,final',
      'hour,2020-04-22T12:00:00Z,1,1,final',
      'week,2020-04-20T00:00:00Z,1,1,final',
    ]);
    const rejects = JSON.parse(
      (await runCli(['rejects', '--format', 'json', ...store])).stdout,
    ) as { counts: Record<string, number> };
    expect(rejects.counts).toEqual({ future: 2, too_old: 1, invalid_time: 1 });

    // The same receive times read as epoch milliseconds are unreadable: every record rejected.
    const asMs = await runCli([
      'replay',
      file,
      '--user-field',
      'user_id',
      '--time-field',
      'event_time',
      '--receive-time-field',
      'receive_time',
      '--receive-time-format',
      'epoch-ms',
      '--data-dir',
      path.join(dir, 'epoch-units-ms'),
      '--log-level',
      'silent',
    ]);
    expect(asMs.code).toBe(2);
    expect(asMs.stderr).toContain('every record was rejected (invalid_time)');
    const kept = JSON.parse(
      (
        await runCli([
          'rejects',
          '--format',
          'json',
          '--data-dir',
          path.join(dir, 'epoch-units-ms'),
        ])
      ).stdout,
    ) as { counts: Record<string, number> };
    expect(kept.counts).toEqual({ invalid_time: 5 });
  });
});
