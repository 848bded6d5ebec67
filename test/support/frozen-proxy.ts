/**
 * A TCP proxy on 127.0.0.1 that can go silent: {@link FreezableProxy.freeze} stops
 * moving bytes either way while every connection stays open, as a network partition or
 * a peer lost with its machine leaves them. Only keepalive pings can tell.
 */
import net from 'node:net';

export class FreezableProxy {
  private readonly sockets = new Set<net.Socket>();
  private frozen = false;

  private constructor(
    private readonly server: net.Server,
    /** `127.0.0.1:port` to connect to instead of the upstream. */
    readonly address: string,
  ) {}

  static async start(upstream: string): Promise<FreezableProxy> {
    const separator = upstream.lastIndexOf(':');
    const host = upstream.slice(0, separator);
    const port = Number(upstream.slice(separator + 1));
    let proxy: FreezableProxy | undefined;

    const server = net.createServer((client) => {
      const target = net.connect({ host, port });
      proxy?.track(client, target);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port: listening } = server.address() as net.AddressInfo;
    proxy = new FreezableProxy(server, `127.0.0.1:${listening}`);

    return proxy;
  }

  /** Connections open now (each counts its two sockets once). */
  get connections(): number {
    return this.sockets.size / 2;
  }

  /** Stops forwarding; sockets stay open and unread, their peers' bytes unanswered. */
  freeze(): void {
    this.frozen = true;
    for (const socket of this.sockets) {
      socket.unpipe();
      socket.pause();
    }
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private track(a: net.Socket, b: net.Socket): void {
    for (const socket of [a, b]) {
      this.sockets.add(socket);
      socket.on('error', () => socket.destroy());
      socket.on('close', () => this.sockets.delete(socket));
    }
    a.on('close', () => b.destroy());
    b.on('close', () => a.destroy());
    if (this.frozen) {
      a.pause();
      b.pause();
      return;
    }

    a.pipe(b);
    b.pipe(a);
  }
}
