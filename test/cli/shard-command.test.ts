/**
 * `speedlayer shard` flags that are checked before anything opens: the metrics endpoint
 * flags are listed in --help, a metrics port equal to the gRPC port on the same host is
 * refused with exit code 2, and a metrics port that is not a port is refused.
 */
import { describe, expect, it } from 'vitest';

import { runCli } from '../support/cli.js';

const REQUIRED = [
  '--id',
  's-1',
  '--etcd',
  'http://127.0.0.1:1',
  '--cluster',
  'c',
  '--partitions',
  '4',
];

describe('speedlayer shard flags', () => {
  it('lists the metrics endpoint flags in its help', async () => {
    const help = await runCli(['shard', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/--metrics-host <host>\s+address the metrics endpoint listens on/);
    expect(help.stdout).toMatch(/--metrics-port <port>\s+serve Prometheus metrics at/);
  });

  it('refuses a metrics port that is its gRPC port on the same host, before opening anything', async () => {
    const clash = await runCli(['shard', ...REQUIRED, '--port', '7611', '--metrics-port', '7611']);
    expect(clash.code).toBe(2);
    expect(clash.stderr).toContain(
      '--port and --metrics-port are both 127.0.0.1:7611: give each its own port',
    );

    const notAPort = await runCli(['shard', ...REQUIRED, '--metrics-port', '70000']);
    expect(notAPort.code).not.toBe(0);
    expect(notAPort.stderr).toContain("not a port: '70000'");
  });
});
