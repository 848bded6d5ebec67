/**
 * Scenarios: the two real datasets in datasets/ read end to end and checked
 * against their expected per-period distinct users; NDJSON, CSV and combined
 * logs with gzip, directories, CRLF, BOM, quoted and multi-line CSV records,
 * records cut by read-chunk boundaries, malformed records of every kind,
 * nested and numeric user ids, batch sizes and resuming from a line.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  type EventBatch,
  type ReadOptions,
  type RecordReject,
  inputFormatOf,
  readEvents,
} from '../../src/ingest/index.js';
import { dayStart, hourStart, isoSeconds, weekStart } from '../../src/periods/index.js';

/** shared/ sits beside the repository, in development and in CI. */
const DATA_DIR = fileURLToPath(new URL('../../datasets/', import.meta.url));
const APACHE_LOG = join(DATA_DIR, 'elastic-apache-logs', 'apache_logs');
const GIT_COMMITS = join(DATA_DIR, 'git-git-commits', 'git-git-commits.csv.gz');

const GIT_OPTIONS: ReadOptions = {
  userField: 'author_email',
  timeField: 'author_date',
  receiveTimeField: 'committer_date',
  eventIdField: 'commit',
};

interface ReadEvent {
  source: string;
  userId: string;
  eventTimeMs: number;
  receiveTimeMs: number | null;
  line: number;
  eventId: string | undefined | null;
}

interface ReadResult {
  batches: EventBatch[];
  events: ReadEvent[];
  rejects: RecordReject[];
}

async function readAll(paths: string[], options: ReadOptions): Promise<ReadResult> {
  const batches: EventBatch[] = [];
  const events: ReadEvent[] = [];
  const rejects: RecordReject[] = [];
  for await (const batch of readEvents(paths, options)) {
    batches.push(batch);
    rejects.push(...batch.rejects);
    for (let i = 0; i < batch.length; i++) {
      events.push({
        source: batch.source,
        userId: batch.userIds[i] ?? '',
        eventTimeMs: batch.eventTimeMs[i] ?? NaN,
        receiveTimeMs: batch.receiveTimeMs === null ? null : (batch.receiveTimeMs[i] ?? NaN),
        line: batch.lines[i] ?? 0,
        eventId: batch.eventIds === null ? null : batch.eventIds[i],
      });
    }
  }

  return { batches, events, rejects };
}

/** Earliest and latest event time. */
function timeSpan(events: ReadEvent[]): [number, number] {
  let first = Infinity;
  let last = -Infinity;
  for (const event of events) {
    first = Math.min(first, event.eventTimeMs);
    last = Math.max(last, event.eventTimeMs);
  }

  return [first, last];
}

/** Distinct users per `type,start` key, as in expected-counts.csv. */
function countPeriods(events: ReadEvent[]): Map<string, number> {
  const users = new Map<string, Set<string>>();
  for (const event of events) {
    const starts = {
      hour: hourStart(event.eventTimeMs),
      day: dayStart(event.eventTimeMs),
      week: weekStart(event.eventTimeMs),
    };
    for (const [type, startMs] of Object.entries(starts)) {
      const key = `${type},${isoSeconds(startMs)}`;
      let set = users.get(key);
      if (set === undefined) {
        set = new Set();
        users.set(key, set);
      }
      set.add(event.userId);
    }
  }

  return new Map([...users].map(([key, set]) => [key, set.size]));
}

async function expectedCounts(dataset: string): Promise<Map<string, number>> {
  const text = await readFile(join(DATA_DIR, dataset, 'expected-counts.csv'), 'utf8');
  const rows = text.trim().split('\n').slice(1);

  return new Map(
    rows.map((row) => {
      const [type, start, count] = row.split(',');

      return [`${type},${start}`, Number(count)];
    }),
  );
}

function keysOfType(counts: Map<string, number>, type: string): [string, number][] {
  return [...counts].filter(([key]) => key.startsWith(`${type},`)).sort();
}

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'speedlayer-ingest-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes a file in the test's temporary folder and returns its path. */
async function file(name: string, content: string | Buffer): Promise<string> {
  const path = join(dir, name);
  await mkdir(join(path, '..'), { recursive: true });
  await writeFile(path, content);

  return path;
}

describe('readEvents on the real datasets', () => {
  it('reads the Apache log: 10,000 events, 1,753 users, every period as expected', async () => {
    const { events, rejects, batches } = await readAll([APACHE_LOG], {});

    expect(rejects).toEqual([]);
    expect(events).toHaveLength(10_000);
    expect(new Set(events.map((e) => e.userId)).size).toBe(1_753);
    expect(batches.every((b) => b.source === APACHE_LOG && b.receiveTimeMs === null)).toBe(true);
    expect(events[0]).toMatchObject({
      userId: '198.18.0.1',
      eventTimeMs: Date.parse('2015-05-17T10:05:03Z'),
      line: 1,
    });

    const [first, last] = timeSpan(events);
    expect(new Date(first).toISOString()).toBe('2015-05-17T10:05:00.000Z');
    expect(new Date(last).toISOString()).toBe('2015-05-20T21:05:59.000Z');

    const counts = countPeriods(events);
    const expected = await expectedCounts('elastic-apache-logs');
    for (const type of ['hour', 'day', 'week']) {
      expect(keysOfType(counts, type), type).toEqual(keysOfType(expected, type));
    }
    expect(keysOfType(expected, 'day')).toHaveLength(4);
  });

  it('reads the git commits CSV: 81,966 events, 2,681 users, every period as expected', async () => {
    const { events, rejects } = await readAll([GIT_COMMITS], GIT_OPTIONS);

    expect(rejects).toEqual([]);
    expect(events).toHaveLength(81_966);
    expect(new Set(events.map((e) => e.userId)).size).toBe(2_681);
    expect(events[0]).toEqual({
      source: GIT_COMMITS,
      userId: 'u6a2f6604450e',
      eventTimeMs: Date.parse('2005-04-07T22:13:13Z'),
      receiveTimeMs: Date.parse('2005-04-07T22:13:13Z'),
      line: 2,
      eventId: 'e83c5163316f89bfbde7d9ab23ca2e25604af290',
    });
    expect(new Set(events.map((e) => e.eventId)).size).toBe(81_966);
    expect(events.every((e) => Number.isFinite(e.receiveTimeMs))).toBe(true);

    // 14 commits were authored after they were committed (clock skew).
    expect(events.filter((e) => e.eventTimeMs > (e.receiveTimeMs ?? 0))).toHaveLength(14);

    const [first, last] = timeSpan(events);
    expect(isoSeconds(first)).toBe('2005-04-07T22:13:13Z');
    expect(isoSeconds(last)).toBe('2026-08-20T14:30:52Z');

    // Offsets move commits across hours, days and weeks: all 7,287 days, and every hour and
    // week, must match.
    const counts = countPeriods(events);
    const expected = await expectedCounts('git-git-commits');
    expect(keysOfType(expected, 'day')).toHaveLength(7_287);
    for (const type of ['hour', 'day', 'week']) {
      expect(keysOfType(counts, type), type).toEqual(keysOfType(expected, type));
    }
  });
});

describe('readEvents on NDJSON', () => {
  it('reads user and time fields, numeric user ids, receive times and event ids', async () => {
    const path = await file(
      'basic.ndjson',
      [
        '{"user":"alice","ts":"2024-01-01T00:00:00Z","recv":"2024-01-01T00:00:05Z","id":"e1"}',
        '{"user":123,"ts":1704067200,"recv":1704067205000,"id":7}',
        '{"user":"Alice","ts":"2023-12-31T19:00:00-05:00"}',
        '',
        '   ',
        '{"user":"bob","ts":"2024-01-01T00:00:00.123456Z","recv":"yesterday"}',
      ].join('\n'),
    );

    const { events, rejects, batches } = await readAll([path], {
      userField: 'user',
      timeField: 'ts',
      receiveTimeField: 'recv',
      eventIdField: 'id',
    });

    const jan1 = Date.UTC(2024, 0, 1);
    // A receive time that is there but unreadable rejects its record; a missing one does not.
    expect(rejects.map((r) => [r.line, r.reason, r.detail])).toEqual([
      [
        6,
        'invalid_time',
        "receive time 'yesterday' is not ISO-8601 text with Z or a UTC offset, or an epoch number",
      ],
    ]);
    expect(
      events.map((e) => [e.userId, e.eventTimeMs, e.receiveTimeMs, e.line, e.eventId]),
    ).toEqual([
      ['alice', jan1, jan1 + 5000, 1, 'e1'],
      ['123', jan1, jan1 + 5000, 2, '7'],
      ['Alice', jan1, NaN, 3, undefined],
    ]);
    expect(batches).toHaveLength(1);
    expect(batches[0]?.lastLine).toBe(6);
  });

  it('follows nested paths such as actor.login', async () => {
    const path = await file(
      'github.jsonl',
      [
        '{"type":"PushEvent","actor":{"id":1,"login":"octocat"},"created_at":"2015-01-01T15:00:00Z"}',
        '{"type":"WatchEvent","actor":{"id":2},"created_at":"2015-01-01T15:00:01Z"}',
        '{"type":"ForkEvent","actor":"ghost","created_at":"2015-01-01T15:00:02Z"}',
      ].join('\n'),
    );

    const { events, rejects } = await readAll([path], {
      userField: 'actor.login',
      timeField: 'created_at',
      timeFormat: 'iso',
    });

    expect(events.map((e) => e.userId)).toEqual(['octocat']);
    expect(rejects.map((r) => [r.line, r.reason, r.detail])).toEqual([
      [2, 'invalid_user_id', 'user id is missing'],
      [3, 'invalid_user_id', 'user id is missing'],
    ]);
  });

  it('rejects malformed records, bad user ids and bad times with reasons', async () => {
    const lines = [
      '{"user":"ok","ts":1704067200}',
      '{"user":"broken",',
      '["user","ts"]',
      '42',
      '{"user":"","ts":1704067200}',
      '{"user":"  ","ts":1704067200}',
      '{"user":null,"ts":1704067200}',
      '{"user":true,"ts":1704067200}',
      '{"user":1.5,"ts":1704067200}',
      '{"ts":1704067200}',
      '{"user":"no-time"}',
      '{"user":"bad-time","ts":"2023-02-29T00:00:00Z"}',
      '{"user":"null-time","ts":null}',
      '{"user":"object-time","ts":{"s":1}}',
      '{"ts":"garbage"}',
      '{"user":"last","ts":"1704067200000"}',
    ];
    const path = await file('bad.ndjson', lines.join('\r\n') + '\r\n');

    const { events, rejects } = await readAll([path], { userField: 'user', timeField: 'ts' });

    expect(events.map((e) => [e.userId, e.line])).toEqual([
      ['ok', 1],
      ['last', 16],
    ]);
    expect(rejects.map((r) => [r.line, r.reason])).toEqual([
      [2, 'malformed'],
      [3, 'malformed'],
      [4, 'malformed'],
      [5, 'invalid_user_id'],
      [6, 'invalid_user_id'],
      [7, 'invalid_user_id'],
      [8, 'invalid_user_id'],
      [9, 'invalid_user_id'],
      [10, 'invalid_user_id'],
      [11, 'invalid_time'],
      [12, 'invalid_time'],
      [13, 'invalid_time'],
      [14, 'invalid_time'],
      // Both the user id and the time are bad: the user id wins.
      [15, 'invalid_user_id'],
    ]);

    const byLine = new Map(rejects.map((r) => [r.line, r]));
    expect(byLine.get(2)?.detail).toMatch(/^not valid JSON: /);
    expect(byLine.get(2)?.raw).toBe('{"user":"broken",');
    expect(byLine.get(3)?.detail).toBe('a record must be a JSON object, got array');
    expect(byLine.get(4)?.detail).toBe('a record must be a JSON object, got number');
    expect(byLine.get(5)?.detail).toBe('user id is empty');
    expect(byLine.get(6)?.detail).toBe('user id is only whitespace');
    expect(byLine.get(7)?.detail).toBe('user id is null');
    expect(byLine.get(8)?.detail).toBe('user id must be a string or an integer, got boolean');
    expect(byLine.get(11)?.detail).toBe('event time is missing');
    expect(byLine.get(12)?.detail).toMatch(/^event time '2023-02-29T00:00:00Z' is not /);
    expect(byLine.get(13)?.detail).toBe('event time is null');
    expect(byLine.get(14)?.detail).toBe('event time must be a string or a number, got object');
    expect(rejects.every((r) => r.source === path && !r.raw.endsWith('\r'))).toBe(true);
  });

  it('checks string ids as every input does: well-formed Unicode, at most 1024 bytes', async () => {
    const path = await file(
      'ids.ndjson',
      [
        '{"user":"a\\ud800","ts":"2024-01-01T00:00:00Z"}',
        '{"user":"b\\ufffd","ts":"2024-01-01T00:00:00Z"}',
        `{"user":"${'x'.repeat(1025)}","ts":"2024-01-01T00:00:00Z"}`,
        `{"user":"${'x'.repeat(1024)}","ts":"2024-01-01T00:00:00Z"}`,
      ].join('\n'),
    );

    const { events, rejects } = await readAll([path], { userField: 'user', timeField: 'ts' });

    expect(events.map((e) => e.userId.length)).toEqual([1024]);
    expect(rejects.map((r) => [r.line, r.reason, r.detail])).toEqual([
      [1, 'invalid_user_id', 'user id is not well-formed Unicode (a lone surrogate)'],
      [
        2,
        'invalid_user_id',
        'user id contains U+FFFD (invalid UTF-8 in the input, or a replacement character)',
      ],
      [3, 'invalid_user_id', 'user id is longer than 1024 bytes (UTF-8)'],
    ]);
  });

  it('cuts the raw text of a reject to 4096 characters', async () => {
    const long = `{"user":"${'x'.repeat(10_000)}"`;
    const path = await file('long.ndjson', `${long}\n`);

    const { rejects } = await readAll([path], { userField: 'user', timeField: 'ts' });

    expect(rejects).toHaveLength(1);
    expect(rejects[0]?.raw).toBe(long.slice(0, 4096));
  });

  it('fails with the file name when a gzipped file is cut short', async () => {
    const lines = Array.from({ length: 5000 }, (_, i) => `{"u":"user${i}","t":${1704067200 + i}}`);
    const whole = gzipSync(lines.join('\n') + '\n');
    const path = await file('cut.ndjson.gz', whole.subarray(0, whole.length >> 1));

    await expect(readAll([path], { userField: 'u', timeField: 't' })).rejects.toThrow(
      `cannot read ${path}: unexpected end of file`,
    );
  });

  it('reads gzipped files', async () => {
    const lines = Array.from(
      { length: 1000 },
      (_, i) => `{"u":"user${i % 10}","t":${1704067200 + i}}`,
    );
    const path = await file('events.ndjson.gz', gzipSync(lines.join('\n') + '\n'));

    const { events, rejects } = await readAll([path], { userField: 'u', timeField: 't' });

    expect(rejects).toEqual([]);
    expect(events).toHaveLength(1000);
    expect(events[999]).toMatchObject({
      userId: 'user9',
      eventTimeMs: (1704067200 + 999) * 1000,
      line: 1000,
    });
  });
});

describe('readEvents on CSV', () => {
  const options: ReadOptions = { userField: 'user', timeField: 'time' };

  it('reads columns by header name, with CRLF line ends and a byte order mark', async () => {
    const path = await file(
      'crlf.csv',
      '\ufeffid,user,time\r\n1,alice,2024-01-01T00:00:00Z\r\n2,bob,2024-01-01T01:00:00+01:00\r\n',
    );

    const { events, rejects } = await readAll([path], { ...options, eventIdField: 'id' });

    expect(rejects).toEqual([]);
    expect(events.map((e) => [e.userId, e.eventTimeMs, e.line, e.eventId])).toEqual([
      ['alice', Date.UTC(2024, 0, 1), 2, '1'],
      ['bob', Date.UTC(2024, 0, 1), 3, '2'],
    ]);
  });

  it('reads quoted fields with commas, escaped quotes and line breaks', async () => {
    const content = [
      'user,note,time',
      '"smith, john","said ""hi""",2024-01-01T00:00:00Z',
      'jane,"line one',
      'line two, still the note",2024-01-01T00:00:01Z',
      '"o""brien",plain,"2024-01-01T00:00:02Z"',
      'ab"c,literal quote,2024-01-01T00:00:03Z',
      '"last",,2024-01-01T00:00:04Z',
    ].join('\n');
    const path = await file('quoted.csv', content);

    const { events, rejects } = await readAll([path], options);

    expect(rejects).toEqual([]);
    expect(events.map((e) => [e.userId, e.eventTimeMs - Date.UTC(2024, 0, 1), e.line])).toEqual([
      ['smith, john', 0, 2],
      ['jane', 1000, 3],
      ['o"brien', 2000, 5],
      ['ab"c', 3000, 6],
      ['last', 4000, 7],
    ]);
  });

  it('treats header names with dots literally and CSV user ids as text', async () => {
    const path = await file('dots.csv', 'actor.login,event.time\n00123,1704067200\n');

    const { events } = await readAll([path], { userField: 'actor.login', timeField: 'event.time' });

    expect(events.map((e) => [e.userId, e.eventTimeMs])).toEqual([['00123', 1704067200000]]);
  });

  it('rejects records with the wrong number of fields, bad user ids and bad times', async () => {
    const content = [
      'user,time,extra',
      'ok,1704067200,x',
      'short,1704067200',
      'long,1704067200,x,y',
      ',1704067200,x',
      '  ,1704067200,x',
      'no-time,,x',
      'bad-time,2024-01-01T00:00:00,x',
      ',,x',
      '"unclosed,1704067200,x',
    ].join('\n');
    const path = await file('bad.csv', content);

    const { events, rejects } = await readAll([path], options);

    expect(events.map((e) => e.userId)).toEqual(['ok']);
    expect(rejects.map((r) => [r.line, r.reason, r.detail])).toEqual([
      [3, 'malformed', 'expected 3 fields as in the header, found 2'],
      [4, 'malformed', 'expected 3 fields as in the header, found 4'],
      [5, 'invalid_user_id', 'user id is empty'],
      [6, 'invalid_user_id', 'user id is only whitespace'],
      [7, 'invalid_time', 'event time is empty'],
      [8, 'invalid_time', expect.stringMatching(/^event time '2024-01-01T00:00:00' is not /)],
      [9, 'invalid_user_id', 'user id is empty'],
      [10, 'malformed', 'a quoted field is not closed before the end of the source'],
    ]);
    expect(rejects[0]?.raw).toBe('short,1704067200');
    expect(rejects[7]?.raw).toBe('"unclosed,1704067200,x');
  });

  it('reads receive times in their own format; an empty one is none, an unreadable one a reject', async () => {
    const path = await file(
      'received.csv',
      [
        'user,time,received',
        'alice,1704067200000,2024-01-01T00:00:05Z',
        'bob,1704067200000,',
        'carol,1704067200000,1704067205',
        'dave,1704067200000,2024-01-01T00:00:05',
      ].join('\n'),
    );
    const read = { ...options, timeFormat: 'epoch-ms', receiveTimeField: 'received' } as const;

    const auto = await readAll([path], read);
    const jan1 = Date.UTC(2024, 0, 1);
    expect(auto.events.map((e) => [e.userId, e.eventTimeMs, e.receiveTimeMs])).toEqual([
      ['alice', jan1, jan1 + 5000],
      ['bob', jan1, NaN],
      ['carol', jan1, jan1 + 5000],
    ]);
    expect(auto.rejects.map((r) => [r.line, r.reason, r.detail, r.raw])).toEqual([
      [
        5,
        'invalid_time',
        "receive time '2024-01-01T00:00:05' is not ISO-8601 text with Z or a UTC offset, or an epoch number",
        'dave,1704067200000,2024-01-01T00:00:05',
      ],
    ]);

    const iso = await readAll([path], { ...read, receiveTimeFormat: 'iso' });
    expect(iso.events.map((e) => e.userId)).toEqual(['alice', 'bob']);
    expect(iso.rejects.map((r) => [r.line, r.detail])).toEqual([
      [4, "receive time '1704067205' is not ISO-8601 text with Z or a UTC offset"],
      [5, "receive time '2024-01-01T00:00:05' is not ISO-8601 text with Z or a UTC offset"],
    ]);
  });

  it('fails before reading data when a configured column is not in the header', async () => {
    const path = await file('columns.csv', 'user,time\nalice,1704067200\n');

    await expect(readAll([path], { ...options, receiveTimeField: 'received' })).rejects.toThrow(
      `column 'received' (the receive time field) not in the header of ${path}; columns are: user, time`,
    );
  });

  it('reads records cut by read boundaries, multi-byte text and multi-line records', async () => {
    // About 10 MiB, so that several 2 MiB reads end inside records.
    const rows = ['user,comment,time'];
    const expected: [string, number, number][] = [];
    let line = 2;
    for (let i = 0; i < 60_000; i++) {
      const user = i % 3 === 0 ? `zoë-🚀-${i}` : `user-${i}`;
      const time = 1_700_000_000 + i;
      let comment =
        i % 7 === 0 ? `"multi\nline, ""quoted"" ${'é'.repeat(i % 50)}"` : 'x'.repeat(50 + (i % 80));
      let lineEnds = i % 7 === 0 ? 1 : 0;
      if (i === 30_000) {
        // One 3 MiB record of a million short lines: some read must end inside it.
        comment = `"${'ab\n'.repeat(1_000_000)}"`;
        lineEnds = 1_000_000;
      }
      rows.push(`${user},${comment},${time}`);
      expected.push([user, time * 1000, line]);
      line += 1 + lineEnds;
    }
    const path = await file('big.csv', rows.join('\n') + '\n');

    const { events, rejects, batches } = await readAll([path], { ...options, batchSize: 5000 });

    expect(rejects).toEqual([]);
    expect(events.map((e) => [e.userId, e.eventTimeMs, e.line])).toEqual(expected);
    expect(batches.map((b) => b.length)).toEqual([...Array<number>(12).fill(5000)]);
    expect(batches.at(-1)?.lastLine).toBe(line - 1);
  });
});

describe('readEvents on combined logs', () => {
  it('takes the client as the user and the bracketed time as the event time', async () => {
    const content = [
      '203.0.113.9 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "-" "-"',
      '::1 - - [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.1" 404 -',
      '',
      'not a log line at all',
      '203.0.113.9 - - [10/Oct/2000:13:55:36] "GET / HTTP/1.0" 200 1',
      '203.0.113.9 - - [10/Oct/2000:13:55:36 -0700 "GET / HTTP/1.0" 200 1',
      '203.0.113.9\t- - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 1',
    ].join('\n');
    const path = await file('site.access.log', content);

    const { events, rejects } = await readAll([path], {});

    expect(events.map((e) => [e.userId, isoSeconds(e.eventTimeMs), e.line])).toEqual([
      ['203.0.113.9', '2000-10-10T20:55:36Z', 1],
      ['::1', '2024-01-01T00:00:00Z', 2],
    ]);
    expect(rejects.map((r) => [r.line, r.reason])).toEqual([
      [4, 'malformed'],
      [5, 'invalid_time'],
      [6, 'malformed'],
      [7, 'malformed'],
    ]);
    expect(rejects[1]?.detail).toBe(
      "request time '10/Oct/2000:13:55:36' is not dd/Mon/yyyy:HH:MM:SS +zzzz",
    );
  });
});

describe('readEvents over several sources', () => {
  it('reads a directory recursively in name order, skipping hidden files', async () => {
    await file('tree/b.csv', 'user,time\nfrom-b,1704067200\n');
    await file('tree/a.ndjson', '{"user":"from-a","time":1704067200}\n');
    await file('tree/sub/c.jsonl.gz', gzipSync('{"user":"from-c","time":1704067200}\n'));
    await file('tree/.hidden.ndjson', '{"user":"hidden","time":1704067200}\n');
    await file('tree/.git/config.ndjson', '{"user":"hidden","time":1704067200}\n');

    const { events, batches } = await readAll([join(dir, 'tree')], {
      userField: 'user',
      timeField: 'time',
    });

    expect(events.map((e) => e.userId)).toEqual(['from-a', 'from-b', 'from-c']);
    expect(batches.map((b) => b.source)).toEqual([
      join(dir, 'tree', 'a.ndjson'),
      join(dir, 'tree', 'b.csv'),
      join(dir, 'tree', 'sub', 'c.jsonl.gz'),
    ]);
  });

  it('never lets a batch span two sources, and fills batches up to batchSize', async () => {
    const lines = (prefix: string, n: number) =>
      Array.from({ length: n }, (_, i) => `{"u":"${prefix}${i}","t":${1704067200 + i}}`).join('\n');
    const first = await file('span/1.ndjson', lines('a', 5));
    const second = await file('span/2.ndjson', lines('b', 4) + '\n{"u":"","t":1}\n');

    const { batches } = await readAll([first, second], {
      userField: 'u',
      timeField: 't',
      batchSize: 2,
    });

    expect(
      batches.map((b) => [b.source === first ? 1 : 2, b.length, b.rejects.length, b.lastLine]),
    ).toEqual([
      [1, 2, 0, 2],
      [1, 2, 0, 4],
      [1, 1, 0, 5],
      [2, 2, 0, 2],
      [2, 2, 0, 4],
      [2, 0, 1, 5],
    ]);
  });

  it('resumes after a checkpoint with fromLine, also after multi-line CSV records', async () => {
    const content = [
      'user,note,time',
      'u1,plain,1704067200',
      'u2,"two',
      'lines",1704067201',
      'u3,plain,1704067202',
      'u4,"again',
      'two",1704067203',
      'u5,plain,1704067204',
    ].join('\n');
    const path = await file('resume.csv', content);
    const options = { userField: 'user', timeField: 'time', batchSize: 2 };

    const full = await readAll([path], options);
    const checkpoint = full.batches[0]?.lastLine ?? 0;
    const resumed = await readAll([path], { ...options, fromLine: new Map([[path, checkpoint]]) });

    expect(full.events.map((e) => [e.userId, e.line])).toEqual([
      ['u1', 2],
      ['u2', 3],
      ['u3', 5],
      ['u4', 6],
      ['u5', 8],
    ]);
    expect(checkpoint).toBe(4);
    expect(resumed.events.map((e) => e.userId)).toEqual(['u3', 'u4', 'u5']);

    const fromMiddle = await readAll([path], { ...options, fromLine: new Map([[path, 6]]) });
    expect(fromMiddle.events.map((e) => e.userId)).toEqual(['u5']);
  });

  it('fails before reading when a format or a required field is unknown', async () => {
    const unknown = await file('events.parquet', 'PAR1');
    const ndjson = await file('needs-fields.ndjson', '{}\n');

    await expect(readAll([unknown], {})).rejects.toThrow(
      `cannot tell the format of ${unknown} from its name; pass --format ndjson, csv or combined`,
    );
    await expect(readAll([ndjson], { userField: 'user' })).rejects.toThrow(
      /needs a user field and a time field/,
    );
    await expect(
      readAll([unknown], { format: 'ndjson', userField: 'u', timeField: 't' }),
    ).resolves.toMatchObject({
      rejects: [{ reason: 'malformed', line: 1 }],
    });
  });
});

describe('inputFormatOf', () => {
  it('tells the format from the file name', () => {
    expect(inputFormatOf('/x/events.ndjson')).toBe('ndjson');
    expect(inputFormatOf('/x/events.JSONL.gz')).toBe('ndjson');
    expect(inputFormatOf('/x/events.json')).toBe('ndjson');
    expect(inputFormatOf('/x/commits.csv.gz')).toBe('csv');
    expect(inputFormatOf('/x/apache_logs')).toBe('combined');
    expect(inputFormatOf('/x/access.log.1')).toBe('combined');
    expect(inputFormatOf('/x/server.log.gz')).toBe('combined');
    expect(inputFormatOf('/x/events.parquet')).toBeUndefined();
  });
});
