/**
 * Where an integration test's warehouse lives: embedded PGlite in a temp directory, and
 * a real PostgreSQL server (a fresh schema per place, dropped after the file) when
 * SPEEDLAYER_TEST_POSTGRES_URL is set. Each place comes with the CLI flags that open it.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import pg from 'pg';

import type { WarehouseOptions } from '../../src/sink/index.js';
import { postgresTestUrl } from './postgres.js';

/** Where one warehouse lives, and the CLI flags that open it. */
export interface WarehousePlace {
  readonly options: WarehouseOptions;
  readonly flags: readonly string[];
}

export interface WarehouseBackend {
  readonly kind: 'pglite' | 'postgres';
  /** A place no warehouse has been opened in yet. */
  place(): Promise<WarehousePlace>;
  /** Removes every place this backend handed out. */
  tearDown(): Promise<void>;
}

/** PGlite always; PostgreSQL too when the test server's URL is set. */
export function warehouseBackends(tempPrefix: string): WarehouseBackend[] {
  const url = postgresTestUrl();
  const backends = [pgliteBackend(tempPrefix)];
  if (url !== undefined) backends.push(postgresBackend(url));

  return backends;
}

function pgliteBackend(tempPrefix: string): WarehouseBackend {
  let root: string | undefined;
  let places = 0;

  return {
    kind: 'pglite',
    async place() {
      root ??= await mkdtemp(path.join(tmpdir(), tempPrefix));
      const dataDir = path.join(root, `place-${++places}`);

      return { options: { dataDir }, flags: ['--data-dir', dataDir] };
    },
    async tearDown() {
      if (root !== undefined) await rm(root, { recursive: true, force: true });
    },
  };
}

function postgresBackend(url: string): WarehouseBackend {
  const prefix = `speedlayer_test_${randomBytes(4).toString('hex')}`;
  let places = 0;

  return {
    kind: 'postgres',
    place() {
      const schema = `${prefix}_${++places}`;

      return Promise.resolve({
        options: { postgresUrl: url, schema },
        flags: ['--postgres', url, '--postgres-schema', schema],
      });
    },
    async tearDown() {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        for (let place = 1; place <= places; place++) {
          await client.query(`DROP SCHEMA IF EXISTS ${prefix}_${place} CASCADE`);
        }
      } finally {
        await client.end();
      }
    },
  };
}
