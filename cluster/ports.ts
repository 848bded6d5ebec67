/** Loopback ports for the processes of a local cluster. */
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';

/** Below this, ports are left to well-known and registered services. */
const LOWEST_PORT = 10_000;
/** A stretch of non-ephemeral ports shorter than this is not worth choosing from. */
const MIN_RANGE = 1_000;
/** Random candidates tried per port before falling back to the kernel's choice. */
const ATTEMPTS = 64;

/** Ports this process handed out already; never handed out twice. */
const handedOut = new Set<number>();
let quietRanges: Array<[number, number]> | undefined;

/**
 * Ports that differ from each other, from every port in use, and from every port
 * handed out before by this process, all held open at once while they are chosen.
 *
 * They are chosen at random outside the kernel's ephemeral range, because a port
 * from `listen(0)` is taken from that range, as is the local port of every outgoing
 * connection: a port chosen there and bound later (a process started or restarted
 * on it) can meanwhile be the source port of some client's connection, and its bind
 * then fails. Outside the range only another caller choosing the same port in the
 * same instant can take it, which random choice makes rare. Where the machine has
 * no such range left, the kernel chooses.
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < count; i++) {
      const { server, port } = await holdQuietPort();
      servers.push(server);
      ports.push(port);
      handedOut.add(port);
    }

    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

async function holdQuietPort(): Promise<{ server: Server; port: number }> {
  const ranges = nonEphemeralRanges();
  const size = ranges.reduce((sum, [low, high]) => sum + high - low + 1, 0);
  for (let attempt = 0; size > 0 && attempt < ATTEMPTS; attempt++) {
    const port = nthPort(ranges, Math.floor(Math.random() * size));
    if (handedOut.has(port)) continue;
    const server = await tryListen(port);
    if (server !== undefined) return { server, port };
  }
  const server = await tryListen(0);
  if (server === undefined) throw new Error('no free port on 127.0.0.1');

  return { server, port: (server.address() as AddressInfo).port };
}

function nthPort(ranges: ReadonlyArray<[number, number]>, n: number): number {
  let rest = n;
  for (const [low, high] of ranges) {
    if (rest <= high - low) return low + rest;
    rest -= high - low + 1;
  }
  throw new RangeError(`port index ${n} is beyond the ranges`);
}

async function tryListen(port: number): Promise<Server | undefined> {
  const server = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port, host: '127.0.0.1', exclusive: true }, resolve);
    });

    return server;
  } catch (err) {
    if (port === 0) throw err;
    return undefined;
  }
}

/** [LOWEST_PORT, 65535] less the ephemeral range, as the stretches long enough to use. */
function nonEphemeralRanges(): Array<[number, number]> {
  if (quietRanges !== undefined) return quietRanges;

  const [low, high] = ephemeralRange();
  const ranges: Array<[number, number]> = [
    [LOWEST_PORT, Math.min(low - 1, 65_535)],
    [Math.max(high + 1, LOWEST_PORT), 65_535],
  ];
  quietRanges = ranges.filter(([a, b]) => b - a + 1 >= MIN_RANGE);

  return quietRanges;
}

function ephemeralRange(): [number, number] {
  try {
    const text = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8');
    const [low, high] = text.trim().split(/\s+/).map(Number);
    if (Number.isInteger(low) && Number.isInteger(high)) return [low as number, high as number];
  } catch {
    // Not Linux: the IANA dynamic range that the other systems use.
  }

  return [49_152, 65_535];
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
