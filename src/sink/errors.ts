/** Failures of the warehouse that a caller acts on. */
import { describePeriod, type Period } from '../periods/index.js';

/** Why a period cannot be filed yet. */
export type NotPublishedWhy = 'it has no number at all' | 'it is still provisional';

/**
 * A filing refused because the period has no published version: only a final or
 * restated number can be reported outside. The code is the one the Query service
 * answers with for the same refusal, so the message reads alike embedded and remote.
 */
export class NotPublishedError extends Error {
  readonly code = 'SL-QUERY-002';

  constructor(
    readonly period: Period,
    readonly why: NotPublishedWhy,
  ) {
    super(`[SL-QUERY-002] cannot file ${describePeriod(period)}: no published version (${why})`);
    this.name = 'NotPublishedError';
  }
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Longest `filed_by`, in UTF-8 bytes. */
export const MAX_FILED_BY_BYTES = 256;
/** Longest `note`, in UTF-8 bytes: a filing is listed with every other one in one reply. */
export const MAX_NOTE_BYTES = 4096;

/**
 * What is wrong with a filing's `filed_by` or `note`, if anything: empty (filed_by only),
 * longer than its limit, a NUL character (PostgreSQL text cannot hold one), or text that
 * is not well-formed Unicode (a lone surrogate). Filings never change, so what is refused
 * here could never be corrected afterwards. `name` is how the caller calls the field.
 */
export function filingTextProblem(
  field: 'filed_by' | 'note',
  text: string,
  name: string = field,
): string | undefined {
  if (field === 'filed_by' && text.trim() === '') return `${name} is empty`;
  const limit = field === 'filed_by' ? MAX_FILED_BY_BYTES : MAX_NOTE_BYTES;
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > limit) return `${name} is ${bytes} bytes long, above the limit of ${limit}`;
  if (text.includes('\u0000')) return `${name} holds a NUL character`;
  if (LONE_SURROGATE.test(text)) return `${name} is not well-formed Unicode (a lone surrogate)`;

  return undefined;
}

/** A filing refused for its `filed_by` or `note` (see {@link filingTextProblem}). */
export class InvalidFilingError extends Error {
  readonly code = 'SL-QUERY-001';

  constructor(
    readonly period: Period,
    readonly problem: string,
  ) {
    super(`[SL-QUERY-001] cannot file ${describePeriod(period)}: ${problem}`);
    this.name = 'InvalidFilingError';
  }
}

/**
 * A fence claim refused because the database's writer fence already holds a higher
 * token: a newer writer claimed it. In a cluster that is a newer leader (this one was
 * deposed), or, when etcd knows no such leader, an etcd rebuilt from nothing that
 * restarted its revisions below the fence. The embedded node, which claims token 1,
 * meets it on a database a cluster has written to. `advice` says what to do, if known.
 * The message carries 'stale fencing token' like the database's refusal of a write.
 */
export class StaleFenceError extends Error {
  readonly code = 'SL-SINK-001';

  constructor(
    readonly fencingToken: number,
    readonly heldToken: number,
    advice?: string,
  ) {
    super(
      `[SL-SINK-001] stale fencing token ${fencingToken}: the writer fence is at ${heldToken}, ` +
        `claimed by a newer writer${advice === undefined ? '' : `; ${advice}`}`,
    );
    this.name = 'StaleFenceError';
  }
}
