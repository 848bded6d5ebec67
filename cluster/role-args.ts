/**
 * The command lines of the speedlayer processes of a local cluster. The flags each role
 * accepts are read from the role's own command definition, so that a flag the launcher
 * relies on and the role no longer has fails loudly, and an optional flag a role does
 * not have (yet) is left out and noted.
 */
import path from 'node:path';

import type { Command } from 'commander';

import { coordinatorCommand } from '../src/cli/coordinator-command.js';
import { shardCommand } from '../src/cli/shard-command.js';
import type { ResolvedLocalClusterOptions } from './cluster-options.js';

export type Role = 'shard' | 'coordinator';

/** `bin/speedlayer.js`, which every speedlayer process of the cluster runs. */
export const SPEEDLAYER_BIN = path.resolve(import.meta.dirname, '../bin/speedlayer.js');

const commands: Record<Role, () => Command> = {
  shard: shardCommand,
  coordinator: coordinatorCommand,
};
const known = new Map<Role, ReadonlySet<string>>();

/** A long flag of a role, and whether the role refuses to start without it. */
export interface RoleFlag {
  readonly flag: string;
  readonly required: boolean;
}

/** The long flags of `speedlayer <role>`, read from its command definition (as --help shows). */
export function roleFlagList(role: Role): RoleFlag[] {
  return commands[role]()
    .options.filter((o) => o.long !== undefined)
    .map((o) => ({ flag: o.long as string, required: o.mandatory }));
}

/** The long flags (`--port`, ...) that `speedlayer <role>` accepts today. */
export function roleFlags(role: Role): ReadonlySet<string> {
  let flags = known.get(role);
  if (flags === undefined) {
    flags = new Set(roleFlagList(role).map((f) => f.flag));
    known.set(role, flags);
  }

  return flags;
}

/** Where one shard listens and keeps its data. */
export interface ShardPlan {
  readonly name: string;
  /** Shard, Ingest and Query services, with health and reflection. */
  readonly port: number;
  /** Prometheus metrics at `/metrics`. */
  readonly metricsPort: number;
  readonly dataDir: string;
}

/** Where one coordinator listens and keeps its data. */
export interface CoordinatorPlan {
  readonly name: string;
  readonly dataDir: string;
  /** The Coordinator service (Status, health, reflection). */
  readonly statusPort: number;
  /** Prometheus metrics at `/metrics`. */
  readonly metricsPort: number;
}

/** What every process of one cluster shares. */
export interface ClusterPlan {
  readonly options: ResolvedLocalClusterOptions;
  readonly clusterName: string;
  readonly etcdEndpoint: string;
  readonly postgresSchema: string;
}

/** Builds one command line, checking each flag against the role's definition. */
class RoleArgs {
  readonly args: string[];
  private readonly flags: ReadonlySet<string>;

  constructor(
    private readonly role: Role,
    private readonly skipped: Set<string>,
  ) {
    this.args = [role];
    this.flags = roleFlags(role);
  }

  /** A flag the launcher cannot do without. */
  need(flag: string, value: string | number): this {
    if (!this.flags.has(flag)) {
      throw new Error(
        `[SL-CLUSTER-004] 'speedlayer ${this.role}' has no ${flag} flag any more; the launcher needs it`,
      );
    }
    this.args.push(flag, String(value));

    return this;
  }

  /** A flag passed once the role has it; until then it is noted as skipped. */
  ifKnown(flag: string, value: string | number | undefined): this {
    if (value === undefined) return this;
    if (this.flags.has(flag)) this.args.push(flag, String(value));
    else this.skipped.add(`speedlayer ${this.role} ${flag}`);

    return this;
  }

  extra(args: readonly string[]): string[] {
    return [...this.args, ...args];
  }
}

export function shardArgs(plan: ClusterPlan, shard: ShardPlan, skipped: Set<string>): string[] {
  const o = plan.options;

  return new RoleArgs('shard', skipped)
    .need('--id', shard.name)
    .need('--etcd', plan.etcdEndpoint)
    .need('--cluster', plan.clusterName)
    .need('--partitions', o.partitions)
    .need('--data-dir', shard.dataDir)
    .need('--host', '127.0.0.1')
    .need('--port', shard.port)
    .need('--lease-ttl', `${o.leaseTtlMs}ms`)
    .need('--log-level', o.logLevel)
    .need('--postgres', o.postgresUrl)
    .need('--postgres-schema', plan.postgresSchema)
    .need('--watermark', o.watermark)
    .need('--metrics-host', '127.0.0.1')
    .need('--metrics-port', shard.metricsPort)
    .extra(o.extraArgs.shard);
}

export function coordinatorArgs(
  plan: ClusterPlan,
  coordinator: CoordinatorPlan,
  skipped: Set<string>,
): string[] {
  const o = plan.options;

  return new RoleArgs('coordinator', skipped)
    .need('--id', coordinator.name)
    .need('--etcd', plan.etcdEndpoint)
    .need('--cluster', plan.clusterName)
    .need('--partitions', o.partitions)
    .need('--data-dir', coordinator.dataDir)
    .need('--postgres', o.postgresUrl)
    .need('--postgres-schema', plan.postgresSchema)
    .need('--round-interval', `${o.roundIntervalMs}ms`)
    .need('--lease-ttl', `${o.leaseTtlMs}ms`)
    .need('--log-level', o.logLevel)
    .need('--host', '127.0.0.1')
    .need('--port', coordinator.statusPort)
    .need('--metrics-host', '127.0.0.1')
    .need('--metrics-port', coordinator.metricsPort)
    .ifKnown('--initial-shards', o.shards)
    .extra(o.extraArgs.coordinator);
}
