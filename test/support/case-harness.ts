/**
 * Replays the shared cases (`shared/cases/*.json`) through the single-process
 * engine exactly as `shared/cases/README.md` prescribes, and compares what the
 * warehouse holds at the end with each case's `expected` answers.
 *
 * Three steps, each its own export:
 *
 * 1. {@link loadCases} reads the case files of a folder (not its sub-folders);
 * 2. {@link replayCase} configures an {@link EmbeddedNode}, sends the events in
 *    arrival order on a harness-owned clock, performs the controls and ends as
 *    the README's step 5 says; it returns what it observed;
 * 3. {@link checkCase} turns every difference from `expected` into one readable
 *    line, so that a failing case lists all of its problems at once.
 *
 * Events are parsed with the project's own functions (`readUserId`,
 * `parseEventTime`), so a case checks the parsing rules as well as the counting.
 */
import { readdirSync, readFileSync } from 'node:fs';

import { ENGINE_DEFAULTS, parseDuration, resolveEngineSettings } from '../../src/config/index.js';
import { EmbeddedNode, type EngineSettings } from '../../src/embedded/embedded-node.js';
import { describeTimeProblem } from '../../src/ingest/event-time.js';
import {
  REJECT_REASONS,
  parseEventTime,
  parseIsoTime,
  readUserId,
  type EventBatch,
  type RecordReject,
  type RejectReason,
  type TimeFormat,
} from '../../src/ingest/index.js';
import { silentLogger } from '../../src/observability/index.js';
import {
  HOUR_MS,
  PERIOD_TYPES,
  WEEK_MS,
  describePeriod,
  isoSeconds,
  periodKey,
  weekStart,
  type PeriodType,
} from '../../src/periods/index.js';
import type { CurrentRow, VersionRow, Warehouse } from '../../src/sink/index.js';

// --- the case format (field names as in the JSON files) ---------------------------------

/** One input event as a case lists it; fields not listed here are notes and are not sent. */
export interface CaseEvent {
  readonly user_id?: unknown;
  readonly event_time?: unknown;
  readonly receive_time?: string;
  readonly arrival_seq?: number;
  readonly event_id?: string;
  readonly attributes?: unknown;
}

/** An action the harness performs when its clock reaches `at`. */
export interface CaseControl {
  readonly at: string;
  readonly action: string;
  readonly shard?: string;
  readonly graceful?: boolean;
  readonly to?: number;
}

/** A rule that generates events: one per template for every n in the range (BH-22). */
export interface GenerateRule {
  readonly user_id_format: string;
  readonly n_from: number;
  readonly n_to_inclusive: number;
  /** An expression of n, e.g. `n % 24`; templates refer to it as `{h}`. */
  readonly h?: string;
  readonly event_time_templates: readonly string[];
}

export interface VersionExpectation {
  readonly first: number;
  readonly last: number;
  readonly max_versions?: number;
}

/** Values by period start (ISO text), per period type. */
type ByPeriod<T> = Partial<Record<PeriodType, Readonly<Record<string, T>>>>;

export interface CaseExpected {
  readonly hour?: Readonly<Record<string, number>>;
  readonly day?: Readonly<Record<string, number>>;
  readonly week?: Readonly<Record<string, number>>;
  readonly versions?: ByPeriod<VersionExpectation>;
  readonly rejected?: Partial<Record<RejectReason, number>>;
  /** Wall-clock time (ISO text) by which each period's version 1 must be readable. */
  readonly final_by?: ByPeriod<string>;
  /** Wrong answers from the source reports; the values above already rule them out. */
  readonly must_not?: readonly string[];
}

/** One case file. */
export interface SharedCase {
  /** The file name, for messages. */
  readonly file: string;
  readonly id: string;
  readonly title: string;
  readonly config: Readonly<Record<string, unknown>>;
  readonly controls?: readonly CaseControl[];
  readonly generate?: readonly GenerateRule[];
  readonly events: readonly CaseEvent[];
  readonly observe_until?: string;
  readonly expected: CaseExpected;
  /**
   * Other configurations with their own answers. Each needs a setting the engine does not
   * offer (BH-16: user-id normalisation), so the harness skips them, as the README allows.
   */
  readonly variants?: readonly unknown[];
}

/** The case files of `folder` (sub-folders such as `timezones/` are not read), by name. */
export function loadCases(folder: URL): SharedCase[] {
  const files = readdirSync(folder, { withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.json'))
    .map((entry) => entry.name)
    .sort();

  return files.map((file) => {
    const parsed: unknown = JSON.parse(readFileSync(new URL(file, folder), 'utf8'));
    if (!isCaseShape(parsed)) {
      throw new Error(`${file} is not a case: it needs id, title, config, events and expected`);
    }

    return { ...parsed, file };
  });
}

function isCaseShape(value: unknown): value is Omit<SharedCase, 'file'> {
  if (typeof value !== 'object' || value === null) {
    return false;
  }

  const c = value as Record<string, unknown>;

  return (
    typeof c.id === 'string' &&
    typeof c.title === 'string' &&
    typeof c.config === 'object' &&
    Array.isArray(c.events) &&
    typeof c.expected === 'object'
  );
}

// --- configuration ---------------------------------------------------------------------

const MINUTE_MS = 60_000;

/** README: `max_future_skew` defaults to PT5M. */
const DEFAULT_MAX_FUTURE_SKEW = 'PT5M';

/** Config keys that only a cluster harness acts on, or that the event list already covers. */
const CLUSTER_ONLY_KEYS = new Set(['shards', 'delivery']);

const KNOWN_KEYS = new Set([
  'allowed_lateness',
  'restatement_horizon',
  'max_future_skew',
  'time_format',
  ...CLUSTER_ONLY_KEYS,
]);

const TIME_FORMATS: readonly TimeFormat[] = ['iso', 'epoch-s', 'epoch-ms', 'auto'];

/** How the engine is configured for a case. */
export interface CaseSettings {
  readonly engine: EngineSettings;
  readonly timeFormat: TimeFormat;
}

/**
 * The engine settings of a case's `config`.
 *
 * An absent `allowed_lateness` or `restatement_horizon` takes the engine default (10 minutes
 * and 35 days). The README says such a case does not depend on it: its events carry no
 * receive time, so each is sent at its own event time in event-time order, and an event is
 * then never behind the watermark, so no lateness or horizon can make it late or too old.
 *
 * The watermark follows the harness clock (`clock` mode) with no out-of-orderness bound, as
 * the README's step 4 asks. A key the harness does not know fails the case rather than being
 * ignored, so that a case needing a new setting (a `timezone`) cannot pass by accident.
 */
export function caseSettings(c: SharedCase): CaseSettings {
  const unknown = Object.keys(c.config).filter((key) => !KNOWN_KEYS.has(key));
  if (unknown.length > 0) {
    throw new Error(`${c.id}: the harness does not support config ${unknown.join(', ')}`);
  }

  const duration = (key: string): number | undefined => {
    const value = c.config[key];

    return typeof value === 'string' ? parseDuration(value) : undefined;
  };
  const engine = resolveEngineSettings({
    partitions: ENGINE_DEFAULTS.partitions,
    allowedLatenessMs: duration('allowed_lateness'),
    restatementHorizonMs: duration('restatement_horizon'),
    maxFutureSkewMs: duration('max_future_skew') ?? parseDuration(DEFAULT_MAX_FUTURE_SKEW),
    maxOutOfOrdernessMs: 0,
    watermarkMode: 'clock',
    memoryBudgetBytes: ENGINE_DEFAULTS.memoryBudgetBytes,
  });

  const format = c.config.time_format ?? 'iso';
  const timeFormat = TIME_FORMATS.find((known) => known === format);
  if (timeFormat === undefined) {
    throw new Error(`${c.id}: unknown time_format ${String(format)}`);
  }

  return { engine, timeFormat };
}

// --- arrivals --------------------------------------------------------------------------

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
type Step =
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

function instantOf(text: string, what: string): number {
  const ms = parseIsoTime(text);
  if (ms === null) {
    throw new Error(`the case's ${what} '${text}' is not an ISO-8601 instant`);
  }

  return ms;
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

// --- replay ----------------------------------------------------------------------------

/** Where a case runs: a fresh warehouse and a LevelDB directory of its own. */
export interface CasePlace {
  readonly warehouse: Warehouse;
  readonly stateDir: string;
}

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

/** More hourly steps than this means a case's timeline is not what the harness expects. */
const MAX_CLOCK_STEPS = 20_000;

/**
 * Runs one case on the harness clock (README steps 1-5).
 *
 * Every batch is followed by a round, and a round checkpoints before it closes periods:
 * that checkpoint is the acknowledgement of the batch (DESIGN invariant 3), so a crash
 * after it loses nothing the case sent.
 *
 * In a case that runs in wall-clock time (receive times, controls or `observe_until`), the
 * clock also stops one minute past each close point (an hour boundary plus the allowed
 * lateness) for a round, as a coordinator on a timer would; that is what `final_by` is
 * measured against. A case of on-time events only jumps from batch to batch: its span may
 * be years (BH-07), and its answers do not depend on when rounds run.
 */
export async function replayCase(c: SharedCase, place: CasePlace): Promise<CaseRun> {
  const settings = caseSettings(c);
  const records = readRecords(c, settings.timeFormat);
  const steps = stepsOf(c, records);
  const live =
    c.observe_until !== undefined ||
    (c.controls ?? []).length > 0 ||
    c.events.some((e) => e.receive_time !== undefined);

  const replay = new CaseReplay(c, settings.engine, place, live);
  await replay.start();
  try {
    for (const step of steps) {
      await replay.advanceTo(step.atMs);
      if (step.kind === 'batch') {
        await replay.deliver(step.batch);
      } else {
        await replay.control(step.control);
      }
    }

    // README step 5: past observe_until and past the end of the last listed week plus the
    // allowed lateness, then a last round after everything closed.
    if (c.observe_until !== undefined) {
      await replay.advanceTo(instantOf(c.observe_until, 'observe_until'));
    }
    await replay.advanceTo(lastCloseMs(c, settings.engine.allowedLatenessMs) + MINUTE_MS);
    await replay.end();
  } finally {
    await replay.abandon();
  }

  const { warehouse } = place;
  const summary = await warehouse.rejectSummary(1);

  return {
    current: await warehouse.queryCurrent({}),
    history: await warehouse.queryHistory({}),
    rejected: summary.counts,
    seen: replay.seen,
    records: records.count,
  };
}

/** Where the last listed week closes (its end plus the allowed lateness). */
function lastCloseMs(c: SharedCase, allowedLatenessMs: number): number {
  const weekEnds = Object.keys(c.expected.week ?? {}).map(
    (start) => weekStart(instantOf(start, 'week start')) + WEEK_MS,
  );

  return Math.max(Number.NEGATIVE_INFINITY, ...weekEnds) + allowedLatenessMs;
}

/**
 * The single process under the harness clock. A kill with `graceful: false` closes the node
 * without a checkpoint (what was not acknowledged is lost, as after SIGKILL); any other kill
 * drains it. A restart opens it again on the same LevelDB directory and warehouse, and the
 * node resumes from its last checkpoint. Batches that arrive while it is down wait for the
 * restart, as a client retries until it is acknowledged.
 *
 * The cluster harness (a later issue) performs the same controls on real shard processes;
 * here every shard is this one process, so `owner_of:<user>` names the whole node and
 * `scale_shards` changes nothing (partitions, not shards, hold the counts).
 */
class CaseReplay {
  readonly seen = new Map<string, SeenVersion>();
  private node: EmbeddedNode | null = null;
  private clockMs = Number.NEGATIVE_INFINITY;
  private waiting: EventBatch[] = [];
  private steps = 0;

  constructor(
    private readonly c: SharedCase,
    private readonly engine: EngineSettings,
    private readonly place: CasePlace,
    private readonly live: boolean,
  ) {}

  async start(): Promise<void> {
    this.node = await EmbeddedNode.open({
      ...this.engine,
      stateDir: this.place.stateDir,
      warehouse: this.place.warehouse,
      logger: silentLogger(),
      now: () => this.clockMs,
    });
    if (Number.isFinite(this.clockMs)) {
      await this.node.advanceClock(this.clockMs);
    }
  }

  /** Moves the clock to `targetMs`, never back; a live case stops at each close point. */
  async advanceTo(targetMs: number): Promise<void> {
    if (this.live && Number.isFinite(this.clockMs)) {
      for (let t = this.nextCloseStep(); t < targetMs; t += HOUR_MS) {
        await this.tick(t);
        await this.round();
      }
    }

    await this.tick(targetMs);
  }

  /** Sends one batch with its receive times, and acknowledges it through a round. */
  async deliver(batch: EventBatch): Promise<void> {
    if (this.node === null) {
      this.waiting.push(batch);
      return;
    }

    await this.node.ingest(batch);
    await this.round();
  }

  async control(control: CaseControl): Promise<void> {
    switch (control.action) {
      case 'kill_shard':
      case 'kill_all_shards':
        await this.kill(control.graceful !== false);
        return;
      case 'restart_shard':
      case 'restart_all_shards':
        await this.restart();
        return;
      case 'scale_shards':
        return;
      default:
        throw new Error(`${this.c.id}: unknown control action ${control.action}`);
    }
  }

  /** Closes every period and runs the last round (a restart first, if the node is down). */
  async end(): Promise<void> {
    await this.restart();
    const node = this.node as EmbeddedNode;
    await node.finish();
    await node.close();
    this.node = null;
    await this.observe();
  }

  /** Releases the node after a failure; a no-op once {@link end} has run. */
  async abandon(): Promise<void> {
    await this.node?.abandon();
    this.node = null;
  }

  private async kill(graceful: boolean): Promise<void> {
    if (this.node === null) {
      return;
    }

    // SIGTERM drains (a checkpoint and a last round); SIGKILL loses what was not checkpointed.
    await (graceful ? this.node.close() : this.node.abandon());
    this.node = null;
    await this.observe();
  }

  private async restart(): Promise<void> {
    if (this.node !== null) {
      return;
    }

    await this.start();
    await this.round();
    for (const batch of this.waiting.splice(0)) {
      await this.deliver(batch);
    }
  }

  /** The first close point (hour boundary + lateness) plus a minute after the clock. */
  private nextCloseStep(): number {
    const offset = (this.engine.allowedLatenessMs + MINUTE_MS) % HOUR_MS;
    let t = Math.floor((this.clockMs - offset) / HOUR_MS) * HOUR_MS + offset;
    if (t <= this.clockMs) {
      t += HOUR_MS;
    }

    return t;
  }

  private async tick(targetMs: number): Promise<void> {
    if (!(targetMs > this.clockMs)) {
      return;
    }

    if (++this.steps > MAX_CLOCK_STEPS) {
      throw new Error(`${this.c.id}: the clock stopped more than ${MAX_CLOCK_STEPS} times`);
    }

    this.clockMs = targetMs;
    await this.node?.advanceClock(targetMs);
  }

  private async round(): Promise<void> {
    if (this.node === null) {
      return;
    }

    await this.node.round();
    await this.observe();
  }

  /** Notes each version the first time it is readable, with the clock at that moment. */
  private async observe(): Promise<void> {
    for (const row of await this.place.warehouse.queryHistory({})) {
      const key = versionKey(row.periodType, row.periodStartMs, row.version);
      if (!this.seen.has(key)) {
        this.seen.set(key, {
          clockMs: this.clockMs,
          distinctUsers: row.distinctUsers,
          status: row.status,
        });
      }
    }
  }
}

function versionKey(type: PeriodType, startMs: number, version: number): string {
  return `${periodKey({ type, startMs })}#${version}`;
}

// --- expectations ----------------------------------------------------------------------

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
