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
