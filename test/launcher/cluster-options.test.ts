/**
 * The local launcher's options: a log level that hides the info lines the launcher waits
 * for ('waiting for ring assignment', 'shard serving', 'leadership acquired') is refused
 * at once, instead of a launch that waits out its ready timeout and fails with 'no such
 * line'.
 */
import { describe, expect, it } from 'vitest';

import { resolveLocalClusterOptions } from '../../cluster/cluster-options.js';

const POSTGRES = 'postgres://postgres@127.0.0.1:5432/test';

describe('local cluster options', () => {
  it('takes info, debug and trace, and info by default', () => {
    expect(resolveLocalClusterOptions({ postgresUrl: POSTGRES }, {}).logLevel).toBe('info');
    for (const level of ['info', 'debug', 'trace']) {
      expect(
        resolveLocalClusterOptions({ postgresUrl: POSTGRES, logLevel: level }, {}).logLevel,
      ).toBe(level);
    }
  });

  it('refuses a level that hides the lines the launcher waits for', () => {
    for (const level of ['warn', 'error', 'fatal', 'silent', 'loud']) {
      expect(() =>
        resolveLocalClusterOptions({ postgresUrl: POSTGRES, logLevel: level }, {}),
      ).toThrow(
        `logLevel: '${level}' is not one of info, debug, trace (the launcher waits for each part's info lines)`,
      );
    }
  });
});
