import { parseIsoTime } from '../ingest/index.js';
import { isPeriodType, type PeriodType } from '../periods/index.js';
import { parseByteSize, parseDuration } from './duration.js';

/** Flag value readers for commander: each throws one clear message. */
export const durationFlag = (value: string): number => parseDuration(value);

export const byteSizeFlag = (value: string): number => parseByteSize(value);

export function integerFlag(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n)) throw new Error(`not an integer: '${value}'`);

  return n;
}

/** An instant: ISO-8601 with an offset, or a date (`2026-03-29`, midnight UTC). */
export function instantFlag(value: string): number {
  const date = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
  if (date !== null) {
    const ms = Date.UTC(Number(date[1]), Number(date[2]) - 1, Number(date[3]));
    if (new Date(ms).toISOString().startsWith(value)) return ms;
  }
  const ms = parseIsoTime(value);
  if (ms === null)
    throw new Error(`not an instant: '${value}' (write 2026-03-29 or 2026-03-29T10:00:00Z)`);

  return ms;
}

export function periodTypeFlag(value: string): PeriodType {
  if (!isPeriodType(value)) throw new Error(`not a period type: '${value}' (hour, day or week)`);

  return value;
}

export function choiceFlag<T extends string>(choices: readonly T[]): (value: string) => T {
  return (value: string): T => {
    if (!(choices as readonly string[]).includes(value))
      throw new Error(`'${value}' is not one of ${choices.join(', ')}`);

    return value as T;
  };
}

/** The data directory: the flag, else SPEEDLAYER_DATA_DIR, else ./speedlayer-data. */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.SPEEDLAYER_DATA_DIR ?? 'speedlayer-data';
}

/** The PostgreSQL URL: the flag, else SPEEDLAYER_POSTGRES_URL, else none (embedded store). */
export function defaultPostgresUrl(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const url = env.SPEEDLAYER_POSTGRES_URL;

  return url === undefined || url === '' ? undefined : url;
}
