/**
 * A real single-node etcd for integration tests, and a TCP proxy that can freeze the
 * traffic between one client and that etcd (a paused process or a partition, as the
 * client sees it).
 *
 * The `etcd` binary must be on PATH: tests that need etcd fail, they never skip.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const HEALTH_POLL_MS = 50;
const HEALTH_DEADLINE_MS = 15_000;
const START_ATTEMPTS = 3;
const STDERR_TAIL_CHARS = 4_000;

export interface EtcdServer {
  /** The client URL, e.g. `http://127.0.0.1:41234`. */
  readonly endpoint: string;
  /** SIGKILLs etcd and removes its data directory. Safe to call twice. */
  stop(): Promise<void>;
}

/** Starts etcd on two free loopback ports and resolves once it reports healthy. */
export async function startEtcd(): Promise<EtcdServer> {
  assertEtcdInstalled();

  let lastError: unknown;
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    try {
      return await startOnce();
    } catch (err) {
      // Another process can take a port between our probe and etcd's bind.
      lastError = err;
    }
  }

  throw lastError;
}

function assertEtcdInstalled(): void {
  const probe = spawnSync('etcd', ['--version'], { stdio: 'ignore' });
  if (probe.error !== undefined || probe.status !== 0) {
    throw new Error(
      'the etcd binary is not on PATH; the ring tests need a real etcd: apt-get install etcd-server etcd-client',
    );
  }
}

async function startOnce(): Promise<EtcdServer> {
  const dataDir = await mkdtemp(join(tmpdir(), 'speedlayer-etcd-'));
  const [clientPort, peerPort] = await freePorts(2);
  const endpoint = `http://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;

  const child = spawn(
    'etcd',
    [
      '--name=speedlayer-test',
      `--data-dir=${dataDir}`,
      '--logger=zap',
      '--log-level=error',
      `--listen-client-urls=${endpoint}`,
      `--advertise-client-urls=${endpoint}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=speedlayer-test=${peerUrl}`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const stderr = tailOf(child);
  const killOnExit = (): void => void child.kill('SIGKILL');
  process.once('exit', killOnExit);

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      process.off('exit', killOnExit);
      await killAndWait(child);
      await rm(dataDir, { recursive: true, force: true });
    })();

    return stopped;
  };

  try {
    await waitHealthy(endpoint, child, stderr);
  } catch (err) {
    await stop();
    throw err;
  }

  return { endpoint, stop };
}

/** Ports the kernel hands out for 127.0.0.1:0, all held open at once so they differ. */
async function freePorts(count: number): Promise<number[]> {
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

/** The last few thousand characters etcd wrote to stderr, for failure messages. */
function tailOf(child: ChildProcess): () => string {
  let tail = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    tail = (tail + chunk).slice(-STDERR_TAIL_CHARS);
  });

  return () => tail;
}

async function waitHealthy(
  endpoint: string,
  child: ChildProcess,
  stderr: () => string,
): Promise<void> {
  const deadline = Date.now() + HEALTH_DEADLINE_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `etcd exited during startup (${child.exitCode ?? child.signalCode}): ${stderr()}`,
      );
    }
    if (await isHealthy(endpoint)) return;
    await sleep(HEALTH_POLL_MS);
  }

  throw new Error(
    `etcd at ${endpoint} was not healthy within ${HEALTH_DEADLINE_MS} ms: ${stderr()}`,
  );
}

function isHealthy(endpoint: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = spawn(
      'etcdctl',
      [`--endpoints=${endpoint}`, '--command-timeout=1s', 'endpoint', 'health'],
      {
        stdio: 'ignore',
        env: { ...process.env, ETCDCTL_API: '3' },
      },
    );
    probe.once('error', () => resolve(false));
    probe.once('exit', (code) => resolve(code === 0));
  });
}

/** SIGKILL, not SIGTERM: a lone member can take seconds to exit on SIGTERM. */
async function killAndWait(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;

  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  await exited;
}

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
