/**
 * Ports for a local cluster's processes are chosen outside the kernel's ephemeral
 * range: a port from that range, handed out and bound seconds later by a process, can
 * meanwhile be the source port of an outgoing connection, and the process then fails
 * with EADDRINUSE (seen in a cluster case: a coordinator's metrics port).
 */
import { readFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';

import { afterEach, describe, expect, it } from 'vitest';

import { assertPortFree, freePorts } from '../../cluster/ports.js';

const RANGE_FILE = '/proc/sys/net/ipv4/ip_local_port_range';
const [EPHEMERAL_LOW, EPHEMERAL_HIGH] = readFileSync(RANGE_FILE, 'utf8')
  .trim()
  .split(/\s+/)
  .map(Number) as [number, number];

const open: Array<Server | Socket> = [];

afterEach(() => {
  for (const item of open.splice(0)) {
    if ('destroy' in item) item.destroy();
    else item.close();
  }
});

async function listenOn(port: number): Promise<Server> {
  const server = createServer((socket) => open.push(socket));
  open.push(server);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });

  return server;
}

describe('freePorts', () => {
  it('hands out distinct ports outside the ephemeral range, at or above 10000', async () => {
    const ports = await freePorts(40);

    expect(new Set(ports).size).toBe(40);
    for (const port of ports) {
      expect(port).toBeGreaterThanOrEqual(10_000);
      expect(port).toBeLessThanOrEqual(65_535);
      expect(port >= EPHEMERAL_LOW && port <= EPHEMERAL_HIGH).toBe(false);
    }
  });

  it('never hands out a port twice in one process', async () => {
    const first = await freePorts(20);
    const second = await freePorts(20);

    expect(second.filter((p) => first.includes(p))).toEqual([]);
  });

  it('hands out ports that can be bound afterwards, while outgoing connections are open', async () => {
    // Outgoing connections take their source ports from the ephemeral range.
    const target = await listenOn(0);
    const { port: targetPort } = target.address() as { port: number };
    for (let i = 0; i < 50; i++) {
      const socket = connect(targetPort, '127.0.0.1');
      open.push(socket);
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', reject);
      });
    }

    const ports = await freePorts(10);
    for (const port of ports) {
      await assertPortFree(port, 'test');
      await listenOn(port);
    }
  });

  it('assertPortFree refuses a port in use, naming what wanted it', async () => {
    const ports = await freePorts(5);
    const busy = await listenOn(ports[0] as number);
    const { port } = busy.address() as { port: number };

    await expect(assertPortFree(port, 'the test')).rejects.toThrow(
      `[SL-CLUSTER-002] port ${port} on 127.0.0.1 (the test) is not free (EADDRINUSE)`,
    );
  });
});
