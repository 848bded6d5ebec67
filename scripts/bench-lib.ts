/**
 * Helpers shared by the benchmark scripts (scripts/bench*.ts): argument
 * parsing, the canonical count file, comparison with the oracle, workload
 * file names and small formatting helpers. Nothing here imports src/, so the
 * oracle stays independent of the engine it checks.
 */
import fs from 'node:fs';
import path from 'node:path';

export type BenchPeriodType = 'hour' | 'day' | 'week';

/** `hour:1704067200000` → count. */
export type Counts = Map<string, number>;

export const countKey = (type: BenchPeriodType, startMs: number): string => `${type}:${startMs}`;

/** Parameters of a generated workload. */
export interface Workload {
  readonly events: number;
  readonly users: number;
  readonly days: number;
  /** A Monday 00:00 UTC. */
  readonly start: string;
  readonly zipf: number;
  readonly seed: string;
}

/** What the generator writes beside the file (`<file>.meta.json`). */
export interface WorkloadMeta extends Workload {
  readonly bytes: number;
  readonly sha256: string;
  readonly genSeconds: number;
}

/** What the oracle writes beside the file (`<file>.oracle.json`; counts in `<file>.oracle.csv`). */
export interface OracleMeta {
  readonly events: number;
  readonly periods: number;
  readonly hourlyMemberships: number;
  readonly allMemberships: number;
  readonly distinctUsers: number;
  readonly seconds: number;
  readonly peakRssMb: number;
}

export const workloadFile = (dir: string, w: Workload): string =>
  path.join(dir, `events-n${w.events}-u${w.users}-d${w.days}-z${w.zipf}-s${w.seed}.csv`);

export const oracleCsvOf = (file: string): string => `${file}.oracle.csv`;
export const oracleMetaOf = (file: string): string => `${file}.oracle.json`;
export const workloadMetaOf = (file: string): string => `${file}.meta.json`;

/** `--name value`, `--name=value` and bare `--flag` (true). */
export function parseArgs(
  argv: readonly string[] = process.argv.slice(2),
): Map<string, string | true> {
  const out = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (!arg.startsWith('--')) throw new Error(`unexpected argument ${arg}`);
    const eq = arg.indexOf('=');
    if (eq > 0) {
      out.set(arg.slice(2, eq), arg.slice(eq + 1));
      continue;
    }
    const next = argv[i + 1];
    if (next !== undefined && !next.startsWith('--')) {
      out.set(arg.slice(2), next);
      i++;
    } else {
      out.set(arg.slice(2), true);
    }
  }

  return out;
}

export function stringArg(args: Map<string, string | true>, name: string): string | undefined {
  const v = args.get(name);
  if (v === true) throw new Error(`--${name} needs a value`);

  return v;
}

export function numberArg(
  args: Map<string, string | true>,
  name: string,
  fallback: number,
): number {
  const v = stringArg(args, name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`--${name} must be a number, got ${v}`);

  return n;
}

export function requiredArg(args: Map<string, string | true>, name: string): string {
  const v = stringArg(args, name);
  if (v === undefined) throw new Error(`--${name} is required`);

  return v;
}

/** ISO text without milliseconds. */
export const isoSec = (ms: number): string => new Date(ms).toISOString().replace('.000Z', 'Z');

const TYPE_ORDER: Record<BenchPeriodType, number> = { hour: 0, day: 1, week: 2 };

/** The canonical `period_type,period_start,distinct_users` text, by type then start. */
export function countsToCsv(counts: Counts): string {
  const rows = [...counts].map(([key, n]) => {
    const [type, start] = key.split(':') as [BenchPeriodType, string];
    return { type, startMs: Number(start), n };
  });
  rows.sort((a, b) => TYPE_ORDER[a.type] - TYPE_ORDER[b.type] || a.startMs - b.startMs);

  return `period_type,period_start,distinct_users\n${rows.map((r) => `${r.type},${isoSec(r.startMs)},${r.n}`).join('\n')}\n`;
}

export function readCountsCsv(file: string): Counts {
  const out: Counts = new Map();
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (line === '' || line.startsWith('period_type')) continue;
    const [type, start, n] = line.split(',') as [BenchPeriodType, string, string];
    out.set(countKey(type, Date.parse(start)), Number(n));
  }

  return out;
}

export interface Comparison {
  readonly exact: boolean;
  readonly matched: number;
  readonly expected: number;
  readonly mismatched: number;
  readonly missing: number;
  readonly extra: number;
  readonly maxAbsDiff: number;
  readonly examples: string[];
}

/** Compares counts with the oracle's, period by period. */
export function compareCounts(oracle: Counts, got: Counts): Comparison {
  let matched = 0;
  let mismatched = 0;
  let missing = 0;
  let extra = 0;
  let maxAbsDiff = 0;
  const examples: string[] = [];
  const name = (key: string): string => {
    const [type, start] = key.split(':') as [string, string];
    return `${type} ${isoSec(Number(start))}`;
  };

  for (const [key, want] of oracle) {
    const have = got.get(key);
    if (have === undefined) {
      missing++;
      if (examples.length < 10) examples.push(`${name(key)}: missing (oracle ${want})`);
    } else if (have !== want) {
      mismatched++;
      maxAbsDiff = Math.max(maxAbsDiff, Math.abs(have - want));
      if (examples.length < 10)
        examples.push(
          `${name(key)}: got ${have}, oracle ${want} (${have - want > 0 ? '+' : ''}${have - want})`,
        );
    } else {
      matched++;
    }
  }
  for (const [key, have] of got) {
    if (oracle.has(key)) continue;
    extra++;
    if (examples.length < 10) examples.push(`${name(key)}: unexpected row (${have})`);
  }

  return {
    exact: mismatched === 0 && missing === 0 && extra === 0,
    matched,
    expected: oracle.size,
    mismatched,
    missing,
    extra,
    maxAbsDiff,
    examples,
  };
}

/** `yes (176/176 periods)` or a short account of the differences. */
export function exactLabel(c: Comparison): string {
  if (c.exact) return `yes (${c.matched}/${c.expected} periods)`;
  const parts = [`${c.matched}/${c.expected} periods match`];
  if (c.mismatched > 0) parts.push(`${c.mismatched} differ (max |diff| ${c.maxAbsDiff})`);
  if (c.missing > 0) parts.push(`${c.missing} missing`);
  if (c.extra > 0) parts.push(`${c.extra} unexpected`);

  return `**no**: ${parts.join(', ')}`;
}

export const now = (): number => performance.now();

/** Peak RSS of this process so far, MB. */
export const peakRssMb = (): number => process.resourceUsage().maxRSS / 1024;

/** A progress line on stderr. */
export function progress(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

export function fmtInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

export function fmtNum(n: number, digits: number): string {
  return n.toLocaleString('en-US', {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

export const fmtMb = (bytes: number): string => fmtNum(bytes / 1024 / 1024, 1);

/** Bytes of all files below `dir` (0 if it does not exist). */
export function dirBytes(dir: string): number {
  let total = 0;
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) total += dirBytes(p);
    else if (e.isFile()) total += fs.statSync(p).size;
  }

  return total;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;

  return s.length === 0
    ? Number.NaN
    : s.length % 2 === 1
      ? (s[mid] as number)
      : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Reads a file in chunks that each end on a line boundary (split at byte 0x0A). */
export function* lineChunks(file: string, chunkBytes = 4 << 20): Generator<string> {
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.allocUnsafe(chunkBytes);
  let carry = 0;
  try {
    for (;;) {
      const n = fs.readSync(fd, buf, carry, chunkBytes - carry, null);
      const end = carry + n;
      if (n === 0) {
        if (end > 0) yield buf.toString('utf8', 0, end);
        return;
      }
      const lastNl = buf.lastIndexOf(10, end - 1);
      if (lastNl < 0) {
        carry = end;
        if (carry === chunkBytes)
          throw new Error(`a line of ${file} is longer than ${chunkBytes} bytes`);
        continue;
      }
      yield buf.toString('utf8', 0, lastNl + 1);
      carry = end - lastNl - 1;
      buf.copy(buf, 0, lastNl + 1, end);
    }
  } finally {
    fs.closeSync(fd);
  }
}
