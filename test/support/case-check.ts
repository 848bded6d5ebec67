/**
 * What a replay of a shared case observed, and how it is judged:
 *
 * - {@link VersionWatch} notes each version the first time the harness can read it, with the
 *   harness clock at that moment (what `final_by` is measured against);
 * - {@link readRun} reads the end state: current rows, version history, dead-letter counts;
 * - {@link checkCase} turns every difference from the case's `expected` into one readable
 *   line, so that a failing case lists all of its problems at once;
 * - {@link compareRuns} lists where two runs of one case (the single process and a cluster)
 *   give different answers.
 */
import { REJECT_REASONS, type RejectReason } from '../../src/ingest/index.js';
import {
  PERIOD_TYPES,
  describePeriod,
  isoSeconds,
  periodKey,
  type PeriodType,
} from '../../src/periods/index.js';
import type { CurrentRow, VersionRow, Warehouse } from '../../src/sink/index.js';
import {
  instantOf,
  type ByPeriod,
  type SharedCase,
  type VersionExpectation,
} from './case-format.js';

// --- observing a run ---------------------------------------------------------------------

/** A version as the harness first read it, and the clock at that moment. */
export interface SeenVersion {
  readonly clockMs: number;
  readonly distinctUsers: number;
  readonly status: 'final' | 'restated';
}

/** What a replay observed. */
export interface CaseRun {
  readonly current: readonly CurrentRow[];
  readonly history: readonly VersionRow[];
  readonly rejected: Partial<Record<RejectReason, number>>;
  /** Each version's first reading, by `${periodKey}#${version}`. */
  readonly seen: ReadonlyMap<string, SeenVersion>;
  /** How many events the case sent (listed and generated). */
  readonly records: number;
}

function versionKey(type: PeriodType, startMs: number, version: number): string {
  return `${periodKey({ type, startMs })}#${version}`;
}

/** The versions of a run as the harness saw them appear. */
export class VersionWatch {
  readonly seen = new Map<string, SeenVersion>();

  /** Notes each version the first time it is readable, with the clock at that moment. */
  async observe(warehouse: Warehouse, clockMs: number): Promise<void> {
    for (const row of await warehouse.queryHistory({})) {
      const key = versionKey(row.periodType, row.periodStartMs, row.version);
      if (!this.seen.has(key)) {
        this.seen.set(key, { clockMs, distinctUsers: row.distinctUsers, status: row.status });
      }
    }
  }
}

/** The end state of a run, from the warehouse it wrote. */
export async function readRun(
  warehouse: Warehouse,
  watch: VersionWatch,
  records: number,
): Promise<CaseRun> {
  const summary = await warehouse.rejectSummary(1);

  return {
    current: await warehouse.queryCurrent({}),
    history: await warehouse.queryHistory({}),
    rejected: summary.counts,
    seen: watch.seen,
    records,
  };
}

// --- expectations ------------------------------------------------------------------------

/** A period named in `expected`, with the value given for it. */
interface Listed<T> {
  /** E.g. `day 2020-02-17T00:00:00Z`. */
  readonly name: string;
  readonly value: T;
}

/** The periods of one part of `expected`, by {@link periodKey}. */
function listed<T>(c: SharedCase, byPeriod: ByPeriod<T> | undefined): Map<string, Listed<T>> {
  const out = new Map<string, Listed<T>>();
  for (const type of PERIOD_TYPES) {
    for (const [start, value] of Object.entries(byPeriod?.[type] ?? {})) {
      const period = { type, startMs: instantOf(start, `${type} start in ${c.file}`) };
      out.set(periodKey(period), { name: describePeriod(period), value });
    }
  }

  return out;
}

interface PeriodRow {
  readonly periodType: PeriodType;
  readonly periodStartMs: number;
}

function rowKey(row: PeriodRow): string {
  return periodKey({ type: row.periodType, startMs: row.periodStartMs });
}

function rowName(row: PeriodRow): string {
  return describePeriod({ type: row.periodType, startMs: row.periodStartMs });
}

/**
 * Every way the run differs from the case's `expected`, one line each; empty when it
 * matches. README "expected":
 *
 * - `hour`/`day`/`week`: each listed period's current value; any other current row is 0,
 *   and no current row is left provisional once every period has closed;
 * - `versions`: version 1 (final) and the last version (restated) of the listed periods,
 *   values strictly increasing, at most `max_versions`; every other period has exactly one
 *   version, final and equal to its value (a period whose only events came late closes
 *   with 0 and is restated, so it must be listed);
 * - every version reads at the end as it did when the harness first read it;
 * - `rejected`: the dead-letter count of every reason, absent meaning 0 (so no `malformed`);
 * - `final_by`: version 1 was readable, final, by then on the harness clock.
 *
 * `must_not` needs no check of its own: the values above rule each of its answers out, and
 * any period outside them with users (a 1970 period, a Sunday week) is reported.
 */
export function checkCase(c: SharedCase, run: CaseRun): string[] {
  const { hour, day, week } = c.expected;
  const values = listed(c, { hour, day, week });

  return [
    ...checkCurrent(values, run),
    ...checkVersions(values, listed(c, c.expected.versions), run),
    ...checkUnchanged(run),
    ...checkRejected(c, run),
    ...checkFinalBy(listed(c, c.expected.final_by), run),
  ];
}

function checkCurrent(values: Map<string, Listed<number>>, run: CaseRun): string[] {
  const current = new Map(run.current.map((row) => [rowKey(row), row]));
  const problems: string[] = [];

  for (const [key, { name, value }] of values) {
    const users = current.get(key)?.distinctUsers;
    if (users !== value) {
      problems.push(`${name}: expected ${value}, current row reads ${users ?? 'nothing'}`);
    }
  }

  for (const row of run.current) {
    if (!values.has(rowKey(row)) && row.distinctUsers !== 0) {
      const users = row.distinctUsers;
      problems.push(`${rowName(row)}: expected absent or 0, current row reads ${users}`);
    }
    if (row.status === 'provisional') {
      problems.push(`${rowName(row)}: still provisional (${row.distinctUsers}) at the end`);
    }
  }

  return problems;
}

function checkVersions(
  values: Map<string, Listed<number>>,
  versions: Map<string, Listed<VersionExpectation>>,
  run: CaseRun,
): string[] {
  const history = new Map<string, VersionRow[]>();
  for (const row of run.history) {
    history.set(rowKey(row), [...(history.get(rowKey(row)) ?? []), row]);
  }

  const problems: string[] = [];
  for (const [key, rows] of history) {
    problems.push(...checkSequence(rows));
    if (!versions.has(key) && !values.has(key)) {
      problems.push(...checkSingleVersion(rowName(rows[0] as VersionRow), rows, 0));
    }
  }

  for (const [key, { name, value }] of values) {
    if (!versions.has(key)) {
      problems.push(...checkSingleVersion(name, history.get(key) ?? [], value));
    }
  }

  for (const [key, { name, value }] of versions) {
    problems.push(...checkRestated(name, history.get(key) ?? [], value));
  }

  return problems;
}

/** Versions 1..n in order, version 1 final, later ones restated, each higher than the last. */
function checkSequence(rows: readonly VersionRow[]): string[] {
  const problems: string[] = [];
  rows.forEach((row, i) => {
    const name = `${rowName(row)} v${row.version}`;
    const status = i === 0 ? 'final' : 'restated';
    if (row.version !== i + 1) {
      problems.push(`${name}: found where v${i + 1} was due`);
    }
    if (row.status !== status) {
      problems.push(`${name}: ${row.status}, expected ${status}`);
    }

    const before = rows[i - 1];
    if (before !== undefined && row.distinctUsers <= before.distinctUsers) {
      const values = `${row.distinctUsers} after ${before.distinctUsers}`;
      problems.push(`${name}: not higher than v${before.version} (${values})`);
    }
  });

  return problems;
}

/** A period not listed under `versions`: exactly one version, equal to its value. */
function checkSingleVersion(name: string, rows: readonly VersionRow[], value: number): string[] {
  if (rows.length === 1 && rows[0]?.distinctUsers === value) {
    return [];
  }

  const found = rows.map((row) => `v${row.version}=${row.distinctUsers}`).join(', ') || 'none';

  return [`${name}: expected exactly one version reading ${value}, history has ${found}`];
}

function checkRestated(
  name: string,
  rows: readonly VersionRow[],
  expected: VersionExpectation,
): string[] {
  const first = rows[0];
  const last = rows[rows.length - 1];
  if (first === undefined || last === undefined) {
    return [`${name}: expected versions ${expected.first}..${expected.last}, history has none`];
  }

  const problems: string[] = [];
  if (first.distinctUsers !== expected.first) {
    problems.push(`${name}: v1 reads ${first.distinctUsers}, expected ${expected.first}`);
  }
  if (last.distinctUsers !== expected.last) {
    const got = `v${last.version} reads ${last.distinctUsers}`;
    problems.push(`${name}: last version ${got}, expected ${expected.last}`);
  }
  if (expected.max_versions !== undefined && rows.length > expected.max_versions) {
    problems.push(`${name}: ${rows.length} versions, at most ${expected.max_versions} allowed`);
  }

  return problems;
}

/** README: "version 1 reads the same at the end as when it was published"; so must any. */
function checkUnchanged(run: CaseRun): string[] {
  const problems: string[] = [];
  for (const row of run.history) {
    const seen = run.seen.get(versionKey(row.periodType, row.periodStartMs, row.version));
    if (seen === undefined) {
      continue;
    }

    const then = `${seen.distinctUsers} (${seen.status})`;
    const now = `${row.distinctUsers} (${row.status})`;
    if (then !== now) {
      problems.push(`${rowName(row)} v${row.version}: published as ${then}, now reads ${now}`);
    }
  }

  return problems;
}

function checkRejected(c: SharedCase, run: CaseRun): string[] {
  const problems: string[] = [];
  for (const reason of REJECT_REASONS) {
    const expected = c.expected.rejected?.[reason] ?? 0;
    const actual = run.rejected[reason] ?? 0;
    if (actual !== expected) {
      problems.push(`rejected ${reason}: expected ${expected}, dead-letter table has ${actual}`);
    }
  }

  return problems;
}

function checkFinalBy(deadlines: Map<string, Listed<string>>, run: CaseRun): string[] {
  const problems: string[] = [];
  for (const [key, { name, value }] of deadlines) {
    const seen = run.seen.get(`${key}#1`); // see versionKey
    if (seen === undefined || seen.clockMs > instantOf(value, 'final_by time')) {
      const when = seen === undefined ? 'never' : `first at ${isoSeconds(seen.clockMs)}`;
      problems.push(`${name}: version 1 due by ${value}, readable ${when}`);
    } else if (seen.status !== 'final') {
      problems.push(`${name}: version 1 is ${seen.status}, expected final`);
    }
  }

  return problems;
}

// --- two runs of one case ----------------------------------------------------------------

/**
 * Every answer on which two runs of one case differ, one line each; empty when they agree:
 * the current row of each period (value, version, status), the values and statuses of each
 * period's versions in order, and the dead-letter count of each reason.
 */
export function compareRuns(a: CaseRun, b: CaseRun, names: [string, string]): string[] {
  const currentOf = (run: CaseRun): Map<string, string> =>
    new Map(
      run.current.map((row) => [
        rowName(row),
        `${row.distinctUsers} (v${row.version} ${row.status})`,
      ]),
    );
  const versionsOf = (run: CaseRun): Map<string, string> => {
    const out = new Map<string, string>();
    for (const row of run.history) {
      const name = rowName(row);
      const text = `v${row.version}=${row.distinctUsers} ${row.status}`;
      out.set(name, out.has(name) ? `${out.get(name)}, ${text}` : text);
    }

    return out;
  };
  const rejectsOf = (run: CaseRun): Map<string, string> =>
    new Map(REJECT_REASONS.map((reason) => [reason, String(run.rejected[reason] ?? 0)]));

  return [
    ...differences('current', currentOf(a), currentOf(b), names),
    ...differences('versions', versionsOf(a), versionsOf(b), names),
    ...differences('rejected', rejectsOf(a), rejectsOf(b), names),
  ];
}

function differences(
  what: string,
  a: ReadonlyMap<string, string>,
  b: ReadonlyMap<string, string>,
  [nameA, nameB]: [string, string],
): string[] {
  const keys = [...new Set([...a.keys(), ...b.keys()])].sort();

  return keys.flatMap((key) => {
    const [valueA, valueB] = [a.get(key) ?? 'nothing', b.get(key) ?? 'nothing'];

    return valueA === valueB ? [] : [`${what} ${key}: ${nameA} ${valueA}, ${nameB} ${valueB}`];
  });
}
