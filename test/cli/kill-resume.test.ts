/**
 * A replay process killed with SIGKILL, or stopped with Ctrl-C (SIGINT), part
 * way through resumes from its
 * last checkpoint when run again, and ends with exactly the expected counts
 * of the real commit history: nothing lost, nothing counted twice, and every
 * period with consecutive versions.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { runCli } from '../support/cli.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const GIT = path.join(ROOT, 'datasets', 'git-git-commits');
let dir: string | undefined;

afterAll(async () => {
  if (dir !== undefined) await fsp.rm(dir, { recursive: true, force: true });
});

function replayArgs(dataDir: string): string[] {
  return [
    path.join(ROOT, 'bin', 'speedlayer.js'),
    'replay',
    path.join(GIT, 'git-git-commits.csv.gz'),
    '--user-field',
    'author_email',
    '--time-field',
    'author_date',
    '--restatement-horizon',
    '10000d',
    '--round-interval',
    '200ms',
    '--data-dir',
    dataDir,
    '--log-level',
    'info',
  ];
}

/** Starts a replay and sends `signal` once it has checkpointed at least once; returns its exit code. */
async function replayAndKill(
  dataDir: string,
  signal: NodeJS.Signals = 'SIGKILL',
): Promise<number | null> {
  const child = spawn(process.execPath, replayArgs(dataDir), {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let rounds = 0;
  child.stderr.on('data', (chunk: Buffer) => {
    rounds += (chunk.toString().match(/round published|"records"/g) ?? []).length;
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setInterval(() => {
      if (rounds > 0 || child.exitCode !== null) {
        clearInterval(timer);
        child.kill(signal);
        resolve();
      }
    }, 20);
    child.on('error', reject);
  });
  return new Promise((resolve) => child.on('close', (code) => resolve(code)));
}

describe('replay stopped part way', () => {
  it.each([
    { signal: 'SIGKILL' as const, exitCode: null },
    { signal: 'SIGINT' as const, exitCode: 130 },
  ])('by $signal resumes and ends with the exact counts', async ({ signal, exitCode }) => {
    dir ??= await fsp.mkdtemp(path.join(os.tmpdir(), 'speedlayer-kill-'));
    const dataDir = path.join(dir, signal);

    expect(await replayAndKill(dataDir, signal)).toBe(exitCode);
    const resumed = await runCli([...replayArgs(dataDir).slice(1), '--log-level', 'silent']);
    expect(resumed.code).toBe(0);
    expect(resumed.stdout).toMatch(
      /resumed: done earlier: git-git-commits\.csv\.gz up to line \d+/,
    );

    const query = await runCli(['query', '--format', 'csv', '--data-dir', dataDir]);
    const actual = query.stdout
      .trimEnd()
      .split('\n')
      .slice(1)
      .map((l) => l.split(',').slice(0, 3).join(','));
    const expected = fs
      .readFileSync(path.join(GIT, 'expected-counts.csv'), 'utf8')
      .trimEnd()
      .split('\n')
      .slice(1);
    expect(actual).toEqual(expected);

    const history = await runCli(['query', '--history', '--format', 'csv', '--data-dir', dataDir]);
    const versions = new Map<string, number[]>();
    for (const line of history.stdout.trimEnd().split('\n').slice(1)) {
      const [type, start, version] = line.split(',');
      const key = `${type},${start}`;
      versions.set(key, [...(versions.get(key) ?? []), Number(version)]);
    }
    for (const list of versions.values()) expect(list).toEqual(list.map((_, i) => i + 1));
  });
});
