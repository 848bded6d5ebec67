/**
 * The shared cases (`shared/cases/*.json`, README there) as the harnesses read them: the
 * case format, {@link loadCases} for a folder of case files, and {@link caseSettings}, the
 * engine settings of a case's `config`. The single-process harness (case-harness.ts) and
 * the cluster harness (cluster-case-harness.ts) both start here.
 */
import { readdirSync, readFileSync } from 'node:fs';

import { ENGINE_DEFAULTS, parseDuration, resolveEngineSettings } from '../../src/config/index.js';
import type { EngineSettings } from '../../src/embedded/embedded-node.js';
import { parseIsoTime, type RejectReason, type TimeFormat } from '../../src/ingest/index.js';
import type { PeriodType } from '../../src/periods/index.js';

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
export type ByPeriod<T> = Partial<Record<PeriodType, Readonly<Record<string, T>>>>;

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

export const MINUTE_MS = 60_000;

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

/** The instant of an ISO-8601 text in a case file; a case that has none is broken. */
export function instantOf(text: string, what: string): number {
  const ms = parseIsoTime(text);
  if (ms === null) {
    throw new Error(`the case's ${what} '${text}' is not an ISO-8601 instant`);
  }

  return ms;
}
