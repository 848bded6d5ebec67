/** Loopback ports for the processes of a local cluster. */
import { createServer, type AddressInfo, type Server } from 'node:net';

/**
 * Ports the kernel hands out for `127.0.0.1:0`, all held open at once so that they
 * differ. Another process can still take one between this call and the bind that
 * follows; callers that bind later retry or report the clash.
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', resolve);
      });
    }

    return servers.map((s) => (s.address() as AddressInfo).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

/** Fails clearly when `port` is taken on 127.0.0.1, naming what wanted it. */
export async function assertPortFree(port: number, what: string): Promise<void> {
  const server = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', resolve);
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(
      `[SL-CLUSTER-002] port ${port} on 127.0.0.1 (${what}) is not free (${code ?? String(err)}); choose another with --port`,
      { cause: err },
    );
  }

  await new Promise<void>((resolve) => server.close(() => resolve()));
}
