/**
 * `speedlayer replay FILES --target HOST:PORT` against an in-process Ingest server
 * (test/support/ingest-test-node.ts):
 * - the shipped datasets arrive exactly: every event of the reader once, with its line,
 *   user id and times, under batch ids made of the source id and line range (positions in
 *   receive order); the distinct users per period of what arrived equal
 *   expected-counts.csv; Finish is called once and its watermark printed; a second run
 *   sends the same batch ids and changes nothing;
 * - records the reader rejects arrive as unreadable with their reasons, beside the node's
 *   own rejections, and the summary counts both;
 * - flags of the embedded store are refused beside --target (exit 2), as are --target
 *   flags without it; a node that stays down fails at --deadline (exit 1); a replay whose
 *   every record is rejected exits 2;
 * - the end-of-replay log line names each key once, the target included; the summary
 *   says "1 batch" and "1 reconnect";
 * - Ctrl-C in a real process says how many batches in flight it waits for, stops after
 *   them, calls no Finish, and exits 130; a second Ctrl-C quits at once with 130;
 * - a stop after the input is all taken still skips Finish; a stop during Finish says it
 *   waits for the node to close its periods, and the replay ends with them closed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { pino } from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';

import {
  formatStopping,
  runTargetReplay,
  type TargetReplayStop,
} from '../../src/cli/replay-target.js';
import { readEvents, type ReadOptions } from '../../src/ingest/index.js';
import type { EventBatchRequestWire, EventWire } from '../../src/transport/proto.js';
import { runCli } from '../support/cli.js';
import { TestIngestNode } from '../support/ingest-test-node.js';
import { bruteForceCounts } from '../support/oracle.js';

const BIN = path.resolve(import.meta.dirname, '../../bin/speedlayer.js');
const DATA = fileURLToPath(new URL('../../datasets/', import.meta.url));
const APACHE = path.join(DATA, 'elastic-apache-logs');
const GIT = path.join(DATA, 'git-git-commits');
const GIT_FILE = path.join(GIT, 'git-git-commits.csv.gz');
const GIT_READ = { userField: 'author_email', timeField: 'author_date', eventIdField: 'commit' };
const GIT_FLAGS = [
  '--user-field',
  'author_email',
  '--time-field',
  'author_date',
  '--event-id-field',
  'commit',
];
const QUIET = ['--no-progress', '--log-level', 'silent'];

const nodes: TestIngestNode[] = [];
const dirs: string[] = [];
const children: ChildProcess[] = [];

afterEach(() => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  for (const node of nodes.splice(0)) node.stop();
});

afterAll(async () => {
  for (const dir of dirs) await fsp.rm(dir, { recursive: true, force: true });
});

async function startNode(options: Parameters<typeof TestIngestNode.start>[0] = {}) {
  const node = await TestIngestNode.start({ maxAckDelayMs: 2, ...options });
  nodes.push(node);

  return node;
}

async function tempDir(): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'speedlayer-target-'));
  dirs.push(dir);

  return dir;
}

interface Arrived {
  readonly batchId: string;
  readonly source: string;
  readonly event: EventWire;
}

/** Every event the node stored, once per batch id, in batch order. */
function arrivedEvents(node: TestIngestNode): Arrived[] {
  return [...node.stored.values()].flatMap(({ request }) =>
    request.events.map((event) => ({ batchId: request.batch_id, source: request.source, event })),
  );
}

/** What the reader makes of the files, per line: the events a replay must deliver. */
async function readerEvents(file: string, read: ReadOptions) {
  const events = new Map<number, { user: string; time: number; receive: number; id: string }>();
  const rejects = new Map<number, string>();
  for await (const batch of readEvents([file], read)) {
    for (let i = 0; i < batch.length; i++) {
      events.set(batch.lines[i] as number, {
        user: batch.userIds[i] as string,
        time: batch.eventTimeMs[i] as number,
        receive: batch.receiveTimeMs?.[i] ?? Number.NaN,
        id: batch.eventIds?.[i] ?? '',
      });
    }
    for (const r of batch.rejects) rejects.set(r.line, r.reason);
  }

  return { events, rejects };
}

function expectedCounts(dir: string): Map<string, number> {
  const lines = fs
    .readFileSync(path.join(dir, 'expected-counts.csv'), 'utf8')
    .trimEnd()
    .split('\n');

  return new Map(
    lines.slice(1).map((l) => {
      const [type, start, n] = l.split(',');
      return [`${type},${start}`, Number(n)];
    }),
  );
}

const datasets = [
  {
    name: 'elastic-apache-logs',
    dir: APACHE,
    file: path.join(APACHE, 'apache_logs'),
    flags: ['--format', 'combined'],
    read: { format: 'combined' as const },
    kind: 'L',
  },
  {
    name: 'git-git-commits in file order',
    dir: GIT,
    file: GIT_FILE,
    flags: GIT_FLAGS,
    read: GIT_READ,
    kind: 'L',
  },
  {
    name: 'git-git-commits in receive order',
    dir: GIT,
    file: GIT_FILE,
    flags: [...GIT_FLAGS, '--receive-time-field', 'committer_date'],
    read: { ...GIT_READ, receiveTimeField: 'committer_date' },
    kind: 'R',
  },
];

describe('speedlayer replay --target', () => {
  it.each(datasets)(
    '$name arrives exactly, and a second run changes nothing',
    async ({ dir, file, flags, read, kind }) => {
      const node = await startNode({ maxFutureSkewMs: 2 * 86_400_000 });
      const args = ['replay', file, ...flags, '--target', node.address, ...QUIET];
      const first = await runCli(args);
      expect(first.stderr).toBe('');
      expect(first.code).toBe(0);

      // Every event of the reader arrived once, with its line, user id and times.
      const reader = await readerEvents(file, read);
      const arrived = arrivedEvents(node);
      const asRead = arrived
        .map(({ event: e }) => [
          e.line,
          e.user_id,
          e.event_time_ms,
          e.received_time_ms ?? null,
          e.event_id,
        ])
        .sort((a, b) => (a[0] as number) - (b[0] as number));
      const expectedRead = [...reader.events]
        .map(([line, e]) => [
          line,
          e.user,
          e.time,
          Number.isNaN(e.receive) ? null : e.receive,
          e.id,
        ])
        .sort((a, b) => (a[0] as number) - (b[0] as number));
      expect(asRead.length).toBe(expectedRead.length);
      expect(asRead).toEqual(expectedRead);
      expect(reader.rejects.size).toBe(0);

      // What arrived counts exactly as the dataset's expected rows.
      const counts = bruteForceCounts(
        arrived.map((a) => ({ userId: a.event.user_id, eventMs: a.event.event_time_ms as number })),
      );
      expect(counts).toEqual(expectedCounts(dir));

      // Batch ids: the source id (real path and fingerprint), a reading key, a range.
      const real = fs.realpathSync(file);
      for (const [id, { request }] of node.stored) {
        expect(request.source).toMatch(
          new RegExp(`^${real.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}#[0-9a-f]{12}$`),
        );
        const range = new RegExp(
          `^${request.source.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:[0-9a-f]{12}:${kind}(\\d+)-(\\d+)$`,
        ).exec(id);
        expect(range).not.toBeNull();
        if (kind === 'L') {
          const lines = request.events.map((e) => e.line);
          expect(Math.min(...lines)).toBeGreaterThanOrEqual(Number(range?.[1]));
          expect(Math.max(...lines)).toBe(Number(range?.[2]));
        } else {
          expect(Number(range?.[2]) - Number(range?.[1]) + 1).toBe(request.events.length);
        }
      }
      if (kind === 'R') {
        // In receive order: batches by position, each in receive-time order, one after another.
        const byPosition = [...node.stored.values()]
          .map(({ request }) => request)
          .sort((a, b) => position(a) - position(b));
        const receives = byPosition.flatMap((r) =>
          r.events.map((e) => e.received_time_ms as number),
        );
        expect(receives).toEqual([...receives].sort((a, b) => a - b));
        // Each batch carries the replay's clock as it leaves: its last receive time.
        for (const r of byPosition) expect(r.clock_ms).toBe(r.events.at(-1)?.received_time_ms);
      } else {
        for (const { request } of node.stored.values()) expect(request.clock_ms).toBeUndefined();
      }

      expect(node.finishCalls).toBe(1);
      const latest = Math.max(...arrived.map((a) => a.event.event_time_ms as number));
      expect(first.stdout).toContain(`records read:     ${reader.events.size}\n`);
      expect(first.stdout).toContain(`accepted:         ${reader.events.size}\n`);
      expect(first.stdout).toMatch(/rejected: +0\n/);
      expect(first.stdout).toContain(
        `target:           ${node.address} (${node.stored.size} batches, 0 reconnects)\n`,
      );
      expect(first.stdout).toContain(
        `watermark:        ${new Date(weekEndAfter(latest) + 600_000).toISOString()}`,
      );

      // A second run: the same ids, nothing new stored, no content changed.
      const ids = new Set(node.stored.keys());
      const arrivals = node.arrivals.length;
      const second = await runCli(args);
      expect(second.code).toBe(0);
      expect(new Set(node.arrivals.slice(arrivals))).toEqual(ids);
      expect(new Set(node.stored.keys())).toEqual(ids);
      expect(node.mismatches).toEqual([]);
    },
  );

  it('sends unreadable records with their batch and counts both sides of rejects', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'app.ndjson');
    const now = Date.UTC(2026, 2, 24, 12);
    const lines = [
      JSON.stringify({ user: 'alice', ts: new Date(now).toISOString() }),
      '{not json',
      JSON.stringify({ user: '', ts: new Date(now).toISOString() }),
      JSON.stringify({ user: 'bob' }),
      '',
      JSON.stringify({ user: 'carol', ts: '2100-01-01T00:00:00Z' }),
      JSON.stringify({ user: 'dave', ts: new Date(now + 60_000).toISOString() }),
    ];
    await fsp.writeFile(file, lines.join('\n') + '\n');
    const node = await startNode();

    const run = await runCli([
      'replay',
      file,
      '--user-field',
      'user',
      '--time-field',
      'ts',
      '--target',
      node.address,
      ...QUIET,
    ]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);

    const requests: EventBatchRequestWire[] = [...node.stored.values()].map((s) => s.request);
    expect(requests.flatMap((r) => r.events.map((e) => [e.line, e.user_id]))).toEqual([
      [1, 'alice'],
      [6, 'carol'],
      [7, 'dave'],
    ]);
    const unreadable = requests.flatMap((r) => r.unreadable.map((u) => [u.line, u.reason]));
    expect(unreadable).toEqual([
      [2, 'REJECT_REASON_MALFORMED'],
      [3, 'REJECT_REASON_INVALID_USER_ID'],
      [4, 'REJECT_REASON_INVALID_TIME'],
    ]);
    // The same reasons as the reader gives the embedded replay.
    const reader = await readerEvents(file, { userField: 'user', timeField: 'ts' });
    expect([...reader.rejects]).toEqual([
      [2, 'malformed'],
      [3, 'invalid_user_id'],
      [4, 'invalid_time'],
    ]);
    // No receive-time field: carol, in 2100, is ahead of the node's clock: its rejection.
    expect(run.stdout).toContain('records read:     6\n');
    expect(run.stdout).toContain('accepted:         2\n');
    expect(run.stdout).toContain(
      'rejected:         4\n    invalid_user_id: 1\n    invalid_time: 1\n    malformed: 1\n    future: 1\n',
    );

    // Other fields make other events of the same lines: new batch ids, not old answers.
    const before = new Set(node.stored.keys());
    const other = await runCli([
      ...['replay', file, '--user-field', 'ts', '--time-field', 'ts'],
      ...['--target', node.address, ...QUIET],
    ]);
    expect(other.code).toBe(0);
    const added = [...node.stored.keys()].filter((id) => !before.has(id));
    expect(added.length).toBe(before.size);

    // In receive order, the unreadable records travel in batches of their own.
    const fresh = await startNode();
    const receive = await runCli([
      ...['replay', file, '--user-field', 'user', '--time-field', 'ts'],
      ...['--receive-time-field', 'ts', '--target', fresh.address, ...QUIET],
    ]);
    expect(receive.code).toBe(0);
    const byKind = [...fresh.stored.values()].map(({ request: r }) => [
      /:([LRU])\d+-\d+$/.exec(r.batch_id)?.[1],
      r.events.map((e) => e.line),
      r.unreadable.map((u) => u.line),
    ]);
    expect(byKind).toEqual([
      ['U', [], [2, 3, 4]],
      ['R', [1, 7, 6], []],
    ]);
  });

  it('refuses the flags of the other kind of replay, and a target that is not host:port', async () => {
    const file = path.join(APACHE, 'apache_logs');
    const cases = [
      {
        args: ['--target', '127.0.0.1:1', '--data-dir', '/tmp/x'],
        message:
          "--data-dir is for the embedded store; with --target the node's own settings apply (set them on speedlayer shard, or on npm run cluster for a local cluster)",
      },
      {
        args: ['--target', '127.0.0.1:1', '--allowed-lateness', '1h', '--partitions', '4'],
        message: '--allowed-lateness, --partitions are for the embedded store',
      },
      {
        args: ['--target', '127.0.0.1:1', '--postgres', 'postgres://x'],
        message: '--postgres is for the embedded store',
      },
      { args: ['--deadline', '1m'], message: '--deadline applies only with --target' },
      { args: ['--target', 'localhost'], message: "--target must be host:port, got 'localhost'" },
      {
        args: ['--target', '127.0.0.1:99999'],
        message: "--target must be host:port, got '127.0.0.1:99999'",
      },
      {
        args: ['--target', '127.0.0.1:0'],
        message: "--target must be host:port, got '127.0.0.1:0'",
      },
    ];
    for (const { args, message } of cases) {
      const run = await runCli(['replay', file, ...args, ...QUIET]);
      expect(run.code).toBe(2);
      expect(run.stderr).toContain(message);
      expect(run.stdout).toBe('');
    }
  });

  it('fails at --deadline or the connect timeout while the node is down, and exits 2 when every record is rejected', async () => {
    const node = await startNode();
    const file = path.join(APACHE, 'apache_logs');
    node.stop();
    const down = await runCli([
      'replay',
      file,
      '--target',
      node.address,
      '--deadline',
      '1s',
      ...QUIET,
    ]);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(
      /\[SL-INGEST-102\] the deadline of 1000 ms passed before 127\.0\.0\.1:\d+ accepted a connection/,
    );

    // Without a deadline, an address where nothing listens fails within the connect
    // timeout (the stall timeout here, being shorter than 10 s), not after it stalls.
    const unreachable = await runCli([
      'replay',
      file,
      '--target',
      node.address,
      '--stall-timeout',
      '2s',
      ...QUIET,
    ]);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toContain(
      `[SL-INGEST-101] cannot reach the Ingest service at ${node.address} within 2s`,
    );

    await node.restart();
    const dir = await tempDir();
    const bad = path.join(dir, 'bad.ndjson');
    await fsp.writeFile(
      bad,
      '{"id": 1, "ts": "2026-03-24T10:00:00Z"}\n{"id": 2, "ts": "2026-03-24T10:00:00Z"}\n',
    );
    const rejected = await runCli([
      'replay',
      bad,
      '--user-field',
      'user',
      '--time-field',
      'ts',
      '--target',
      node.address,
      ...QUIET,
    ]);
    expect(rejected.code).toBe(2);
    expect(rejected.stdout).toContain('    invalid_user_id: 2');
    expect(rejected.stderr).toContain('every record was rejected');
  });

  it('names each key of its end-of-replay log line once, the target included', async () => {
    const node = await startNode();
    const file = await oneEventFile();
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });

    await runTargetReplay({ paths: [file], read: ONE_EVENT_READ, target: node.address, logger });

    const finished = lines.filter((l) => l.includes('"msg":"replay finished"'));
    expect(finished).toHaveLength(1);
    // JSON.parse keeps the last of two equal keys, so they are counted in the text.
    const keys = [...(finished[0] as string).matchAll(/"([^"]+)":/g)].map((m) => m[1]);
    expect(keys.filter((k) => k === 'target')).toEqual(['target']);
    expect(keys).toEqual([...new Set(keys)]);
    expect(JSON.parse(finished[0] as string)).toMatchObject({
      component: 'replay',
      target: node.address,
      records: 1,
      accepted: 1,
      batches: 1,
      interrupted: false,
    });
  });

  it('counts one batch and one reconnect in the singular', async () => {
    const node = await startNode();
    // The first stream breaks on its first batch: the batch is sent again on a second one.
    node.dropStreamsAt.push(1);
    const file = await oneEventFile();

    const run = await runCli([
      ...['replay', file, '--user-field', 'user', '--time-field', 'ts'],
      ...['--target', node.address, ...QUIET],
    ]);

    expect(run.code).toBe(0);
    expect(node.streamsOpened).toBe(2);
    expect(run.stdout).toContain(`target:           ${node.address} (1 batch, 1 reconnect)\n`);
  });

  it('says on Ctrl-C how many batches in flight it waits for, then stops without Finish, with exit code 130', async () => {
    const { node, child, output, exited } = await heldReplay();

    child.kill('SIGINT');
    await until(() => output.stderr.includes('stopping'));
    expect(output.stderr).toContain(
      'stopping: waiting for 8 batches in flight to be acknowledged (Ctrl-C again to quit at once)\n',
    );
    node.release();

    expect(await exited).toBe(130);
    expect(node.arrivals.length).toBe(8);
    expect(node.finishCalls).toBe(0);
    expect(output.stdout).toContain(`records read:     ${8 * 8192}\n`);
    expect(output.stdout).toContain('(8 batches, 0 reconnects)');
    expect(output.stdout).toContain('watermark:        not moved (interrupted: periods stay open)');
    expect(output.stderr).toContain('replay interrupted; run the same command again');
  });

  it('quits at once with exit code 130 on a second Ctrl-C while it waits for the batches in flight', async () => {
    const { node, child, output, exited } = await heldReplay();

    child.kill('SIGINT');
    await until(() => output.stderr.includes('Ctrl-C again to quit at once'));
    child.kill('SIGINT');

    // The node still holds every acknowledgement: nothing but the second signal ends it.
    expect(await exited).toBe(130);
    expect(node.arrivals.length).toBe(8);
    expect(node.finishCalls).toBe(0);
    expect(output.stdout).toBe('');
  });

  it('skips Finish on a stop once the input is all taken, after its batch in flight', async () => {
    const node = await startNode();
    node.holdAcks = true;
    const file = await oneEventFile();
    const stop = new AbortController();
    const stops: TargetReplayStop[] = [];

    const replay = runTargetReplay({
      paths: [file],
      read: ONE_EVENT_READ,
      target: node.address,
      logger: pino({ level: 'silent' }),
      signal: stop.signal,
      onStop: (s) => stops.push(s),
    });
    await until(() => node.arrivals.length === 1);
    stop.abort();
    node.release();
    const summary = await replay;

    expect(stops).toEqual([{ waitingFor: 'batches', inFlight: 1 }]);
    expect(formatStopping(stops[0] as TargetReplayStop)).toBe(
      'stopping: waiting for 1 batch in flight to be acknowledged (Ctrl-C again to quit at once)',
    );
    expect(summary).toMatchObject({ records: 1, accepted: 1, batches: 1, interrupted: true });
    expect(summary.watermarkMs).toBeNull();
    expect(node.finishCalls).toBe(0);
  });

  it('lets a Finish under way at a stop end, and says it waits for the node to close its periods', async () => {
    const node = await startNode();
    const file = await oneEventFile();
    const stop = new AbortController();
    const stops: TargetReplayStop[] = [];
    // The node goes down as it acknowledges the batch; Finish fails until it is back.
    const logger = pino(
      { level: 'warn' },
      {
        write: (line: string) => {
          if (line.includes('ingest finish failed; retrying') && !stop.signal.aborted) {
            stop.abort();
          }
        },
      },
    );

    const summary = await runTargetReplay({
      paths: [file],
      read: ONE_EVENT_READ,
      target: node.address,
      logger,
      signal: stop.signal,
      onProgress: () => node.stop(),
      onStop: (s) => {
        stops.push(s);
        void node.restart();
      },
    });

    expect(stops).toEqual([{ waitingFor: 'finish' }]);
    expect(formatStopping(stops[0] as TargetReplayStop)).toBe(
      'finishing: every batch is acknowledged; waiting for the node to close its periods (Ctrl-C again to quit at once)',
    );
    expect(node.finishCalls).toBe(1);
    expect(summary).toMatchObject({ records: 1, accepted: 1, interrupted: false });
    expect(summary.watermarkMs).toBe(weekEndAfter(ONE_EVENT_MS) + 600_000);
  });
});

const ONE_EVENT_MS = Date.UTC(2026, 2, 24, 12);
const ONE_EVENT_READ = { userField: 'user', timeField: 'ts' };

/** A file of one event, `alice` at {@link ONE_EVENT_MS}: one batch. */
async function oneEventFile(): Promise<string> {
  const file = path.join(await tempDir(), 'one.ndjson');
  await fsp.writeFile(file, `{"user":"alice","ts":"${new Date(ONE_EVENT_MS).toISOString()}"}\n`);

  return file;
}

/**
 * A replay in a real process into a node that holds its acknowledgements; resolves once
 * the window (8 batches of 8192 events) is full and waits for them.
 */
async function heldReplay() {
  const dir = await tempDir();
  const file = path.join(dir, 'big.ndjson');
  const start = Date.UTC(2026, 2, 23);
  const text = Array.from(
    { length: 100_000 },
    (_, i) => `{"u":"u${i % 997}","t":${start + i * 1000}}`,
  ).join('\n');
  await fsp.writeFile(file, text + '\n');
  const node = await startNode();
  node.holdAcks = true;

  const child = spawn(
    process.execPath,
    [
      ...[BIN, 'replay', file, '--user-field', 'u', '--time-field', 't'],
      ...['--target', node.address, '--log-level', 'warn'],
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.push(child);
  const output = { stdout: '', stderr: '' };
  child.stdout.on('data', (d: Buffer) => (output.stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output.stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));

  await until(() => node.arrivals.length === 8);

  return { node, child, output, exited };
}

function position(request: EventBatchRequestWire): number {
  return Number(/:R(\d+)-\d+$/.exec(request.batch_id)?.[1]);
}

/** The start of the ISO week after the one that holds `ms`. */
function weekEndAfter(ms: number): number {
  const day = Math.floor(ms / 86_400_000) * 86_400_000;
  const monday = day - ((new Date(day).getUTCDay() + 6) % 7) * 86_400_000;

  return monday + 7 * 86_400_000;
}

async function until(condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
