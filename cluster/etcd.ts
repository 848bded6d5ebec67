/**
 * A single-member etcd on loopback: its command line, its health check, and a
 * self-contained server for tests. The `etcd` binary must be on PATH (Debian:
 * `apt-get install etcd-server etcd-client`).
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { ClusterProcess } from './cluster-process.js';
import { freePorts } from './ports.js';

const HEALTH_POLL_MS = 50;
const HEALTH_PROBE_MS = 1_000;
/** How long etcd may take to report healthy. @default */
export const ETCD_READY_MS = 15_000;
const START_ATTEMPTS = 3;

export interface EtcdLaunch {
  /** The member name. */
  readonly name: string;
  readonly dataDir: string;
  readonly clientPort: number;
  readonly peerPort: number;
  /** etcd's own log level. @default 'error' */
  readonly logLevel?: 'debug' | 'info' | 'warn' | 'error';
}

/** Throws a clear error when there is no `etcd` binary on PATH. */
export function assertEtcdInstalled(): void {
  const probe = spawnSync('etcd', ['--version'], { stdio: 'ignore' });
  if (probe.error !== undefined || probe.status !== 0) {
    throw new Error(
      '[SL-CLUSTER-001] the etcd binary is not on PATH; install it (Debian: apt-get install etcd-server etcd-client)',
    );
  }
}

export function etcdEndpoint(clientPort: number): string {
  return `http://127.0.0.1:${clientPort}`;
}

/** The command line of a lone member that listens on 127.0.0.1 only. */
export function etcdArgs(launch: EtcdLaunch): string[] {
  const client = etcdEndpoint(launch.clientPort);
  const peer = `http://127.0.0.1:${launch.peerPort}`;

  return [
    `--name=${launch.name}`,
    `--data-dir=${launch.dataDir}`,
    '--logger=zap',
    `--log-level=${launch.logLevel ?? 'error'}`,
    `--listen-client-urls=${client}`,
    `--advertise-client-urls=${client}`,
    `--listen-peer-urls=${peer}`,
    `--initial-advertise-peer-urls=${peer}`,
    `--initial-cluster=${launch.name}=${peer}`,
  ];
}

/** Whether etcd's `/health` endpoint answers `{"health":"true"}`. */
export async function isEtcdHealthy(endpoint: string): Promise<boolean> {
  try {
    const response = await fetch(`${endpoint}/health`, {
      signal: AbortSignal.timeout(HEALTH_PROBE_MS),
    });
    const body = (await response.json()) as { health?: unknown };

    return response.ok && body.health === 'true';
  } catch {
    return false;
  }
}

/** Polls until the etcd that `proc` runs is healthy; fails if it exits or takes too long. */
export async function waitForEtcd(
  endpoint: string,
  proc: ClusterProcess,
  timeoutMs = ETCD_READY_MS,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!proc.running) {
      const { code, signal } = await proc.exited;
      throw new Error(
        `${proc.name} exited during startup (${code ?? signal}):\n${proc.outputTail()}`,
      );
    }
    if (await isEtcdHealthy(endpoint)) return;
    await sleep(HEALTH_POLL_MS);
  }

  throw new Error(
    `${proc.name} at ${endpoint} was not healthy within ${timeoutMs} ms:\n${proc.outputTail()}`,
  );
}

export interface EtcdServer {
  /** The client URL, e.g. `http://127.0.0.1:41234`. */
  readonly endpoint: string;
  /** SIGKILLs etcd and removes its data directory. Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * Starts a throwaway etcd (temporary data directory, two free loopback ports) and
 * resolves once it reports healthy. Stopping it is a SIGKILL: its data is thrown away.
 */
export async function startEtcd(): Promise<EtcdServer> {
  assertEtcdInstalled();

  let lastError: unknown;
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    try {
      return await startThrowaway();
    } catch (err) {
      // Another process can take a port between the probe and etcd's bind.
      lastError = err;
    }
  }

  throw lastError;
}

async function startThrowaway(): Promise<EtcdServer> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'speedlayer-etcd-'));
  const [clientPort, peerPort] = (await freePorts(2)) as [number, number];
  const endpoint = etcdEndpoint(clientPort);
  const proc = new ClusterProcess({
    name: 'etcd',
    command: 'etcd',
    args: etcdArgs({ name: 'speedlayer-test', dataDir, clientPort, peerPort }),
  });

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      proc.signal('SIGKILL');
      await proc.exited;
      await rm(dataDir, { recursive: true, force: true });
    })();

    return stopped;
  };

  proc.start();
  try {
    await waitForEtcd(endpoint, proc);
  } catch (err) {
    await stop();
    throw err;
  }

  return { endpoint, stop };
}
