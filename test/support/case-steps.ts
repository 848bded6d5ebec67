/**
 * A shared case as a timeline on the harness clock (the README's "Replaying a case"),
 * independent of the system it drives:
 *
 * - {@link planCase} parses every record (listed and generated) with the project's own
 *   functions (`readUserId`, `parseEventTime`), puts them in arrival order, cuts them into
 *   batches of one instant and merges the controls in;
 * - {@link driveCase} walks that timeline against a {@link CaseTarget}: the clock moves to
 *   each step, stopping one minute past every close point in a case that runs in wall-clock
 *   time, and ends past `observe_until` and past the close of the last listed week.
 *
 * A target is the single process (case-harness.ts) or a cluster of real processes
 * (cluster-case-harness.ts); both see the same batches at the same clock times.
 */
import { describeTimeProblem } from '../../src/ingest/event-time.js';
import {
  parseEventTime,
  readUserId,
  type EventBatch,
  type RecordReject,
  type TimeFormat,
} from '../../src/ingest/index.js';
import { HOUR_MS, WEEK_MS, weekStart } from '../../src/periods/index.js';
import {
  MINUTE_MS,
  caseSettings,
  instantOf,
  type CaseControl,
  type CaseEvent,
  type CaseSettings,
  type GenerateRule,
  type SharedCase,
} from './case-format.js';

// --- the plan ----------------------------------------------------------------------------

/** A case ready to replay. */
export interface CasePlan {
  readonly settings: CaseSettings;
  /** How many records the case sends (listed and generated). */
  readonly records: number;
  readonly steps: readonly Step[];
  /**
   * Whether the case runs in wall-clock time (receive times, controls or `observe_until`):
   * then the clock stops one minute past each close point, as a coordinator on a timer
   * would run a round there, and `final_by` is measured against it. A case of on-time
   * events only jumps from batch to batch: its span may be years (BH-07), and its answers
   * do not depend on when rounds run.
   */
  readonly live: boolean;
  /** Where the clock goes after the last step, in order (README step 5). */
  readonly endMs: readonly number[];
}

/** Parses a case into its timeline. */
export function planCase(c: SharedCase): CasePlan {
  const settings = caseSettings(c);
  const records = readRecords(c, settings.timeFormat);
  const live =
    c.observe_until !== undefined ||
    (c.controls ?? []).length > 0 ||
    c.events.some((e) => e.receive_time !== undefined);

  // Past observe_until, and past the end of the last listed week plus the allowed lateness.
  const endMs = [
    ...(c.observe_until === undefined ? [] : [instantOf(c.observe_until, 'observe_until')]),
    lastCloseMs(c, settings.engine.allowedLatenessMs) + MINUTE_MS,
  ];

  return { settings, records: records.count, steps: stepsOf(c, records), live, endMs };
}

/** Where the last listed week closes (its end plus the allowed lateness). */
function lastCloseMs(c: SharedCase, allowedLatenessMs: number): number {
  const weekEnds = Object.keys(c.expected.week ?? {}).map(
    (start) => weekStart(instantOf(start, 'week start')) + WEEK_MS,
  );

  return Math.max(Number.NEGATIVE_INFINITY, ...weekEnds) + allowedLatenessMs;
}

// --- driving a target --------------------------------------------------------------------

/** The system under test, as {@link driveCase} moves it along the harness clock. */
export interface CaseTarget {
  /** The clock stops at `atMs`, one minute past a close point: a round runs there. */
  closePoint(atMs: number): Promise<void>;
  /** The clock moves on to `atMs`, where a batch, a control or the end follows. */
  moveClock(atMs: number): Promise<void>;
  /** One batch arrives, with its receive times, at the current clock. */
  deliver(batch: EventBatch): Promise<void>;
  control(control: CaseControl): Promise<void>;
  /**
   * The end (README step 5): everything sent is acknowledged, every period seen is closed
   * and a round has run after the last arrival.
   */
  end(): Promise<void>;
}

/** More clock stops than this means a case's timeline is not what the harness expects. */
const MAX_CLOCK_STEPS = 20_000;

/** Runs the plan's steps against `target` on the harness clock (README steps 2-5). */
export async function driveCase(c: SharedCase, plan: CasePlan, target: CaseTarget): Promise<void> {
  const latenessMs = plan.settings.engine.allowedLatenessMs;
  let clockMs = Number.NEGATIVE_INFINITY;
  let stops = 0;

  const stop = (): void => {
    if (++stops > MAX_CLOCK_STEPS) {
      throw new Error(`${c.id}: the clock stopped more than ${MAX_CLOCK_STEPS} times`);
    }
  };
  const advanceTo = async (targetMs: number): Promise<void> => {
    if (plan.live && Number.isFinite(clockMs)) {
      for (let t = nextCloseStep(clockMs, latenessMs); t < targetMs; t += HOUR_MS) {
        stop();
        clockMs = t;
        await target.closePoint(t);
      }
    }
    if (targetMs > clockMs) {
      stop();
      clockMs = targetMs;
      await target.moveClock(targetMs);
    }
  };

  for (const step of plan.steps) {
    await advanceTo(step.atMs);
    if (step.kind === 'batch') {
      await target.deliver(step.batch);
    } else {
      await target.control(step.control);
    }
  }
  for (const endMs of plan.endMs) {
    await advanceTo(endMs);
  }
  await target.end();
}

/** The first close point (hour boundary + lateness) plus a minute after `clockMs`. */
function nextCloseStep(clockMs: number, allowedLatenessMs: number): number {
  const offset = (allowedLatenessMs + MINUTE_MS) % HOUR_MS;
  let t = Math.floor((clockMs - offset) / HOUR_MS) * HOUR_MS + offset;
  if (t <= clockMs) {
    t += HOUR_MS;
  }

  return t;
}

// --- arrivals ----------------------------------------------------------------------------

/** Events and rejects per batch: the size of a reader's batch. */
const BATCH_SIZE = 8192;

/**
 * Every record of a case (listed events, then generated ones), column by column and indexed
 * by line - 1, with the order in which they arrive.
 */
interface Records {
  readonly count: number;
  /** The user id of an accepted record; undefined for a record rejected while parsing. */
  readonly userIds: (string | undefined)[];
  readonly eventTimeMs: Float64Array;
  readonly receiveTimeMs: Float64Array;
  readonly eventIds: (string | undefined)[] | null;
  /** Records rejected while parsing, by index. */
  readonly rejects: Map<number, RecordReject>;
  /** Indexes in arrival order. */
  readonly order: Uint32Array;
}

/** One step of the harness: a batch that arrives, or a control, at a wall-clock time. */
export type Step =
  | { readonly kind: 'batch'; readonly atMs: number; readonly batch: EventBatch }
  | { readonly kind: 'control'; readonly atMs: number; readonly control: CaseControl };

/** The fields of a listed event that are sent (the README: the others are notes). */
function sentRecord(event: CaseEvent): Record<string, unknown> {
  const sent: Record<string, unknown> = {};
  for (const key of ['user_id', 'event_time', 'receive_time', 'event_id', 'attributes'] as const) {
    if (key in event) {
      sent[key] = event[key];
    }
  }

  return sent;
}

/**
 * Parses every record and puts them in arrival order (README step 2): by receive time, with
 * `arrival_seq` (else the listed order) breaking ties. A record without a receive time is on
 * time: its event time is its receive time. A record whose event time cannot be read keeps
 * its place after the record listed before it.
 */
function readRecords(c: SharedCase, timeFormat: TimeFormat): Records {
  const generated = (c.generate ?? []).reduce((n, r) => n + ruleSize(r), 0);
  const count = c.events.length + generated;
  const userIds: (string | undefined)[] = new Array<string | undefined>(count);
  const eventTimeMs = new Float64Array(count);
  const receiveTimeMs = new Float64Array(count);
  const sequence = new Float64Array(count);
  const withEventIds = c.events.some((e) => e.event_id !== undefined);
  const eventIds = withEventIds ? new Array<string | undefined>(count) : null;
  const rejects = new Map<number, RecordReject>();

  let previousMs = Number.NEGATIVE_INFINITY;
  c.events.forEach((event, i) => {
    const timeMs = parseEventTime(event.event_time, timeFormat);
    const raw = JSON.stringify(sentRecord(event));
    const user = readUserId(event.user_id);
    if (!user.ok) {
      const detail = user.detail;
      rejects.set(i, { source: c.id, line: i + 1, reason: 'invalid_user_id', detail, raw });
    } else if (timeMs === null) {
      const detail = describeTimeProblem(event.event_time, timeFormat);
      rejects.set(i, { source: c.id, line: i + 1, reason: 'invalid_time', detail, raw });
    } else {
      userIds[i] = user.userId;
    }

    previousMs = timeMs ?? previousMs;
    eventTimeMs[i] = timeMs ?? Number.NaN;
    receiveTimeMs[i] =
      event.receive_time === undefined ? previousMs : instantOf(event.receive_time, 'receive_time');
    sequence[i] = event.arrival_seq ?? i;
    if (eventIds !== null) {
      eventIds[i] = event.event_id;
    }
  });

  let next = c.events.length;
  for (const rule of c.generate ?? []) {
    next = generate(c.id, rule, next, { userIds, eventTimeMs, receiveTimeMs, sequence, rejects });
  }

  const order = Uint32Array.from({ length: count }, (_, i) => i);
  order.sort(
    (a, b) =>
      (receiveTimeMs[a] as number) - (receiveTimeMs[b] as number) ||
      (sequence[a] as number) - (sequence[b] as number) ||
      a - b,
  );

  return { count, userIds, eventTimeMs, receiveTimeMs, eventIds, rejects, order };
}

function ruleSize(rule: GenerateRule): number {
  return (rule.n_to_inclusive - rule.n_from + 1) * rule.event_time_templates.length;
}

interface GeneratedColumns {
  readonly userIds: (string | undefined)[];
  readonly eventTimeMs: Float64Array;
  readonly receiveTimeMs: Float64Array;
  readonly sequence: Float64Array;
  readonly rejects: Map<number, RecordReject>;
}

/**
 * Expands one rule from index `next` on (the case notes: `{n:07d}` is n zero-padded to
 * seven digits, `h` an expression of n, one on-time event per template). Returns the next
 * free index.
 */
function generate(source: string, rule: GenerateRule, next: number, out: GeneratedColumns): number {
  const hOf = hourExpression(rule.h);
  const times = new Map<string, number | null>();
  let i = next;

  for (let n = rule.n_from; n <= rule.n_to_inclusive; n++) {
    const vars = { n, h: hOf(n) };
    const user = readUserId(fill(rule.user_id_format, vars));
    for (const template of rule.event_time_templates) {
      const text = fill(template, vars);
      let timeMs = times.get(text);
      if (timeMs === undefined) {
        timeMs = parseEventTime(text, 'iso');
        times.set(text, timeMs);
      }

      const raw = JSON.stringify({ user_id: user.ok ? user.userId : null, event_time: text });
      if (!user.ok) {
        const detail = user.detail;
        out.rejects.set(i, { source, line: i + 1, reason: 'invalid_user_id', detail, raw });
      } else if (timeMs === null) {
        const detail = describeTimeProblem(text, 'iso');
        out.rejects.set(i, { source, line: i + 1, reason: 'invalid_time', detail, raw });
      } else {
        out.userIds[i] = user.userId;
      }

      out.eventTimeMs[i] = timeMs ?? Number.NaN;
      out.receiveTimeMs[i] = timeMs ?? Number.NEGATIVE_INFINITY;
      out.sequence[i] = i;
      i++;
    }
  }

  return i;
}

/** `n % K`, the only form of `h` the cases use; no `h` gives 0. */
function hourExpression(expression: string | undefined): (n: number) => number {
  if (expression === undefined) {
    return () => 0;
  }

  const match = /^\s*n\s*%\s*(\d+)\s*$/.exec(expression);
  if (match === null) {
    throw new Error(`the harness reads h only as 'n % K', got '${expression}'`);
  }

  const modulus = Number(match[1]);

  return (n) => n % modulus;
}

/** Fills `{name}` and `{name:0Wd}` (zero-padded to W digits) placeholders. */
function fill(template: string, vars: Readonly<Record<string, number>>): string {
  return template.replace(/\{(\w+)(?::0(\d+)d)?\}/g, (whole, name: string, width?: string) => {
    const value = vars[name];
    if (value === undefined) {
      throw new Error(`unknown placeholder ${whole} in '${template}'`);
    }

    return width === undefined ? String(value) : String(value).padStart(Number(width), '0');
  });
}

/**
 * Cuts the arrivals into batches of records that arrive at the same instant (at most
 * {@link BATCH_SIZE}), merges the controls in, and orders the steps by time; a control comes
 * before a batch that arrives at the same instant.
 */
function stepsOf(c: SharedCase, records: Records): Step[] {
  const steps: Step[] = [];
  let members: number[] = [];

  const flush = (): void => {
    if (members.length === 0) {
      return;
    }

    const atMs = records.receiveTimeMs[members[0] as number] as number;
    steps.push({ kind: 'batch', atMs, batch: batchOf(c.id, records, members) });
    members = [];
  };

  for (const index of records.order) {
    const first = members[0];
    const sameInstant =
      first === undefined || records.receiveTimeMs[first] === records.receiveTimeMs[index];
    if (!sameInstant || members.length === BATCH_SIZE) {
      flush();
    }
    members.push(index);
  }
  flush();

  const controls: Step[] = (c.controls ?? []).map((control) => ({
    kind: 'control',
    atMs: instantOf(control.at, 'control time'),
    control,
  }));
  const rank = (step: Step): number => (step.kind === 'control' ? 0 : 1);

  return [...controls, ...steps].sort((a, b) => a.atMs - b.atMs || rank(a) - rank(b));
}

/** One parsed batch, as a reader would deliver it, of the records at `members`. */
function batchOf(source: string, records: Records, members: readonly number[]): EventBatch {
  const accepted = members.filter((i) => records.userIds[i] !== undefined);
  const rejects = members.flatMap((i) => {
    const reject = records.rejects.get(i);

    return reject === undefined ? [] : [reject];
  });

  return {
    source,
    length: accepted.length,
    userIds: accepted.map((i) => records.userIds[i] as string),
    eventTimeMs: Float64Array.from(accepted, (i) => records.eventTimeMs[i] as number),
    receiveTimeMs: Float64Array.from(accepted, (i) => records.receiveTimeMs[i] as number),
    lines: Uint32Array.from(accepted, (i) => i + 1),
    eventIds: records.eventIds === null ? null : accepted.map((i) => records.eventIds?.[i]),
    rejects,
    lastLine: Math.max(...members) + 1,
  };
}
