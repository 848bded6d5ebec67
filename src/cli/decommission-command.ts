/**
 * `speedlayer decommission --shard ID`: scale-in. Marks a running shard as leaving in
 * etcd, so that the elected coordinator moves its partitions (with their state, as a
 * scale-out does) to the other shards and gives it none from then on, and waits until
 * the ring no longer names it: then it can be stopped and its volume released. The shard
 * clears the mark when it starts again, and `--cancel` clears it at once.
 *
 * Exit codes: 0 once the shard owns nothing; 1 when it cannot leave (not registered, no
 * other shard, etcd out of reach) or has not left within --timeout; 130 on Ctrl-C (the
 * mark stays; run it again to wait, or --cancel).
 */
import { setTimeout as sleep } from 'node:timers/promises';

import { Command } from 'commander';

import { durationFlag, formatDuration } from '../config/index.js';
import { EtcdCoordinationStore, partitionsOf, type CoordinationStore } from '../ring/index.js';
import { silentLogger } from '../observability/index.js';
import { CommandExit, type CliIo } from './io.js';
import { urlListFlag } from './process-support.js';
import { withStopSignal } from './replay-progress.js';

interface DecommissionFlags {
  etcd: string[];
  cluster: string;
  shard: string;
  timeout: number;
  cancel: boolean;
}

/** How often the ring and the leaving marks are read while waiting. */
const POLL_MS = 1_000;

export function decommissionCommand(io: CliIo): Command {
  return new Command('decommission')
    .description(
      "scale in: move a running shard's partitions to the other shards, and wait until it owns none (then stop it)",
    )
    .requiredOption('--etcd <urls>', 'etcd client URLs, comma-separated', urlListFlag)
    .requiredOption(
      '--cluster <name>',
      'cluster name: the etcd keys live under /speedlayer/<name>/',
    )
    .requiredOption('--shard <id>', 'the shard to take out')
    .option('--timeout <duration>', 'give up waiting after this long', durationFlag, 30 * 60_000)
    .option('--cancel', 'clear the leaving mark: the shard may own partitions again', false)
    .action(async (flags: DecommissionFlags) => {
      const store = await EtcdCoordinationStore.open({
        endpoints: flags.etcd,
        clusterName: flags.cluster,
        logger: silentLogger(),
      });
      try {
        if (flags.cancel) {
          await store.clearLeaving(flags.shard);
          io.stdout.write(`${flags.shard}: leaving mark cleared; it may own partitions again\n`);
          return;
        }
        await withStopSignal((signal) => decommission(store, flags, io, signal));
      } finally {
        await store.close();
      }
    });
}

async function decommission(
  store: CoordinationStore,
  flags: DecommissionFlags,
  io: CliIo,
  signal: AbortSignal,
): Promise<void> {
  const { shard } = flags;
  const registered = (await store.listShards()).map((s) => s.shardId);
  if (!registered.includes(shard)) {
    const known =
      registered.length === 0
        ? `no shard is registered in cluster '${flags.cluster}' (is --cluster right?)`
        : `registered in cluster '${flags.cluster}': ${registered.sort().join(', ')}`;
    throw new CommandExit(
      1,
      `${shard} is not registered (${known}): a shard hands its partitions over only while it runs (start it, then decommission it)`,
    );
  }
  const leaving = new Set([...(await store.listLeaving()), shard]);
  const staying = registered.filter((id) => !leaving.has(id));
  if (staying.length === 0) {
    throw new CommandExit(1, `no other shard is registered to take the partitions of ${shard}`);
  }

  await store.markLeaving(shard);
  io.stdout.write(
    `${shard}: marked as leaving; its partitions move to ${staying.join(', ')} (the coordinator moves them between rounds)\n`,
  );

  const deadline = Date.now() + flags.timeout;
  let lastOwned = -1;
  for (;;) {
    const ring = await store.readRing();
    const owned = ring === undefined ? [] : partitionsOf(ring, shard);
    if (owned.length === 0) {
      io.stdout.write(
        `${shard}: owns no partition${ring === undefined ? '' : ` under ring epoch ${ring.epoch}`}; stop it now\n`,
      );
      return;
    }
    if (owned.length !== lastOwned) {
      io.stdout.write(`${shard}: owns ${owned.length} partition(s) (ring epoch ${ring?.epoch})\n`);
      lastOwned = owned.length;
    }
    // The shard started again (which ends a decommission): mark it again while we wait.
    if (!(await store.listLeaving()).includes(shard)) await store.markLeaving(shard);

    if (Date.now() >= deadline) {
      throw new CommandExit(
        1,
        `${shard} still owns ${owned.length} partition(s) after ${formatDuration(flags.timeout)}: is a coordinator elected, and is every owner registered? (speedlayer status --target ...)`,
      );
    }
    const stopped = await sleep(POLL_MS, false, { signal }).catch(() => true);
    if (stopped) {
      throw new CommandExit(
        130,
        `stopped waiting; ${shard} stays marked as leaving (run again to wait, or --cancel)`,
      );
    }
  }
}
