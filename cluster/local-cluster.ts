/**
 * A whole speedlayer cluster on loopback, as child processes: one etcd, the shards
 * (`speedlayer shard`) and two coordinators (`speedlayer coordinator`), over a PostgreSQL
 * server the caller names. Used by `npm run cluster` and by tests that need real
 * processes to kill, restart, pause and stop.
 *
 * Start-up order: every shard registers before any coordinator starts, so that the
 * first ring the leader writes has them all (the ring is written once; a shard that
 * joins later gets no partitions).
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import pg from 'pg';

import { EtcdCoordinationStore } from '../src/ring/index.js';
import { INGEST_SERVICE } from '../src/transport/ingest-server.js';
import {
  ClusterProcess,
  type ExitInfo,
  type LogLine,
  type WaitOptions,
} from './cluster-process.js';
import {
  randomClusterName,
  resolveLocalClusterOptions,
  schemaFor,
  type LocalClusterOptions,
  type ResolvedLocalClusterOptions,
} from './cluster-options.js';
import { checkHealth } from './grpc-health.js';
import { assertEtcdInstalled, etcdArgs, etcdEndpoint, waitForEtcd } from './etcd.js';
import { assertPortFree, freePorts } from './ports.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';
import {
  SPEEDLAYER_BIN,
  coordinatorArgs,
  shardArgs,
  type ClusterPlan,
  type CoordinatorPlan,
  type ShardPlan,
} from './role-args.js';

export type { LogLine, ExitInfo } from './cluster-process.js';
export type { TcpProxy } from './tcp-proxy.js';

/** How each part is reached, all on 127.0.0.1. */
export interface ClusterAddresses {
  /** etcd's client URL. */
  readonly etcd: string;
  /** `host:port` of the first shard, which takes ingest and queries (any shard does). */
  readonly ingest: string;
  /** Each shard's gRPC port: Shard, Ingest, Query, health and reflection. */
  readonly shards: Readonly<Record<string, string>>;
  /** Each shard's Prometheus `/metrics` endpoint. */
  readonly shardMetrics: Readonly<Record<string, string>>;
  /** Each coordinator's Coordinator service (Status) and Prometheus `/metrics` endpoint. */
  readonly coordinators: Readonly<
    Record<string, { readonly status: string; readonly metrics: string }>
  >;
}

/** What a launch keeps in a given data directory, so that a later launch resumes it. */
interface ClusterFile {
  readonly clusterName: string;
  readonly postgresSchema: string;
  readonly partitions: number;
  readonly shards: number;
}

const CLUSTER_FILE = 'cluster.json';
const COORDINATORS = ['coordinator-1', 'coordinator-2'] as const;
const ETCD_STOP_GRACE_MS = 5_000;
const HEALTH_POLL_MS = 100;
const HEALTH_PROBE_MS = 2_000;

export class LocalCluster {
  /** The flags the launcher would pass but the roles do not have yet (`speedlayer shard --x`). */
  readonly skippedFlags: readonly string[];
  private readonly procs = new Map<string, ClusterProcess>();
  private readonly shardNames: string[];
  private leaderStore: Promise<EtcdCoordinationStore> | undefined;
  private stopping: Promise<Record<string, ExitInfo>> | undefined;

  private constructor(
    private readonly options: ResolvedLocalClusterOptions,
    private readonly plan: ClusterPlan,
    readonly dataDir: string,
    private readonly ownsDataDir: boolean,
    readonly addresses: ClusterAddresses,
    shards: readonly ShardPlan[],
    coordinators: readonly CoordinatorPlan[],
    etcdPorts: { client: number; peer: number },
    /** The proxies of the processes that reach etcd through one, by process name. */
    private readonly etcdProxies: ReadonlyMap<string, TcpProxy>,
  ) {
    const skipped = new Set<string>();
    const env = { ...process.env, SPEEDLAYER_POSTGRES_URL: options.postgresUrl };
    const logFile = (name: string): string | undefined =>
      options.logFiles ? path.join(dataDir, 'logs', `${name}.log`) : undefined;
    const add = (name: string, command: string, args: string[]): void => {
      this.procs.set(
        name,
        new ClusterProcess({ name, command, args, env, logFile: logFile(name) }),
      );
    };

    add(
      'etcd',
      'etcd',
      etcdArgs({
        name: 'speedlayer-local',
        dataDir: path.join(dataDir, 'etcd'),
        clientPort: etcdPorts.client,
        peerPort: etcdPorts.peer,
      }),
    );
    // A proxied process is given its proxy's endpoint instead of etcd's own.
    const planOf = (name: string): ClusterPlan => {
      const proxy = etcdProxies.get(name);
      return proxy === undefined ? plan : { ...plan, etcdEndpoint: proxy.endpoint };
    };
    for (const s of shards) {
      add(s.name, process.execPath, [SPEEDLAYER_BIN, ...shardArgs(planOf(s.name), s, skipped)]);
    }
    for (const c of coordinators) {
      const args = coordinatorArgs(planOf(c.name), c, skipped);
      add(c.name, process.execPath, [SPEEDLAYER_BIN, ...args]);
    }
    this.shardNames = shards.map((s) => s.name);
    this.skippedFlags = [...skipped].sort();
  }

  /**
   * Starts etcd, the shards and the coordinators, and resolves once every shard serves
   * its ring assignment and Ingest, and one coordinator leads. On failure everything started is
   * stopped again and the error names the process and its last output.
   */
  static async start(options: LocalClusterOptions = {}): Promise<LocalCluster> {
    const o = resolveLocalClusterOptions(options);
    assertEtcdInstalled();
    await checkPostgres(o.postgresUrl);

    const ownsDataDir = o.dataDir === undefined;
    const dataDir = o.dataDir ?? (await mkdtemp(path.join(tmpdir(), 'speedlayer-cluster-')));
    let cluster: LocalCluster | undefined;
    try {
      await mkdir(path.join(dataDir, 'logs'), { recursive: true });
      const identity = await clusterIdentity(o, dataDir, ownsDataDir);
      cluster = await LocalCluster.layOut(o, dataDir, ownsDataDir, identity);
      await cluster.launch();

      return cluster;
    } catch (err) {
      if (cluster !== undefined) await cluster.stop().catch(() => undefined);
      else if (ownsDataDir) await rm(dataDir, { recursive: true, force: true });
      throw err;
    }
  }

  private static async layOut(
    o: ResolvedLocalClusterOptions,
    dataDir: string,
    ownsDataDir: boolean,
    identity: ClusterFile,
  ): Promise<LocalCluster> {
    // etcd's two, the other shards' gRPC, every shard's metrics, the coordinators' two each.
    const count = 2 + (o.shards - 1) + o.shards + 2 * COORDINATORS.length;
    const ports = await portRange(o.basePort, count);
    const firstPort = o.port === 0 ? ((await freePorts(1))[0] as number) : o.port;
    await assertPortFree(firstPort, 'the first shard: ingest and queries');
    const take = (): number => ports.shift() as number;

    const etcdPorts = { client: take(), peer: take() };
    const shards: ShardPlan[] = [];
    for (let i = 1; i <= o.shards; i++) {
      const name = `shard-${i}`;
      const port = i === 1 ? firstPort : take();
      shards.push({ name, port, metricsPort: take(), dataDir: path.join(dataDir, name) });
    }
    const coordinators: CoordinatorPlan[] = COORDINATORS.map((name) => ({
      name,
      dataDir: path.join(dataDir, name),
      statusPort: take(),
      metricsPort: take(),
    }));

    const at = (port: number): string => `127.0.0.1:${port}`;
    const metricsAt = (port: number): string => `http://${at(port)}/metrics`;
    const addresses: ClusterAddresses = {
      etcd: etcdEndpoint(etcdPorts.client),
      ingest: at(firstPort),
      shards: Object.fromEntries(shards.map((s) => [s.name, at(s.port)])),
      shardMetrics: Object.fromEntries(shards.map((s) => [s.name, metricsAt(s.metricsPort)])),
      coordinators: Object.fromEntries(
        coordinators.map((c) => [
          c.name,
          { status: at(c.statusPort), metrics: metricsAt(c.metricsPort) },
        ]),
      ),
    };
    const plan: ClusterPlan = {
      options: o,
      clusterName: identity.clusterName,
      etcdEndpoint: addresses.etcd,
      postgresSchema: identity.postgresSchema,
    };

    const proxies = new Map<string, TcpProxy>();
    try {
      for (const name of o.etcdProxied) proxies.set(name, await startTcpProxy(addresses.etcd));

      return new LocalCluster(
        o,
        plan,
        dataDir,
        ownsDataDir,
        addresses,
        shards,
        coordinators,
        etcdPorts,
        proxies,
      );
    } catch (err) {
      await Promise.all([...proxies.values()].map((proxy) => proxy.close()));
      throw err;
    }
  }

  get clusterName(): string {
    return this.plan.clusterName;
  }

  get postgresSchema(): string {
    return this.plan.postgresSchema;
  }

  /** Every process's name: `etcd`, `shard-1` ..., `coordinator-1`, `coordinator-2`. */
  get names(): string[] {
    return [...this.procs.keys()];
  }

  get shards(): readonly string[] {
    return this.shardNames;
  }

  get coordinators(): readonly string[] {
    return COORDINATORS;
  }

  /** The running pid of each process (absent when it does not run). */
  pids(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [name, proc] of this.procs) {
      if (proc.running && proc.pid !== undefined) out[name] = proc.pid;
    }

    return out;
  }

  /** The process called `name`, for its log lines and state. */
  process(name: string): ClusterProcess {
    const proc = this.procs.get(name);
    if (proc === undefined) {
      throw new Error(`no process '${name}' in this cluster (${this.names.join(', ')})`);
    }

    return proc;
  }

  /** Sends `signal` and resolves once the process has exited. */
  async kill(name: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<ExitInfo> {
    const proc = this.process(name);
    if (!proc.running) return proc.exited;
    proc.signal(signal);
    if (signal !== 'SIGKILL') proc.signal('SIGCONT'); // A paused process handles nothing.

    return proc.exited;
  }

  /**
   * The TCP proxy between `name` and etcd, started with the `etcdProxied` option: freeze()
   * cuts the process off from etcd alone (its other connections stay), thaw() lets it
   * back. {@link stop} thaws it before stopping the process, so that it can drain.
   */
  etcdLink(name: string): TcpProxy {
    const proxy = this.etcdProxies.get(name);
    if (proxy === undefined) {
      throw new Error(
        `'${name}' reaches etcd directly: start the cluster with etcdProxied: ['${name}']`,
      );
    }

    return proxy;
  }

  /** SIGSTOP: the process keeps its sockets and leases but answers nothing. */
  pause(name: string): void {
    this.process(name).signal('SIGSTOP');
  }

  resume(name: string): void {
    this.process(name).signal('SIGCONT');
  }

  /**
   * Starts the process again with the same command line (same port, same data
   * directory), stopping it first if it runs, and resolves once it is back: etcd
   * healthy, a shard serving its ring assignment, a coordinator campaigning.
   */
  async restart(name: string): Promise<void> {
    const proc = this.process(name);
    await proc.stop(this.options.stopGraceMs);
    proc.start();
    await this.whenUp(name, { timeoutMs: this.options.readyTimeoutMs });
  }

  /** Resolves with the first JSON line of `name` (this incarnation, by default) that matches. */
  waitForLog(
    name: string,
    predicate: (line: LogLine) => boolean,
    options?: WaitOptions | number,
  ): Promise<LogLine> {
    const wait = typeof options === 'number' ? { timeoutMs: options } : options;

    return this.process(name).waitForLog(predicate, wait);
  }

  /** The coordinator that leads now, as etcd's election says; undefined while none does. */
  async leader(): Promise<string | undefined> {
    this.leaderStore ??= EtcdCoordinationStore.open({
      endpoints: [this.addresses.etcd],
      clusterName: this.clusterName,
    });
    const leader = await (await this.leaderStore).currentLeader();

    return leader?.candidateId;
  }

  /**
   * SIGTERM to the coordinators, then the shards, then etcd, each group waited for (and
   * SIGKILLed after the grace time); then the schema is dropped and the temporary data
   * directory removed, when this cluster made them. Resolves with how each exited.
   * Safe to call twice.
   */
  stop(): Promise<Record<string, ExitInfo>> {
    this.stopping ??= this.shutdown();

    return this.stopping;
  }

  private async shutdown(): Promise<Record<string, ExitInfo>> {
    const grace = this.options.stopGraceMs;
    const exits: Record<string, ExitInfo> = {};
    const stopAll = async (names: readonly string[], graceMs: number): Promise<void> => {
      await Promise.all(
        names.map(async (name) => {
          const proc = this.process(name);
          const started = proc.incarnation > 0;
          const exit = await proc.stop(graceMs);
          if (started) exits[name] = exit;
        }),
      );
    };

    const store = this.leaderStore;
    this.leaderStore = undefined;
    await store?.then((s) => s.close()).catch(() => undefined);
    // A process cut off from etcd could not resign or release its lease in its drain.
    for (const proxy of this.etcdProxies.values()) proxy.thaw();
    await stopAll(COORDINATORS, grace);
    await stopAll(this.shardNames, grace);
    await Promise.all([...this.etcdProxies.values()].map((proxy) => proxy.close()));
    await stopAll(['etcd'], ETCD_STOP_GRACE_MS);

    if (this.options.dropSchema ?? this.ownsDataDir) {
      await dropSchema(this.options.postgresUrl, this.postgresSchema);
    }
    if (this.ownsDataDir) await rm(this.dataDir, { recursive: true, force: true });

    return exits;
  }

  private async launch(): Promise<void> {
    const timeoutMs = this.options.readyTimeoutMs;
    const deadline = Date.now() + timeoutMs;
    const left = (): WaitOptions => ({ timeoutMs: Math.max(1, deadline - Date.now()) });

    const etcd = this.process('etcd');
    etcd.start();
    await waitForEtcd(this.addresses.etcd, etcd, left().timeoutMs);

    for (const name of this.shardNames) this.process(name).start();
    await Promise.all(
      this.shardNames.map((name) =>
        this.waitForLog(name, (l) => l.msg === 'waiting for ring assignment', left()),
      ),
    );

    for (const name of COORDINATORS) this.process(name).start();
    const leading = Promise.any(
      COORDINATORS.map((name) =>
        this.waitForLog(name, (l) => l.msg === 'leadership acquired', left()),
      ),
    ).catch((err: unknown) => {
      const first = err instanceof AggregateError ? (err.errors[0] as unknown) : err;
      throw first instanceof Error ? first : new Error(String(first));
    });
    await Promise.all([
      leading,
      ...this.shardNames.map((name) => this.whenUp(name, left())),
      ...COORDINATORS.map((name) => this.whenUp(name, left())),
    ]);
    await Promise.all(this.shardNames.map((name) => this.untilIngestServing(name, deadline)));
  }

  /** A shard's Ingest service turns SERVING once its router knows the ring's owners. */
  private async untilIngestServing(name: string, deadline: number): Promise<void> {
    const address = this.addresses.shards[name] as string;
    let last = 'no answer';
    while (Date.now() < deadline) {
      try {
        last = await checkHealth(address, INGEST_SERVICE, HEALTH_PROBE_MS);
        if (last === 'SERVING') return;
      } catch (err) {
        last = (err as Error).message;
      }
      await sleep(HEALTH_POLL_MS);
    }

    throw new Error(`${name}: Ingest at ${address} not SERVING in time (last: ${last})`);
  }

  private async whenUp(name: string, wait: WaitOptions): Promise<void> {
    if (name === 'etcd') {
      await waitForEtcd(this.addresses.etcd, this.process(name), wait.timeoutMs);
      return;
    }
    const ready = this.shardNames.includes(name) ? 'shard serving' : 'campaigning';
    await this.waitForLog(name, (l) => l.msg === ready, wait);
  }
}

/** Free ports, or `count` consecutive ones from `basePort` (each checked free). */
async function portRange(basePort: number | undefined, count: number): Promise<number[]> {
  if (basePort === undefined) return freePorts(count);

  const ports = Array.from({ length: count }, (_, i) => basePort + i);
  if ((ports.at(-1) ?? basePort) > 65_535) throw new Error(`basePort ${basePort} is too high`);
  for (const port of ports) await assertPortFree(port, `from basePort ${basePort}`);

  return ports;
}

/**
 * The cluster's name and schema: new for a temporary directory; for a given one, the
 * ones recorded by an earlier launch over it (whose partition and shard counts must
 * match: the ring cannot change them), or new ones recorded now.
 */
async function clusterIdentity(
  o: ResolvedLocalClusterOptions,
  dataDir: string,
  ownsDataDir: boolean,
): Promise<ClusterFile> {
  const file = path.join(dataDir, CLUSTER_FILE);
  const earlier = ownsDataDir ? undefined : await readClusterFile(file);
  if (earlier !== undefined) {
    const clash = (what: string, was: unknown, now: unknown): string | undefined =>
      now !== undefined && now !== was
        ? `${what} ${String(was)} (asked: ${String(now)})`
        : undefined;
    const clashes = [
      clash('partitions', earlier.partitions, o.partitions),
      clash('shards', earlier.shards, o.shards),
      clash('cluster name', earlier.clusterName, o.clusterName),
      clash('schema', earlier.postgresSchema, o.postgresSchema),
    ].filter((c) => c !== undefined);
    if (clashes.length > 0) {
      throw new Error(
        `[SL-CLUSTER-006] ${dataDir} holds a cluster with ${clashes.join(', ')}; use another --data-dir for a different cluster`,
      );
    }

    return earlier;
  }

  const clusterName = o.clusterName ?? randomClusterName();
  const identity: ClusterFile = {
    clusterName,
    postgresSchema: o.postgresSchema ?? schemaFor(clusterName),
    partitions: o.partitions,
    shards: o.shards,
  };
  await writeFile(file, `${JSON.stringify(identity, null, 2)}\n`);

  return identity;
}

async function readClusterFile(file: string): Promise<ClusterFile | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }

  return JSON.parse(text) as ClusterFile;
}

async function checkPostgres(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
  } catch (err) {
    throw new Error(
      `[SL-CLUSTER-005] cannot reach PostgreSQL at ${redact(url)}: ${(err as Error).message}`,
      { cause: err },
    );
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function dropSchema(url: string, schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${client.escapeIdentifier(schema)} CASCADE`);
  } finally {
    await client.end();
  }
}

/** The URL without its password, for messages. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';

    return u.toString();
  } catch {
    return '(an unreadable URL)';
  }
}
