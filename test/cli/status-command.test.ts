/**
 * `speedlayer status` against a real Coordinator server on loopback whose status source
 * the test sets (no etcd): what it prints and how it exits when no leader is elected,
 * when a round has run with every partition, and when the source cannot read etcd; and
 * when nothing listens at the target, or a server without the Coordinator service does.
 */
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';

import { formatTable } from '../../src/cli/status-command.js';
import { RingError, type StatusRecord } from '../../src/ring/index.js';
import { startCoordinatorServer } from '../../src/transport/status-service.js';
import { runCli } from '../support/cli.js';

const T = Date.UTC(2026, 2, 23, 12);
const servers: { close(): Promise<void> }[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) await server.close();
});

async function serve(source: () => Promise<StatusRecord | undefined>): Promise<string> {
  const server = await startCoordinatorServer({
    address: '127.0.0.1:0',
    source,
    answeredBy: 'coord-b',
  });
  servers.push(server);

  return server.address;
}

describe('speedlayer status', () => {
  it('says clearly that nothing is published while no leader is elected, and --check exits 3', async () => {
    const target = await serve(() => Promise.resolve(undefined));

    const plain = await runCli(['status', '--target', target]);
    expect(plain).toMatchObject({ code: 0, stderr: '' });
    expect(plain.stdout).toContain('leader            none elected: nothing is published');
    expect(plain.stdout).toContain('global watermark  unknown: no round yet');

    const check = await runCli(['status', '--target', target, '--check']);
    expect(check.code).toBe(3);
    expect(check.stderr).toBe('speedlayer: numbers are held back: no coordinator is elected\n');
  });

  it('prints the leader, the watermark and every partition when none is missing', async () => {
    const record: StatusRecord = {
      leaderId: 'coord-a',
      fencingToken: 17,
      ringEpoch: 2,
      partitionCount: 2,
      globalWatermarkMs: T,
      missingPartitions: [],
      partitions: [
        { partition: 0, shardId: 'shard-a', address: 'a:1', reported: true, watermarkMs: T },
        { partition: 1, shardId: 'shard-b', address: 'b:1', reported: true, watermarkMs: T + 5 },
      ],
      lastRoundAtMs: Date.now(),
      recordedAtMs: Date.now(),
    };
    const target = await serve(() => Promise.resolve(record));

    const result = await runCli(['status', '--target', target, '--check']);
    expect(result.code).toBe(0);
    expect(result.stdout.split('\n').slice(1, 7)).toEqual([
      'leader            coord-a (fencing token 17)',
      'ring epoch        2',
      'partitions        2',
      expect.stringMatching(/^last round {8}\d{4}-\d\d-\d\dT[\d:.]+Z \((just now|\ds ago)\)$/),
      'global watermark  2026-03-23T12:00:00Z',
      'missing           none',
    ]);
    expect(result.stdout).toContain(
      [
        'partition  shard    reported  watermark',
        '0          shard-a  yes       2026-03-23T12:00:00Z',
        '1          shard-b  yes       2026-03-23T12:00:00.005Z',
      ].join('\n'),
    );

    const json = JSON.parse(
      (await runCli(['status', '--target', target, '--format', 'json'])).stdout,
    );
    expect(json).toMatchObject({
      answeredBy: 'coord-b',
      leaderId: 'coord-a',
      globalWatermarkMs: T,
      heldBack: null,
    });
  });

  it('tells a complete round whose partitions have no watermark yet from an incomplete one', () => {
    const base = {
      answeredBy: 'coord-a',
      leaderId: 'coord-a',
      fencingToken: 3,
      ringEpoch: 1,
      partitionCount: 2,
      lastRoundAtMs: T,
      partitions: [
        { partition: 0, shardId: 'shard-a', address: 'a:1', reported: true, watermarkMs: T },
        { partition: 1, shardId: 'shard-a', address: 'a:1', reported: true },
      ],
    };
    const fresh = formatTable({ ...base, missingPartitions: [] }, T);
    expect(fresh).toContain('global watermark  none yet: a partition has no watermark yet\n');
    expect(fresh).toContain('missing           none\n');

    const partial = formatTable({ ...base, missingPartitions: [1] }, T);
    expect(partial).toContain('global watermark  unknown: the last round was not complete\n');
    expect(partial).toContain('missing           shard-a (1 partition: 1)');
  });

  it("exits 1 with the server's code when the status cannot be read, or nothing listens", async () => {
    const target = await serve(() =>
      Promise.reject(new RingError('unavailable', 'reading the status: etcd timed out')),
    );

    const failed = await runCli(['status', '--target', target]);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(
      /^speedlayer: \[SL-STATUS-001\] the status cannot be read: \[SL-RING-007\] reading the status: etcd timed out\n$/,
    );

    // A gRPC server without the Coordinator service (a serve-query port, say).
    const other = new grpc.Server();
    const port = await new Promise<number>((resolve, reject) => {
      other.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, bound) =>
        err === null ? resolve(bound) : reject(err),
      );
    });
    servers.push({
      close: () => new Promise<void>((resolve) => other.tryShutdown(() => resolve())),
    });
    const wrong = await runCli(['status', '--target', `127.0.0.1:${port}`]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(
      new RegExp(
        `^speedlayer: \\[SL-STATUS-002\\] 127\\.0\\.0\\.1:${port} does not serve the Coordinator service; point --target at a shard or a coordinator \\(not serve-query\\)`,
      ),
    );

    const closed = await runCli(['status', '--target', '127.0.0.1:1', '--timeout', '2s']);
    expect(closed.code).toBe(1);
    expect(closed.stderr).toMatch(
      /^speedlayer: \[SL-STATUS-001\] cannot reach the coordinator service at 127\.0\.0\.1:1/,
    );
  });
});
