/** The message of a replay whose every record was rejected names the likely cause. */
import { describe, expect, it } from 'vitest';

import { allRejected } from '../../src/cli/replay-command.js';

describe('allRejected', () => {
  it('points at the clock when every reject is about time, at the fields otherwise', () => {
    expect(allRejected({ too_old: 10_000 }, 'see x')).toBe(
      'every record was rejected (too_old); see x: the event times are behind the watermark by more than the restatement horizon, or ahead of the clock: a live (wall-clock) node takes only recent events',
    );
    expect(allRejected({ too_old: 3, future: 0, invalid_user_id: 2 }, 'see x')).toBe(
      'every record was rejected (too_old, invalid_user_id); see x: wrong --format or fields?',
    );
  });
});
