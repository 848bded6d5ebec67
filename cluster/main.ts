/**
 * `npm run cluster -- [--shards 3] [--postgres URL] [--port 7400]`: a local speedlayer
 * cluster on loopback (etcd, the shards, two coordinators) over the PostgreSQL server
 * given, until Ctrl-C or SIGTERM. It prints where each part listens and when the cluster
 * is ready, as plain lines on stdout; the processes' own JSON logs go to files under the
 * data directory.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

import { Command, CommanderError, Option } from 'commander';

import { partitionCountFlag, portFlag } from '../src/cli/process-support.js';
import { choiceFlag, durationFlag, formatDuration, integerFlag } from '../src/config/index.js';
import { LOCAL_CLUSTER_DEFAULTS, WATERMARK_MODES, type WatermarkMode } from './cluster-options.js';
import { LocalCluster, redact, type ExitInfo } from './local-cluster.js';

interface ClusterFlags {
  shards: number;
  partitions: number;
  postgres?: string;
  postgresSchema?: string;
  port: number;
  basePort?: number;
  dataDir?: string;
  watermark: WatermarkMode;
  roundInterval: number;
  leaseTtl: number;
  logLevel: string;
  allowedLateness?: string;
  restatementHorizon?: string;
  maxFutureSkew?: string;
  maxOutOfOrderness?: string;
}

const d = LOCAL_CLUSTER_DEFAULTS;

function out(line = ''): void {
  process.stdout.write(`${line}\n`);
}

function program(): Command {
  return new Command('cluster')
    .description(
      'start a local speedlayer cluster on loopback (etcd, shards, two coordinators) over a PostgreSQL server, until Ctrl-C or SIGTERM',
    )
    .addOption(
      new Option('--shards <n>', 'number of shard processes')
        .argParser(positiveFlag)
        .default(d.shards),
    )
    .addOption(
      new Option('--partitions <P>', 'partition count P, fixed for the life of the cluster')
        .argParser(partitionCountFlag)
        .default(d.partitions),
    )
    .option('--postgres <url>', 'PostgreSQL server for the rows (default: SPEEDLAYER_POSTGRES_URL)')
    .option('--postgres-schema <name>', "schema of the cluster's tables (default: sl_<cluster>)")
    .addOption(
      new Option('--port <port>', 'port of the first shard, which takes ingest and queries')
        .argParser(portFlag)
        .default(d.port),
    )
    .addOption(
      new Option(
        '--base-port <port>',
        'first of consecutive ports for the other processes (default: free ports)',
      ).argParser(portFlag),
    )
    .option(
      '--data-dir <dir>',
      'keep etcd, shard state and logs here, and resume the cluster found here (default: a temporary directory, removed on stop with the PostgreSQL schema and every row in it)',
    )
    .addOption(
      new Option(
        '--watermark <mode>',
        'how the shards move the watermark; event-time lets replays of historical files close periods',
      )
        .argParser(choiceFlag(WATERMARK_MODES))
        .default(d.watermark),
    )
    .addOption(
      new Option('--round-interval <duration>', 'how often the leader runs a round')
        .argParser(durationFlag)
        .default(d.roundIntervalMs, '1s'),
    )
    .addOption(
      new Option('--lease-ttl <duration>', 'TTL of the membership and election leases in etcd')
        .argParser(durationFlag)
        .default(d.leaseTtlMs, '5s'),
    )
    .option(
      '--log-level <level>',
      "pino level of the processes' log files: info, debug or trace",
      d.logLevel,
    )
    .addOption(
      new Option(
        '--allowed-lateness <duration>',
        'how long a period stays open after it ends, on shards and coordinators (default: theirs, 10m)',
      ).argParser(durationText),
    )
    .addOption(
      new Option(
        '--restatement-horizon <duration>',
        "shards reject events further behind the watermark as too_old (default: the shard's, 35d)",
      ).argParser(durationText),
    )
    .addOption(
      new Option(
        '--max-future-skew <duration>',
        "shards reject events later than their receive time plus this as future (default: the shard's, 5m)",
      ).argParser(durationText),
    )
    .addOption(
      new Option(
        '--max-out-of-orderness <duration>',
        "how far the shards' watermark trails the latest event time (default: the shard's, 0s)",
      ).argParser(durationText),
    );
}

/** A duration flag checked here and passed on as written, to the roles that read it. */
function durationText(value: string): string {
  durationFlag(value);

  return value;
}

/** The engine settings given to the launcher, as the shards' and coordinators' flags. */
function settingArgs(flags: ClusterFlags): { shard: string[]; coordinator: string[] } {
  const shard: string[] = [];
  const coordinator: string[] = [];
  if (flags.allowedLateness !== undefined) {
    shard.push('--allowed-lateness', flags.allowedLateness);
    coordinator.push('--allowed-lateness', flags.allowedLateness);
  }
  if (flags.restatementHorizon !== undefined)
    shard.push('--restatement-horizon', flags.restatementHorizon);
  if (flags.maxFutureSkew !== undefined) shard.push('--max-future-skew', flags.maxFutureSkew);
  if (flags.maxOutOfOrderness !== undefined)
    shard.push('--max-out-of-orderness', flags.maxOutOfOrderness);

  return { shard, coordinator };
}

function positiveFlag(value: string): number {
  const n = integerFlag(value);
  if (n < 1) throw new Error(`not a positive count: '${value}'`);

  return n;
}

/**
 * The flags a kept cluster is launched with again when they are not given: where it
 * listens and how its roles judge and close periods. Without them a second launch over
 * the same --data-dir would move the ingest port and fall back to the roles' defaults.
 */
const REMEMBERED_FLAGS = [
  'port',
  'basePort',
  'watermark',
  'roundInterval',
  'leaseTtl',
  'logLevel',
  'allowedLateness',
  'restatementHorizon',
  'maxFutureSkew',
  'maxOutOfOrderness',
] as const;
type RememberedFlag = (typeof REMEMBERED_FLAGS)[number];
type RememberedValues = Partial<Record<RememberedFlag, string>>;

/** Kept in the data directory beside cluster.json: the flags given, as written. */
const LAUNCH_FILE = 'launch-flags.json';

/**
 * Takes every remembered flag not given on the command line from the earlier launch over
 * `flags.dataDir`, checked by the flag's own parser. Returns what to remember from this
 * launch: the flags given now and those taken (empty for a temporary cluster).
 */
async function resumeFlags(command: Command, flags: ClusterFlags): Promise<RememberedValues> {
  const given: RememberedValues = {};
  for (const key of REMEMBERED_FLAGS) {
    const value = flags[key];
    if (command.getOptionValueSource(key) !== 'cli' || value === undefined) continue;
    given[key] =
      key === 'roundInterval' || key === 'leaseTtl' ? formatDuration(Number(value)) : String(value);
  }
  if (flags.dataDir === undefined) return given;

  const file = path.join(flags.dataDir, LAUNCH_FILE);
  let earlier: Record<string, unknown>;
  try {
    earlier = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return given;
    throw new Error(`[SL-CLUSTER-007] ${file} cannot be read: ${String(err)}`);
  }

  const taken: RememberedValues = {};
  const takenFlags: string[] = [];
  for (const key of REMEMBERED_FLAGS) {
    const text = earlier[key];
    if (typeof text !== 'string' || given[key] !== undefined) continue;
    const option = command.options.find((o) => o.attributeName() === key);
    if (option === undefined) continue;
    const flag = `${option.long as string} ${text}`;
    try {
      (flags as unknown as Record<string, unknown>)[key] =
        option.parseArg === undefined ? text : option.parseArg(text, undefined);
    } catch (err) {
      throw new Error(`[SL-CLUSTER-007] ${file}: ${flag}: ${String(err)}`);
    }
    taken[key] = text;
    takenFlags.push(flag);
  }
  if (takenFlags.length > 0) {
    out(
      `resuming with the flags of the earlier launch: ${takenFlags.join(' ')} (give a flag to change it)`,
    );
  }

  return { ...taken, ...given };
}

/** Records the flags to remember, the ingest port as it listens (`--port 0` picks one). */
async function rememberFlags(
  flags: ClusterFlags,
  cluster: LocalCluster,
  values: RememberedValues,
): Promise<void> {
  if (flags.dataDir === undefined) return;
  const port = cluster.addresses.ingest.split(':').at(-1) as string;
  const record: RememberedValues = { ...values, port };
  await writeFile(path.join(flags.dataDir, LAUNCH_FILE), `${JSON.stringify(record, null, 2)}\n`);
}

/** A repeat within this time is the same Ctrl-C, once from the terminal and once from npm. */
const SAME_SIGNAL_MS = 1_000;

/**
 * Resolves with the first stop signal. A later one ends the launcher at once; its exit
 * handlers SIGKILL the processes it started.
 */
function stopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let firstAt: number | undefined;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (firstAt === undefined) {
        firstAt = Date.now();
        resolve(signal);
      } else if (Date.now() - firstAt > SAME_SIGNAL_MS) {
        out(`${signal} again: killing every process now`);
        process.exit(130);
      }
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

async function run(command: Command, flags: ClusterFlags): Promise<number> {
  const signal = stopSignal();
  let signalled: NodeJS.Signals | undefined;
  void signal.then((s) => (signalled = s));

  if (flags.postgres === undefined) {
    process.stderr.write(
      'cluster: a PostgreSQL server is needed: --postgres postgres://user@host:5432/db, or SPEEDLAYER_POSTGRES_URL\n',
    );
    return 2;
  }
  let remembered: RememberedValues;
  try {
    remembered = await resumeFlags(command, flags);
  } catch (err) {
    process.stderr.write(`cluster: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  const startedAt = Date.now();
  out(
    `starting a local speedlayer cluster: etcd, ${flags.shards} shards, 2 coordinators, P=${flags.partitions}`,
  );
  let cluster: LocalCluster;
  try {
    cluster = await LocalCluster.start({
      shards: flags.shards,
      partitions: flags.partitions,
      postgresUrl: flags.postgres,
      postgresSchema: flags.postgresSchema,
      port: flags.port,
      basePort: flags.basePort,
      dataDir: flags.dataDir,
      watermark: flags.watermark,
      roundIntervalMs: flags.roundInterval,
      leaseTtlMs: flags.leaseTtl,
      logLevel: flags.logLevel,
      logFiles: true,
      extraArgs: settingArgs(flags),
    });
  } catch (err) {
    process.stderr.write(`cluster: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }

  await rememberFlags(flags, cluster, remembered).catch((err: unknown) =>
    process.stderr.write(`cluster: the launch flags were not recorded: ${String(err)}\n`),
  );
  if (signalled === undefined) await describe(cluster, flags, Date.now() - startedAt);
  let stopping = false;
  for (const name of cluster.names) {
    void cluster.process(name).exited.then((exit) => {
      if (!stopping)
        out(`${name} exited unexpectedly (${exitText(exit)}); its log: ${logOf(cluster, name)}`);
    });
  }

  const received = await signal;
  stopping = true;
  out(`${received}: stopping the coordinators, then the shards, then etcd`);
  const exits = await cluster.stop();
  for (const [name, exit] of Object.entries(exits)) out(`  ${name.padEnd(14)} ${exitText(exit)}`);
  out(
    flags.dataDir === undefined
      ? `stopped; removed ${cluster.dataDir} and schema ${cluster.postgresSchema}`
      : `stopped; the cluster is kept in ${cluster.dataDir} (run again with the same --data-dir to resume it)`,
  );

  return 0;
}

async function describe(cluster: LocalCluster, flags: ClusterFlags, elapsedMs: number) {
  const a = cluster.addresses;
  const leader = await cluster.leader().catch(() => undefined);
  const pids = cluster.pids();
  const row = (name: string, where: string): void =>
    out(`  ${name.padEnd(14)} ${`pid ${pids[name] ?? '-'}`.padEnd(10)} ${where}`);

  out(`cluster '${cluster.clusterName}'`);
  row('etcd', a.etcd);
  for (const name of cluster.shards) {
    const role = name === cluster.shards[0] ? ' (ingest and queries)' : '';
    row(name, `${a.shards[name] ?? '?'}${role}, ${a.shardMetrics[name] ?? '?'}`);
  }
  for (const name of cluster.coordinators) {
    const c = a.coordinators[name];
    const state = name === leader ? 'leader' : 'standby';
    row(name, `status ${c?.status ?? '?'}, ${c?.metrics ?? '?'} (${state})`);
  }
  out(`  postgres       ${redact(flags.postgres as string)} schema ${cluster.postgresSchema}`);
  out(
    `data: ${cluster.dataDir}${flags.dataDir === undefined ? ` (temporary: stopping removes it and drops schema ${cluster.postgresSchema}; --data-dir keeps both)` : ''}`,
  );
  out(`logs: ${logOf(cluster, '<name>')}`);
  const given = settingArgs(flags).shard;
  if (given.length > 0) out(`shards run with ${given.join(' ')}`);
  if (cluster.skippedFlags.length > 0) {
    out(`not passed, the roles do not have them yet: ${cluster.skippedFlags.join(', ')}`);
  }
  out(
    `ready in ${(elapsedMs / 1000).toFixed(1)}s: send events and queries to ${a.ingest}; Ctrl-C stops the cluster`,
  );
}

function logOf(cluster: LocalCluster, name: string): string {
  return `${cluster.dataDir}/logs/${name}.log`;
}

function exitText(exit: ExitInfo): string {
  return exit.signal !== null ? `signal ${exit.signal}` : `exit code ${exit.code}`;
}

const command = program().exitOverride();
let code: number;
try {
  command.parse(process.argv);
  const flags = command.opts<ClusterFlags>();
  flags.postgres ??= process.env.SPEEDLAYER_POSTGRES_URL || undefined;
  code = await run(command, flags);
} catch (err) {
  code = err instanceof CommanderError ? err.exitCode : 1;
  if (!(err instanceof CommanderError)) {
    process.stderr.write(`cluster: ${err instanceof Error ? err.message : String(err)}\n`);
  }
}
process.exit(code);
