/**
 * The shared cases from real failure reports (test/fixtures/cases/, not `timezones/`),
 * each replayed through a cluster of real processes (etcd, `speedlayer shard` processes,
 * two coordinators, PostgreSQL) and through the single process, on the same harness clock.
 * Skipped without SPEEDLAYER_TEST_POSTGRES_URL. One scenario per case file:
 *
 * - the cluster's answers are the case's `expected` (current rows, versions, rejects, and
 *   `final_by` on the harness clock: BH-01 with four idle-prone shards);
 * - they are the single process's answers too: every current row, every period's versions
 *   and every reject count;
 * - BH-21 performs its controls on real processes: the owner of u2 SIGKILLed and restarted,
 *   then every shard (the ingest node included) SIGKILLed and restarted, with the
 *   redeliveries sent again until acknowledged.
 *
 * Each case gets a cluster of its own, configured from its `config` (allowed lateness,
 * horizon and future skew are flags of the processes), with its own etcd, data directories
 * and schema, so that no case sees another's rows or watermarks.
 */
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Warehouse } from '../../src/sink/index.js';
import { checkCase, compareRuns, loadCases, replayCase } from '../support/case-harness.js';
import { replayCaseOnCluster } from '../support/cluster-case-harness.js';
import { postgresTestUrl } from '../support/postgres.js';

const CASES = new URL('../fixtures/cases/', import.meta.url);
const postgresUrl = postgresTestUrl();

/** A cluster starts in seconds; the generated case sends about 494k events twice. */
const TIMEOUT_MS = 240_000;
const GENERATED_TIMEOUT_MS = 900_000;

const cases = loadCases(CASES);

describe.skipIf(postgresUrl === undefined)('shared cases on a cluster', () => {
  let root = '';

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'speedlayer-cluster-cases-'));
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

    it(`${sharedCase.id} on a cluster: ${sharedCase.title}`, { timeout }, async () => {
      const dataDir = join(root, sharedCase.id);
      await cp(join(root, 'template'), dataDir, { recursive: true });
      const warehouse = await Warehouse.open({ dataDir });
      let single;
      try {
        single = await replayCase(sharedCase, { warehouse, stateDir: join(dataDir, 'state') });
      } finally {
        await warehouse.close();
      }

      const cluster = await replayCaseOnCluster(sharedCase, {
        postgresUrl: postgresUrl as string,
      });

      expect(checkCase(sharedCase, cluster.run)).toEqual([]);
      expect(compareRuns(single, cluster.run, ['single process', 'cluster'])).toEqual([]);
      expect(cluster.run.records).toBe(single.records);

      // The controls acted on real processes: each killed shard died of the signal it was
      // sent, and came back.
      const kills = cluster.actions.filter((a) => a.includes(' sent '));
      const restarts = cluster.actions.filter((a) => a.endsWith(' restarted'));
      for (const kill of kills) expect(kill).toMatch(/^shard-\d+ sent (SIG\w+): (exit code 0|\1)$/);
      expect(restarts).toHaveLength(kills.length);
      expect(kills.length > 0).toBe((sharedCase.controls ?? []).length > 0);
    });
  }
});
