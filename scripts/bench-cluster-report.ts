/**
 * The cluster's row of the bench table and its details paragraph
 * (scripts/bench-cluster.ts measures them).
 */
import path from 'node:path';

import type { ClusterBenchResult } from './bench-cluster.js';
import { exactLabel, fmtInt, fmtMb, fmtNum, isoSec } from './bench-lib.js';
import { profileTables } from './bench-profile.js';

/** A measured run, or why there is none. */
export type ClusterOutcome = ClusterBenchResult | string;

/** The cluster's row of the comparison table (nine columns, as the others). */
export function clusterRow(outcome: ClusterOutcome, shards: number, partitions: number): string {
  const system = `speedlayer cluster (${shards} shards, 2 coordinators, etcd; PostgreSQL server; ${partitions} partitions; replay --target)`;
  if (typeof outcome === 'string') return `| ${system} | ${outcome} | – | – | – | – | – | – | – |`;

  const r = outcome;

  return (
    `| ${system} | ${exactLabel(r.comparison)} | ${fmtInt(r.replay.records / r.ingestSeconds)} | ${fmtNum(r.ingestSeconds, 2)} | ` +
    `${fmtNum(r.read.dauWarmMs, 2)} (gRPC) | ${fmtNum(r.read.allWarmMs, 2)} (gRPC) | ` +
    `${fmtInt(r.rssSumMb)} (sum of ${r.processes.length} processes at the end) | – | – |`
  );
}

/** The details paragraph of a measured run. */
export function clusterDetails(r: ClusterBenchResult, root: string): string[] {
  const lines: string[] = ['speedlayer cluster details:'];
  const cpuTotal = r.processes.reduce((n, p) => n + p.ingestCpuSeconds, 0);
  const byCpu = [...r.processes].sort((a, b) => b.ingestCpuSeconds - a.ingestCpuSeconds);
  const named = (name: string): string => (name === r.leader ? `${name} (leader)` : name);

  if (!r.comparison.exact) for (const e of r.comparison.examples) lines.push(`- difference: ${e}`);
  if (!r.published) lines.push('- **not every period was published before the timeout**');
  lines.push(
    `- exact: ${r.comparison.exact ? 'yes' : 'no'} (${r.comparison.matched}/${r.comparison.expected} periods); current rows by status: ` +
      `${Object.entries(r.statuses)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}; version history rows ${r.historyRows}; ` +
      `records ${fmtInt(r.replay.records)}, accepted ${fmtInt(r.replay.accepted)} in ${fmtInt(r.replay.batches)} batches, ${r.replay.reconnects} reconnects; ` +
      `Finish answered watermark ${r.replay.watermarkMs === null ? 'none' : isoSec(r.replay.watermarkMs)}, Coordinator.Status then showed the global watermark ${r.globalWatermarkMs === undefined ? 'unknown' : isoSec(r.globalWatermarkMs)}.`,
  );
  lines.push(
    `- time: ingest ${fmtNum(r.ingestSeconds, 2)} s from the replay's first batch to the last version written (history written_at); ` +
      `the client's own time, first batch to Finish answered, ${fmtNum(r.replay.clientSeconds, 2)} s (${fmtInt(r.replay.records / r.replay.clientSeconds)} events/s); ` +
      `the last row came ${fmtNum(r.publishLagSeconds, 2)} s after Finish; the cluster started in ${fmtNum(r.startupSeconds, 1)} s (not counted).`,
  );
  lines.push(
    `- CPU over the ingest window (/proc utime + stime): ${byCpu
      .map((p) => `${named(p.name)} ${fmtNum(p.ingestCpuSeconds, 2)} s`)
      .join(
        ', ',
      )}; replay client (whole process, start-up included) ${fmtNum(r.replay.clientCpuSeconds, 2)} s; ` +
      `in all ${fmtNum(cpuTotal + r.replay.clientCpuSeconds, 2)} s for ${fmtNum(r.ingestSeconds, 2)} s of wall time (PostgreSQL's server not counted).`,
  );
  lines.push(
    `- reads through the Query service on the ingest port (gRPC client in the bench process; the shard reads PostgreSQL): DAU series (${r.read.dauRows} rows) ` +
      `${fmtNum(r.read.dauWarmMs, 2)} ms median of 9, first ${fmtNum(r.read.dauFirstMs, 2)} ms; all ${r.read.allRows} current rows ${fmtNum(r.read.allWarmMs, 2)} ms median of 9.`,
  );
  lines.push(
    `- memory at the end (VmRSS, peak VmHWM in brackets): ${r.processes
      .map((p) => `${named(p.name)} ${fmtInt(p.rssMb)} (${fmtInt(p.hwmMb)})`)
      .join(', ')} MB; sum ${fmtInt(r.rssSumMb)} MB (peaks ${fmtInt(r.hwmSumMb)} MB). ` +
      `Each speedlayer process carries node + tsx + its modules.`,
  );
  lines.push(`- on disk: the shards' data directories ${fmtMb(r.shardDiskBytes)} MB.`);
  lines.push(
    `- settings: LocalCluster defaults (event-time watermark, round interval 1 s, allowed lateness 10 min), schema ${r.schema} (dropped after).`,
  );
  lines.push('');

  for (const p of r.profiles) {
    lines.push(
      `CPU profile of ${named(p.name)} over the ingest window (${fmtNum(p.summary.totalMs / 1000, 2)} s sampled; ${path.relative(root, p.file)}):`,
    );
    lines.push('');
    lines.push(...profileTables(p.summary, fmtInt));
    lines.push('');
  }

  return lines;
}
