import type { EngineSettings } from '../embedded/embedded-node.js';

/** Defaults of the engine settings; each has a flag. */
export const ENGINE_DEFAULTS = {
  /** @default 16 */
  partitions: 16,
  /** @default 10 minutes */
  allowedLatenessMs: 10 * 60_000,
  /** @default 35 days */
  restatementHorizonMs: 35 * 86_400_000,
  /** @default 5 minutes */
  maxFutureSkewMs: 5 * 60_000,
  /** @default 0 */
  maxOutOfOrdernessMs: 0,
  /** @default 1 GiB */
  memoryBudgetBytes: 1024 ** 3,
} as const;

/** Checks the settings and fills in defaults; one clear message per bad field. */
export function resolveEngineSettings(
  input: Partial<EngineSettings> & Pick<EngineSettings, 'watermarkMode'>,
): EngineSettings {
  const s: EngineSettings = {
    ...ENGINE_DEFAULTS,
    ...stripUndefined(input),
    watermarkMode: input.watermarkMode,
  };
  const problems: string[] = [];

  if (!Number.isInteger(s.partitions) || s.partitions < 1 || s.partitions > 65_536) {
    problems.push(`partitions must be an integer from 1 to 65536, got ${s.partitions}`);
  }
  for (const field of [
    'allowedLatenessMs',
    'restatementHorizonMs',
    'maxFutureSkewMs',
    'maxOutOfOrdernessMs',
  ] as const) {
    if (!(s[field] >= 0)) problems.push(`${field} must not be negative, got ${s[field]}`);
  }
  if (s.restatementHorizonMs < s.allowedLatenessMs) {
    problems.push('the restatement horizon must not be shorter than the allowed lateness');
  }
  if (!(s.memoryBudgetBytes > 0))
    problems.push(`memory budget must be positive, got ${s.memoryBudgetBytes}`);
  if (problems.length > 0) throw new Error(`[SL-CONFIG-002] ${problems.join('; ')}`);

  return s;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
