/**
 * Brute-force reference counts for `npm run bench` (run as a child process so
 * that its memory does not count against anything measured):
 *
 *   node --import tsx scripts/bench-oracle.ts --file EVENTS.csv
 *
 * Every event's time goes through Date.parse; its hour, UTC day and ISO week
 * (Monday 00:00 UTC) come from Date arithmetic; each period has one
 * Set<string> of user ids. Shares no code with the engine. Writes
 * EVENTS.csv.oracle.csv (period_type,period_start,distinct_users) and
 * EVENTS.csv.oracle.json (summary figures).
 */
import fs from 'node:fs';

import {
  countKey,
  countsToCsv,
  lineChunks,
  oracleCsvOf,
  oracleMetaOf,
  parseArgs,
  peakRssMb,
  progress,
  requiredArg,
  type Counts,
  type OracleMeta,
} from './bench-lib.js';

const args = parseArgs();
const FILE = requiredArg(args, 'file');
const expected = Number(args.get('events') ?? 0);

interface HourSlot {
  readonly hour: Set<string>;
  readonly day: Set<string>;
  readonly week: Set<string>;
}

const hours = new Map<number, Set<string>>();
const days = new Map<number, Set<string>>();
const weeks = new Map<number, Set<string>>();
const slots = new Map<number, HourSlot>();
const everyone = new Set<string>();

function setOf(map: Map<number, Set<string>>, key: number): Set<string> {
  let s = map.get(key);
  if (s === undefined) {
    s = new Set();
    map.set(key, s);
  }

  return s;
}

/** The sets an event at `ms` belongs to, from plain Date arithmetic. */
function slotOf(ms: number): HourSlot {
  const d = new Date(ms);
  const y = d.getUTCFullYear();
  const m = d.getUTCMonth();
  const dd = d.getUTCDate();
  const hourMs = Date.UTC(y, m, dd, d.getUTCHours());
  let slot = slots.get(hourMs);
  if (slot !== undefined) return slot;

  const dayMs = Date.UTC(y, m, dd);
  const sinceMonday = (d.getUTCDay() + 6) % 7; // getUTCDay: 0 = Sunday
  const weekMs = Date.UTC(y, m, dd - sinceMonday);
  slot = { hour: setOf(hours, hourMs), day: setOf(days, dayMs), week: setOf(weeks, weekMs) };
  slots.set(hourMs, slot);

  return slot;
}

const t0 = performance.now();
progress(`oracle: counting ${FILE}`);
let events = 0;
let header = true;
let userCol = 0;
let timeCol = 1;
let lastHour = Number.NaN;
let slot: HourSlot | null = null;
let nextReport = 1_000_000;

for (const chunk of lineChunks(FILE)) {
  let pos = 0;
  const len = chunk.length;
  while (pos < len) {
    let nl = chunk.indexOf('\n', pos);
    if (nl < 0) nl = len;
    let end = nl;
    if (end > pos && chunk.charCodeAt(end - 1) === 13) end--;
    if (end > pos) {
      const fields = chunk.slice(pos, end).split(',');
      if (header) {
        header = false;
        userCol = fields.indexOf('user_id');
        timeCol = fields.indexOf('event_time');
        if (userCol < 0 || timeCol < 0) throw new Error(`${FILE}: header lacks user_id/event_time`);
      } else {
        const user = fields[userCol] as string;
        const ms = Date.parse(fields[timeCol] as string);
        if (Number.isNaN(ms)) throw new Error(`${FILE}: unreadable time in line ${events + 2}`);
        const hourMs = ms - (((ms % 3_600_000) + 3_600_000) % 3_600_000);
        if (hourMs !== lastHour || slot === null) {
          slot = slotOf(ms);
          lastHour = hourMs;
        }
        slot.hour.add(user);
        slot.day.add(user);
        slot.week.add(user);
        everyone.add(user);
        events++;
        if (events === nextReport) {
          progress(
            `oracle: ${(events / 1e6).toFixed(0)}M${expected > 0 ? ` / ${(expected / 1e6).toFixed(1)}M` : ''} events`,
          );
          nextReport += 1_000_000;
        }
      }
    }
    pos = nl + 1;
  }
}

const counts: Counts = new Map();
let hourlyMemberships = 0;
let allMemberships = 0;
for (const [type, map] of [
  ['hour', hours],
  ['day', days],
  ['week', weeks],
] as const) {
  for (const [startMs, set] of map) {
    counts.set(countKey(type, startMs), set.size);
    allMemberships += set.size;
    if (type === 'hour') hourlyMemberships += set.size;
  }
}
fs.writeFileSync(oracleCsvOf(FILE), countsToCsv(counts));
const meta: OracleMeta = {
  events,
  periods: counts.size,
  hourlyMemberships,
  allMemberships,
  distinctUsers: everyone.size,
  seconds: +((performance.now() - t0) / 1000).toFixed(2),
  peakRssMb: Math.round(peakRssMb()),
};
fs.writeFileSync(oracleMetaOf(FILE), `${JSON.stringify(meta, null, 2)}\n`);
progress(
  `oracle: ${meta.periods} periods, ${hourlyMemberships.toLocaleString('en-US')} hourly memberships in ${meta.seconds} s`,
);
process.stdout.write(`${JSON.stringify(meta)}\n`);
