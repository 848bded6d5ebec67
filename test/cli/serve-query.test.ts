/**
 * `speedlayer serve-query` as a real process over an embedded store. Scenarios:
 * - it logs one 'query service listening' line with the bound address (port 0);
 * - `speedlayer query --target` reads the published rows through it;
 * - SIGTERM drains it: it logs 'query service stopped' and exits 0, and the store opens
 *   again afterwards (the warehouse was closed).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DAY_MS } from '../../src/periods/index.js';
import { Warehouse } from '../../src/sink/index.js';
import { runCli } from '../support/cli.js';

const BIN = path.resolve(import.meta.dirname, '../../bin/speedlayer.js');
const DAY = Date.UTC(2026, 2, 29);
const FENCE = { ringEpoch: 1, fencingToken: 1 };

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'speedlayer-serve-query-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface LogLine {
  readonly msg: string;
  readonly address?: string;
  readonly component?: string;
}

describe('speedlayer serve-query', () => {
  it('serves the store until SIGTERM, then drains and exits 0', async () => {
    const dataDir = path.join(dir, 'store');
    const warehouse = await Warehouse.open({ dataDir });
    await warehouse.claimFence(FENCE);
    await warehouse.publish(
      {
        versions: [
          {
            periodType: 'day',
            periodStartMs: DAY,
            version: 1,
            distinctUsers: 42,
            status: 'final',
            reason: 'closed',
            watermarkMs: DAY + DAY_MS,
          },
        ],
        provisional: [],
      },
      FENCE,
    );
    await warehouse.close();

    const child = spawn(
      process.execPath,
      [BIN, 'serve-query', '--data-dir', dataDir, '--port', '0', '--poll-interval', '100ms'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    const lines: LogLine[] = [];
    const listening = new Promise<LogLine>((resolve, reject) => {
      createInterface({ input: child.stderr }).on('line', (text) => {
        const line = JSON.parse(text) as LogLine;
        lines.push(line);
        if (line.msg === 'query service listening') resolve(line);
      });
      child.once('exit', (code) => reject(new Error(`serve-query exited early with ${code}`)));
    });

    try {
      const { address } = await listening;

      expect(address).toMatch(/^127\.0\.0\.1:\d+$/);

      const query = await runCli(['query', '--target', address ?? '', '--format', 'csv']);

      expect(query).toMatchObject({ code: 0, stderr: '' });
      expect(query.stdout).toBe(
        'period_type,period_start,distinct_users,version,status\nday,2026-03-29T00:00:00Z,42,1,final\n',
      );
    } finally {
      child.kill('SIGTERM');
    }

    expect(await exited).toBe(0);
    expect(lines.map((line) => line.msg)).toEqual([
      'query service listening',
      'stop signal received',
      'query service draining',
      'query service stopped',
    ]);
    expect(lines.every((line) => line.component === 'query-service')).toBe(true);

    const reopened = await Warehouse.open({ dataDir });
    await reopened.close();
  });
});
