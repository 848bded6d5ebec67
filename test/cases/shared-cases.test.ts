/**
 * The shared cases from real failure reports (copied into `test/fixtures/cases/`;
 * not `timezones/`, which needs reporting zones the engine does not have yet), each replayed
 * through the single-process engine as the cases README prescribes. Scenarios, one
 * per case file, read when the file is collected, so that a new case file is a new test:
 *
 * - BH-01 idle shards: version 1 of each period published on time after input stops;
 * - BH-02 a late event restates its hour and day, never the day it arrived in;
 * - BH-06 epoch units: too_old and future rejections, no 1970 or far-future period;
 * - BH-07 ISO weeks across year ends; BH-14 half-open periods and truncated fractions;
 * - BH-15 invalid user ids; BH-16 user-id canonical text; BH-18 distinct users, not rows;
 * - BH-19 non-additive periods; BH-21 crashes, restarts and redelivery;
 * - BH-22 exact counts at 7,000, 10,000 and 247,010 users (about 494k generated events).
 *
 * Each case gets its own warehouse, copied from one migrated template (creating a PGlite
 * database takes seconds), and its own LevelDB directory.
 */
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Warehouse } from '../../src/sink/index.js';
import { checkCase, loadCases, replayCase } from '../support/case-harness.js';

/** `shared/` lies beside the repository, here and in CI. */
const CASES = new URL('../fixtures/cases/', import.meta.url);

/** Generated cases send hundreds of thousands of events. */
const TIMEOUT_MS = 120_000;
const GENERATED_TIMEOUT_MS = 600_000;

const cases = loadCases(CASES);

describe('shared cases', () => {
  let root = '';

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'speedlayer-cases-'));
    const template = await Warehouse.open({ dataDir: join(root, 'template') });
    await template.close();
  });

  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('finds the case files', () => {
    expect(cases.length).toBeGreaterThan(0);
  });

  for (const sharedCase of cases) {
    const timeout = sharedCase.generate === undefined ? TIMEOUT_MS : GENERATED_TIMEOUT_MS;

    it(`${sharedCase.id}: ${sharedCase.title}`, { timeout }, async () => {
      const dataDir = join(root, sharedCase.id);
      await cp(join(root, 'template'), dataDir, { recursive: true });
      const warehouse = await Warehouse.open({ dataDir });

      try {
        const run = await replayCase(sharedCase, { warehouse, stateDir: join(dataDir, 'state') });

        expect(checkCase(sharedCase, run)).toEqual([]);
      } finally {
        await warehouse.close();
      }
    });
  }
});
