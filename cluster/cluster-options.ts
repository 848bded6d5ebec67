/** What a {@link LocalCluster} is started with, and how the options resolve. */
import { randomBytes } from 'node:crypto';

import { MIN_LEASE_TTL_SECONDS } from '../src/ring/index.js';

/** How the shards' routers move the watermark (`speedlayer shard --watermark`). */
export const WATERMARK_MODES = ['event-time', 'receive-time', 'wall-clock'] as const;
export type WatermarkMode = (typeof WATERMARK_MODES)[number];

/** Extra command-line arguments, appended after the launcher's own, per role. */
export interface ExtraArgs {
  readonly shard?: readonly string[];
  readonly coordinator?: readonly string[];
}

export interface LocalClusterOptions {
  /** How many shard processes. @default 3 */
  readonly shards?: number;
  /** Partition count P; fixed for the life of the cluster. @default 16 */
  readonly partitions?: number;
  /** The PostgreSQL server for the rows. @default the environment's SPEEDLAYER_POSTGRES_URL */
  readonly postgresUrl?: string;
  /**
   * The schema of the cluster's tables on that server, created if missing.
   * @default `sl_<clusterName>` (with `-` and `.` as `_`)
   */
  readonly postgresSchema?: string;
  /** The first shard's port: ingest and queries go there. 0 takes a free one. @default 7400 */
  readonly port?: number;
  /**
   * Where the ports of the other processes start, consecutively (etcd client, etcd peer,
   * then the other shards, then each coordinator's). @default free ports from the kernel
   */
  readonly basePort?: number;
  /** Names the cluster in etcd (`/speedlayer/<name>/`). @default `local-<random hex>` */
  readonly clusterName?: string;
  /**
   * Where etcd, the shards and the coordinators keep their data (and the logs). Given,
   * it is kept, and a later launch over it resumes the same cluster. @default a
   * temporary directory, removed by {@link LocalCluster.stop}
   */
  readonly dataDir?: string;
  /**
   * The shards' watermark mode. `event-time` lets a replay of historical files close
   * its periods as event time passes them. @default 'event-time'
   */
  readonly watermark?: WatermarkMode;
  /** How often the leading coordinator runs a round. @default 1000 */
  readonly roundIntervalMs?: number;
  /** TTL of the shards' membership and the coordinators' election leases. @default 5000 */
  readonly leaseTtlMs?: number;
  /**
   * pino level of the speedlayer processes: `info`, `debug` or `trace`, since the
   * launcher knows each part is ready by its info lines. @default 'info'
   */
  readonly logLevel?: string;
  readonly extraArgs?: ExtraArgs;
  /** Also append each process's output to `<dataDir>/logs/<name>.log`. @default false */
  readonly logFiles?: boolean;
  /**
   * Processes (`shard-2`, `coordinator-1`, ...) that reach etcd through a loopback TCP
   * proxy of their own, so that a test can cut them off from etcd alone and let them
   * back ({@link LocalCluster.etcdLink}). @default none
   */
  readonly etcdProxied?: readonly string[];
  /** How long start-up may take before it fails. @default 60000 */
  readonly readyTimeoutMs?: number;
  /** How long {@link LocalCluster.stop} waits after SIGTERM before SIGKILL. @default 20000 */
  readonly stopGraceMs?: number;
  /**
   * Drop the schema on stop. A schema outlives its etcd uselessly: a new etcd's fencing
   * tokens start low, so the database refuses its leaders' writes there.
   * @default true for a temporary data directory, false for a given one
   */
  readonly dropSchema?: boolean;
}

export interface ResolvedLocalClusterOptions {
  readonly shards: number;
  readonly partitions: number;
  readonly postgresUrl: string;
  readonly postgresSchema: string | undefined;
  readonly port: number;
  readonly basePort: number | undefined;
  readonly clusterName: string | undefined;
  readonly dataDir: string | undefined;
  readonly watermark: WatermarkMode;
  readonly roundIntervalMs: number;
  readonly leaseTtlMs: number;
  readonly logLevel: string;
  readonly extraArgs: Required<ExtraArgs>;
  readonly logFiles: boolean;
  readonly etcdProxied: readonly string[];
  readonly readyTimeoutMs: number;
  readonly stopGraceMs: number;
  readonly dropSchema: boolean | undefined;
}

export const LOCAL_CLUSTER_DEFAULTS = {
  shards: 3,
  partitions: 16,
  port: 7400,
  watermark: 'event-time',
  roundIntervalMs: 1000,
  leaseTtlMs: 5000,
  logLevel: 'info',
  readyTimeoutMs: 60_000,
  stopGraceMs: 20_000,
} as const;

/** Levels that keep the info lines the launcher waits for ('shard serving', ...). */
export const LOG_LEVELS = ['info', 'debug', 'trace'] as const;

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const SCHEMA = /^[a-z_][a-z0-9_]{0,62}$/;

/** Checks every option and fills in the defaults; one message lists every problem. */
export function resolveLocalClusterOptions(
  options: LocalClusterOptions,
  env: NodeJS.ProcessEnv = process.env,
): ResolvedLocalClusterOptions {
  const d = LOCAL_CLUSTER_DEFAULTS;
  const problems: string[] = [];
  const check = (ok: boolean, problem: string): void => {
    if (!ok) problems.push(problem);
  };

  const shards = options.shards ?? d.shards;
  check(Number.isSafeInteger(shards) && shards >= 1, `shards: ${shards} is not a positive count`);
  const partitions = options.partitions ?? d.partitions;
  check(
    Number.isSafeInteger(partitions) && partitions >= shards && partitions <= 65_536,
    `partitions: ${partitions} must be a whole number from the shard count (${shards}) to 65536`,
  );
  const postgresUrl = options.postgresUrl ?? nonEmpty(env.SPEEDLAYER_POSTGRES_URL);
  check(
    postgresUrl !== undefined,
    'postgresUrl: a PostgreSQL server is needed (--postgres URL, or SPEEDLAYER_POSTGRES_URL)',
  );
  const port = options.port ?? d.port;
  check(isPort(port), `port: ${port} is not a port (0 to 65535)`);
  const basePort = options.basePort;
  check(basePort === undefined || (isPort(basePort) && basePort > 0), `basePort: ${basePort}`);
  check(
    options.clusterName === undefined || NAME.test(options.clusterName),
    `clusterName: '${options.clusterName}' must be letters, digits, '.', '_' or '-'`,
  );
  check(
    options.postgresSchema === undefined || SCHEMA.test(options.postgresSchema),
    `postgresSchema: '${options.postgresSchema}' must be lower-case letters, digits and '_'`,
  );
  const watermark = options.watermark ?? d.watermark;
  check(
    (WATERMARK_MODES as readonly string[]).includes(watermark),
    `watermark: '${watermark}' is not one of ${WATERMARK_MODES.join(', ')}`,
  );
  const roundIntervalMs = options.roundIntervalMs ?? d.roundIntervalMs;
  check(roundIntervalMs > 0, `roundIntervalMs: ${roundIntervalMs} must be positive`);
  const leaseTtlMs = options.leaseTtlMs ?? d.leaseTtlMs;
  check(
    leaseTtlMs >= MIN_LEASE_TTL_SECONDS * 1000,
    `leaseTtlMs: ${leaseTtlMs} is below etcd's minimum lease of ${MIN_LEASE_TTL_SECONDS}s`,
  );
  const logLevel = options.logLevel ?? d.logLevel;
  check(
    (LOG_LEVELS as readonly string[]).includes(logLevel),
    `logLevel: '${logLevel}' is not one of ${LOG_LEVELS.join(', ')} (the launcher waits for each part's info lines)`,
  );
  const speedlayerNames = [
    ...Array.from(
      { length: Number.isSafeInteger(shards) ? shards : 0 },
      (_, i) => `shard-${i + 1}`,
    ),
    'coordinator-1',
    'coordinator-2',
  ];
  for (const name of options.etcdProxied ?? []) {
    check(
      speedlayerNames.includes(name),
      `etcdProxied: '${name}' is not one of the cluster's shards or coordinators`,
    );
  }
  if (problems.length > 0) {
    throw new Error(`[SL-CLUSTER-003] bad cluster options:\n  ${problems.join('\n  ')}`);
  }

  return {
    shards,
    partitions,
    postgresUrl: postgresUrl as string,
    postgresSchema: options.postgresSchema,
    port,
    basePort,
    clusterName: options.clusterName,
    dataDir: options.dataDir,
    watermark,
    roundIntervalMs,
    leaseTtlMs,
    logLevel,
    extraArgs: {
      shard: options.extraArgs?.shard ?? [],
      coordinator: options.extraArgs?.coordinator ?? [],
    },
    logFiles: options.logFiles ?? false,
    etcdProxied: [...new Set(options.etcdProxied ?? [])],
    readyTimeoutMs: options.readyTimeoutMs ?? d.readyTimeoutMs,
    stopGraceMs: options.stopGraceMs ?? d.stopGraceMs,
    dropSchema: options.dropSchema,
  };
}

/** A fresh cluster name. */
export function randomClusterName(): string {
  return `local-${randomBytes(4).toString('hex')}`;
}

/** The default schema of a cluster: its name with `-` and `.` as `_`, lower case. */
export function schemaFor(clusterName: string): string {
  return `sl_${clusterName.toLowerCase().replace(/[^a-z0-9_]/g, '_')}`.slice(0, 63);
}

function isPort(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0 && n <= 65_535;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}
