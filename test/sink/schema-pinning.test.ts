/**
 * On a PostgreSQL server with several speedlayer schemas, the database's own
 * guards (filing checks, append-only history) act on the schema they belong
 * to, whatever search_path the session has.
 */
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';

import { Warehouse } from '../../src/sink/warehouse.js';
import { postgresTestUrl } from '../support/postgres.js';

const url = postgresTestUrl();
const day = Date.UTC(2026, 2, 29);
const schemas = [0, 1].map(() => `sl_pin_${Math.random().toString(36).slice(2, 10)}`);

afterAll(async () => {
  if (url === undefined) return;
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  for (const schema of schemas) await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await client.end();
});

describe.skipIf(url === undefined)('warehouse guards on a shared server', () => {
  it('check filings against their own schema when search_path names another', async () => {
    const [a, b] = schemas as [string, string];
    for (const [schema, users] of [
      [a, 1],
      [b, 5],
    ] as const) {
      const w = await Warehouse.open({ postgresUrl: url as string, schema });
      const fence = { ringEpoch: 0, fencingToken: 1 };
      await w.claimFence(fence);
      const version = {
        periodType: 'day',
        periodStartMs: day,
        version: 1,
        distinctUsers: users,
        status: 'final',
        reason: 'closed',
        watermarkMs: day + 86_400_000,
      } as const;
      await w.publish({ versions: [version], provisional: [] }, fence);
      await w.close();
    }

    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      await client.query(`SET search_path = ${b}`);
      // Schema a has day v1 = 1; a filing claiming 5 (schema b's number) must be refused.
      await expect(
        client.query(
          `INSERT INTO ${a}.filing (period_type, period_start, version, distinct_users, filed_by) VALUES ('day', '2026-03-29T00:00:00Z', 1, 5, 'mallory')`,
        ),
      ).rejects.toThrow();
      await expect(client.query(`DELETE FROM ${a}.period_version`)).rejects.toThrow('append-only');
      const ok = await client.query(
        `INSERT INTO ${a}.filing (period_type, period_start, version, distinct_users, filed_by) VALUES ('day', '2026-03-29T00:00:00Z', 1, 1, 'finance') RETURNING distinct_users`,
      );
      expect(ok.rows).toEqual([{ distinct_users: '1' }]);
    } finally {
      await client.end();
    }
  });
});
