/**
 * Where a CPU profile (`.cpuprofile`, from the inspector or `node --cpu-prof`) spent its
 * time, for the reports of `npm run bench`: the top functions by self time and the self
 * time by area (source file, package, node internals, V8 categories).
 */
import fs from 'node:fs';

export interface ProfileLine {
  readonly name: string;
  readonly where: string;
  readonly selfMs: number;
  readonly share: number;
}

export interface ProfileSummary {
  /** Sampled time inside the window. */
  readonly totalMs: number;
  readonly top: ProfileLine[];
  /** Self time by source file, package or V8 category. */
  readonly areas: { area: string; selfMs: number; share: number }[];
}

/**
 * Only the samples taken between these two instants, in microseconds of the monotonic
 * clock that V8 stamps its profiles with (on Linux the one `process.hrtime` reads, so a
 * window taken with `process.hrtime.bigint() / 1000n` in any process of the machine fits).
 */
export interface ProfileWindow {
  readonly fromUs: number;
  readonly toUs: number;
}

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** The monotonic clock in microseconds, as V8 stamps profile samples. */
export function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/**
 * Summarizes the profile in `file`: the `n` functions with the most self time (aggregated
 * by name and file, paths shown relative to `root`) and the areas. With `window`, only the
 * samples inside it count.
 */
export function summarizeProfile(
  file: string,
  n: number,
  root: string,
  window?: ProfileWindow,
): ProfileSummary {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map<string, { name: string; where: string; us: number }>();
  const areas = new Map<string, number>();
  let total = 0;
  let at = profile.startTime;

  for (let i = 0; i < profile.samples.length; i++) {
    at += profile.timeDeltas[i] ?? 0;
    if (window !== undefined && (at < window.fromUs || at > window.toUs)) continue;
    const node = byId.get(profile.samples[i] as number);
    const us = profile.timeDeltas[i + 1] ?? 0;
    if (node === undefined) continue;

    total += us;
    const { functionName, url, lineNumber } = node.callFrame;
    const name = functionName === '' ? '(anonymous)' : functionName;
    const short = shortUrl(url, root);
    // tsx emits each module on one line, so a line number says nothing there.
    const where = short === '' ? '' : lineNumber > 0 ? `${short}:${lineNumber + 1}` : short;
    const key = `${name}@${where}`;
    const entry = self.get(key) ?? { name, where, us: 0 };
    entry.us += us;
    self.set(key, entry);

    const area = areaOf(name, short);
    areas.set(area, (areas.get(area) ?? 0) + us);
  }
  const share = (us: number): number => (total > 0 ? us / total : 0);

  return {
    totalMs: total / 1000,
    top: [...self.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, n)
      .map((e) => ({ name: e.name, where: e.where, selfMs: e.us / 1000, share: share(e.us) })),
    areas: [...areas]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 12)
      .map(([area, us]) => ({ area, selfMs: us / 1000, share: share(us) })),
  };
}

/** The two markdown tables of a summary (top functions, then areas), as lines. */
export function profileTables(summary: ProfileSummary, fmtInt: (n: number) => string): string[] {
  const pct = (share: number): string => `${(share * 100).toFixed(1)} %`;
  const lines = ['| # | function | where | self ms | share |', '|---|---|---|---|---|'];
  summary.top.forEach((x, i) =>
    lines.push(
      `| ${i + 1} | ${x.name} | ${x.where || '–'} | ${fmtInt(x.selfMs)} | ${pct(x.share)} |`,
    ),
  );
  lines.push('', '| area | self ms | share |', '|---|---|---|');
  for (const a of summary.areas)
    lines.push(`| ${a.area} | ${fmtInt(a.selfMs)} | ${pct(a.share)} |`);

  return lines;
}

function shortUrl(url: string, root: string): string {
  if (url === '') return '';

  return url
    .replace(/^file:\/\//, '')
    .replace(`${root}/`, '')
    .replace(/^.*node_modules\//, 'node_modules/');
}

function areaOf(name: string, short: string): string {
  if (short === '') {
    return name.startsWith('(')
      ? name
      : 'native code without a script (roaring addon, V8 builtins)';
  }
  if (short.startsWith('node:')) return 'node: internals';
  if (short.startsWith('node_modules/')) {
    return `node_modules/${/^node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(short)?.[1] ?? '?'}`;
  }

  return short;
}
