/**
 * The delivery cursor of WatchVersions, on hand-made history polls. Scenarios:
 * - without a start instant the first poll is a baseline: nothing delivered, later rows are;
 * - with a start instant the rows written at or after it are replayed, then new ones;
 * - a row seen again in later polls is never delivered twice;
 * - rows written in the same millisecond are delivered by type, start and version;
 * - a row that commits late with an earlier written_at is delivered inside the reorder
 *   window and skipped outside it (the documented shortcoming).
 */
import { describe, expect, it } from 'vitest';

import { DAY_MS, HOUR_MS } from '../../src/periods/index.js';
import type { VersionRow } from '../../src/sink/index.js';
import { VersionCursor } from '../../src/transport/version-cursor.js';

const DAY = Date.UTC(2026, 2, 23);
const T0 = Date.UTC(2026, 3, 1, 12);

function row(overrides: Partial<VersionRow> = {}): VersionRow {
  return {
    periodType: 'day',
    periodStartMs: DAY,
    version: 1,
    distinctUsers: 100,
    status: 'final',
    reason: 'closed',
    writtenAtMs: T0,
    watermarkMs: DAY + DAY_MS,
    ringEpoch: 1,
    fencingToken: 1,
    ...overrides,
  };
}

const label = (rows: readonly VersionRow[]): string[] =>
  rows.map((r) => `${r.periodType}:${r.periodStartMs - DAY}:v${r.version}`);

describe('VersionCursor', () => {
  it('delivers nothing on the baseline poll, then each later row once', () => {
    const cursor = new VersionCursor({ reorderWindowMs: 0 });
    const old = row();
    const v2 = row({ version: 2, status: 'restated', writtenAtMs: T0 + 10 });

    expect(cursor.advance([old])).toEqual([]);
    expect(cursor.advance([old, v2])).toEqual([v2]);
    expect(cursor.advance([old, v2])).toEqual([]);
  });

  it('replays the rows written at or after the start instant, then the new ones', () => {
    const cursor = new VersionCursor({ sinceWrittenAtMs: T0 + 5, reorderWindowMs: 0 });
    const before = row({ writtenAtMs: T0 });
    const at = row({ periodStartMs: DAY + DAY_MS, writtenAtMs: T0 + 5 });
    const later = row({ periodStartMs: DAY + 2 * DAY_MS, writtenAtMs: T0 + 9 });

    expect(cursor.advance([before, at])).toEqual([at]);
    expect(cursor.advance([before, at, later])).toEqual([later]);
  });

  it('orders rows of one millisecond by type, start and version, and delivers each once', () => {
    const cursor = new VersionCursor({ reorderWindowMs: 0 });
    cursor.advance([]);
    const batch = [
      row({ periodType: 'week', periodStartMs: DAY }),
      row({ periodStartMs: DAY + DAY_MS }),
      row({ version: 2, status: 'restated' }),
      row({ periodType: 'hour', periodStartMs: DAY + HOUR_MS }),
      row(),
    ];

    expect(label(cursor.advance(batch))).toEqual([
      'hour:3600000:v1',
      'day:0:v1',
      'day:0:v2',
      'day:86400000:v1',
      'week:0:v1',
    ]);
    // A row of the same millisecond that commits after the others still goes out, once.
    const straggler = row({ periodType: 'hour', periodStartMs: DAY });

    expect(cursor.advance([...batch, straggler])).toEqual([straggler]);
    expect(cursor.advance([...batch, straggler])).toEqual([]);
  });

  it('delivers a version that commits late inside the reorder window, and not outside it', () => {
    const cursor = new VersionCursor({ reorderWindowMs: 1_000 });
    cursor.advance([]);
    const newer = row({ periodStartMs: DAY + DAY_MS, writtenAtMs: T0 + 5_000 });
    const lateInside = row({ writtenAtMs: T0 + 4_500 });
    const lateOutside = row({ periodStartMs: DAY + 2 * DAY_MS, writtenAtMs: T0 + 3_000 });

    expect(cursor.advance([newer])).toEqual([newer]);
    expect(cursor.advance([newer, lateInside, lateOutside])).toEqual([lateInside]);
    expect(cursor.advance([newer, lateInside, lateOutside])).toEqual([]);
    expect(cursor.horizonMs).toBe(T0 + 4_000);
  });
});
