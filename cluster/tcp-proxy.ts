/**
 * A loopback TCP proxy that can freeze the traffic between one client and a server: to
 * the client it looks like a paused peer or a network partition, to the server like a
 * client that stopped sending (an etcd lease then expires). LocalCluster puts one
 * between etcd and each process named in its `etcdProxied` option; tests use it too.
 */
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';

export interface TcpProxy {
  /** An endpoint that reaches the target through this proxy, e.g. `http://127.0.0.1:41235`. */
  readonly endpoint: string;
  /** Holds every byte in both directions, keeping the connections open, until {@link thaw}. */
  freeze(): void;
  /** Delivers what was held and forwards again. */
  thaw(): void;
  /** Destroys every connection and stops listening. Safe to call twice. */
  close(): Promise<void>;
}

/**
 * A loopback TCP proxy in front of `targetEndpoint`. Freezing it looks, to the client
 * behind it, like a partition that drops nothing but delivers nothing either; to etcd
 * it looks like a client that stopped sending keepalives.
 */
export async function startTcpProxy(targetEndpoint: string): Promise<TcpProxy> {
  const target = new URL(targetEndpoint);
  const sockets = new Set<Socket>();
  const held: Array<{ to: Socket; chunk: Buffer }> = [];
  let frozen = false;

  const forward = (from: Socket, to: Socket): void => {
    from.on('data', (chunk: Buffer) => {
      if (frozen) held.push({ to, chunk });
      else to.write(chunk);
    });
    from.on('close', () => to.destroy());
    from.on('error', () => to.destroy());
  };

  const server = createServer((inbound) => {
    const outbound = connect(Number(target.port), target.hostname);
    sockets.add(inbound).add(outbound);
    inbound.on('close', () => sockets.delete(inbound));
    outbound.on('close', () => sockets.delete(outbound));
    forward(inbound, outbound);
    forward(outbound, inbound);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;

  let closed: Promise<void> | undefined;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    freeze: () => {
      frozen = true;
    },
    thaw: () => {
      frozen = false;
      for (const { to, chunk } of held.splice(0)) if (!to.destroyed) to.write(chunk);
    },
    close: () => {
      closed ??= new Promise<void>((resolve) => {
        held.length = 0;
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      });

      return closed;
    },
  };
}
