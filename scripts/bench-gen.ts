/**
 * Seeded workload generator for `npm run bench` (run as a child process).
 *
 *   node --import tsx scripts/bench-gen.ts --out FILE --events N --users U --days D
 *     [--start 2024-01-01T00:00:00Z] [--zipf 0.8] [--seed 20241]
 *
 * The same algorithm and random stream as shared/bench/peers/gen.mjs, so the
 * same parameters give the same bytes (and sha256) as that baseline's file:
 * every user appears once ("first touch"), the other N-U events pick users by
 * Zipf(s) rank (ranks mapped to ids by a seeded shuffle), hours follow a
 * diurnal cycle (trough 03 UTC, peak 15 UTC, weekends at 70 %), seconds are
 * uniform, and the file is sorted by time. CSV `user_id,event_time`, ISO `Z`.
 * Writes FILE atomically and FILE.meta.json.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import {
  isoSec,
  numberArg,
  parseArgs,
  progress,
  requiredArg,
  stringArg,
  workloadMetaOf,
  type WorkloadMeta,
} from './bench-lib.js';

const HOUR_MS = 3_600_000;

const args = parseArgs();
const OUT = requiredArg(args, 'out');
const N = numberArg(args, 'events', 5_000_000);
const U = numberArg(args, 'users', 1_000_000);
const DAYS = numberArg(args, 'days', 7);
const START = stringArg(args, 'start') ?? '2024-01-01T00:00:00Z';
const S = numberArg(args, 'zipf', 0.8);
const SEED = stringArg(args, 'seed') ?? '20241';

if (!Number.isInteger(N) || !Number.isInteger(U) || !Number.isInteger(DAYS) || U < 1 || DAYS < 1) {
  throw new Error('--events, --users and --days must be positive integers');
}
if (N < U) throw new Error('--events must be >= --users (every user appears at least once)');
if (N >= 2 ** 28) throw new Error('at most 2^28 events');
const startMs = Date.parse(START);
if (new Date(startMs).getUTCDay() !== 1 || startMs % HOUR_MS !== 0)
  throw new Error('--start must be a Monday 00:00 UTC');

/** sfc32 seeded from a string by cyrb128-like mixing (as in gen.mjs). */
function seedWords(str: string): [number, number, number, number] {
  let h1 = 1779033703;
  let h2 = 3144134277;
  let h3 = 1013904242;
  let h4 = 2773480762;
  for (let i = 0; i < str.length; i++) {
    const k = str.charCodeAt(i);
    h1 = h2 ^ Math.imul(h1 ^ k, 597399067);
    h2 = h3 ^ Math.imul(h2 ^ k, 2869860233);
    h3 = h4 ^ Math.imul(h3 ^ k, 951274213);
    h4 = h1 ^ Math.imul(h4 ^ k, 2716044179);
  }

  return [h1 >>> 0, h2 >>> 0, h3 >>> 0, h4 >>> 0];
}

function sfc32([a0, b0, c0, d0]: [number, number, number, number]): () => number {
  let a = a0;
  let b = b0;
  let c = c0;
  let d = d0;
  const next = (): number => {
    a >>>= 0;
    b >>>= 0;
    c >>>= 0;
    d >>>= 0;
    let t = (a + b) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    d = (d + 1) | 0;
    t = (t + d) | 0;
    c = (c + t) | 0;

    return (t >>> 0) / 4294967296;
  };
  for (let i = 0; i < 15; i++) next();

  return next;
}

const rnd = sfc32(seedWords(SEED));
const t0 = performance.now();
progress(
  `generating ${N.toLocaleString('en-US')} events over ${U.toLocaleString('en-US')} users, ${DAYS} days → ${OUT}`,
);

// rank -> user index permutation
const perm = new Uint32Array(U);
for (let i = 0; i < U; i++) perm[i] = i;
for (let i = U - 1; i > 0; i--) {
  const j = Math.floor(rnd() * (i + 1));
  const t = perm[i] as number;
  perm[i] = perm[j] as number;
  perm[j] = t;
}

// Zipf CDF over ranks 1..U
const cdf = new Float64Array(U);
let acc = 0;
for (let r = 0; r < U; r++) {
  acc += Math.pow(r + 1, -S);
  cdf[r] = acc;
}
for (let r = 0; r < U; r++) cdf[r] = (cdf[r] as number) / acc;
const zipfRank = (): number => {
  const u = rnd();
  let lo = 0;
  let hi = U - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((cdf[mid] as number) < u) lo = mid + 1;
    else hi = mid;
  }

  return lo;
};

// hour-of-period weights
const H = DAYS * 24;
const hw = new Float64Array(H);
let hsum = 0;
for (let h = 0; h < H; h++) {
  const hod = h % 24;
  const dow = Math.floor(h / 24) % 7; // 0 = Monday
  const diurnal = 0.25 + 0.75 * (0.5 - 0.5 * Math.cos((2 * Math.PI * (hod - 3)) / 24));
  hw[h] = diurnal * (dow >= 5 ? 0.7 : 1);
  hsum += hw[h] as number;
}
const hcdf = new Float64Array(H);
acc = 0;
for (let h = 0; h < H; h++) {
  acc += (hw[h] as number) / hsum;
  hcdf[h] = acc;
}
hcdf[H - 1] = 1;
const pickHour = (): number => {
  const u = rnd();
  let h = 0;
  while ((hcdf[h] as number) < u) h++;

  return h;
};

// events: second offset within the period, user index
const sec = new Uint32Array(N);
const usr = new Uint32Array(N);
for (let i = 0; i < N; i++) {
  usr[i] = i < U ? i : (perm[zipfRank()] as number);
  sec[i] = pickHour() * 3600 + Math.floor(rnd() * 3600);
}
// sort by (time, generation index): key = sec * 2^28 + i (exact in float64)
const keys = new Float64Array(N);
for (let i = 0; i < N; i++) keys[i] = (sec[i] as number) * 268435456 + i;
keys.sort();
const tGen = performance.now();
progress(`generated in ${((tGen - t0) / 1000).toFixed(1)} s; writing`);

fs.mkdirSync(path.dirname(OUT), { recursive: true });
const tmp = `${OUT}.tmp`;
const fd = fs.openSync(tmp, 'w');
const hash = crypto.createHash('sha256');
const mmss: string[] = [];
for (let s = 0; s < 3600; s++)
  mmss.push(`${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}Z`);
const hourPrefix: string[] = [];
for (let h = 0; h < H; h++) hourPrefix.push(isoSec(startMs + h * HOUR_MS).slice(0, 14));
const uid = (u: number): string => `u${String(u).padStart(6, '0')}`;
let lines: string[] = ['user_id,event_time\n'];
const flush = (): void => {
  const s = lines.join('');
  hash.update(s);
  fs.writeSync(fd, s);
  lines = [];
};
const step = Math.max(1, Math.floor(N / 5));
for (let k = 0; k < N; k++) {
  const i = (keys[k] as number) % 268435456;
  const s = sec[i] as number;
  lines.push(
    `${uid(usr[i] as number)},${hourPrefix[(s / 3600) | 0] as string}${mmss[s % 3600] as string}\n`,
  );
  if (lines.length >= 65536) flush();
  if ((k + 1) % step === 0) progress(`written ${Math.round(((k + 1) / N) * 100)} %`);
}
flush();
fs.closeSync(fd);
fs.renameSync(tmp, OUT);

const meta: WorkloadMeta = {
  events: N,
  users: U,
  days: DAYS,
  start: START,
  zipf: S,
  seed: SEED,
  bytes: fs.statSync(OUT).size,
  sha256: hash.digest('hex'),
  genSeconds: +((performance.now() - t0) / 1000).toFixed(2),
};
fs.writeFileSync(workloadMetaOf(OUT), `${JSON.stringify(meta, null, 2)}\n`);
process.stdout.write(`${JSON.stringify(meta)}\n`);
