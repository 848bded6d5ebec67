/**
 * The SQL-client port of the warehouse and its two adapters: an embedded PGlite (WASM
 * PostgreSQL) on a data directory, and a PostgreSQL server reached by URL. The warehouse
 * sends the same SQL to both.
 */
import { mkdir } from 'node:fs/promises';

import lockfile from 'proper-lockfile';
import { PGlite, type Transaction } from '@electric-sql/pglite';
import pg from 'pg';

/** Which adapter a {@link SqlClient} is. */
export type SqlClientKind = 'pglite' | 'postgres';

/**
 * What the warehouse needs from a PostgreSQL connection. Every session runs with
 * `TimeZone = 'UTC'`.
 */
export interface SqlClient {
  readonly kind: SqlClientKind;

  /** Runs one statement with `$1 .. $n` parameters and returns its rows. */
  query<R>(sql: string, params?: unknown[]): Promise<R[]>;

  /**
   * Runs `fn` in one transaction: committed when `fn` resolves, rolled back when it
   * throws. Calling `transaction` on the client handed to `fn` joins the outer transaction.
   */
  transaction<T>(fn: (tx: SqlClient) => Promise<T>): Promise<T>;

  /** Runs a script of one or more statements without parameters. */
  exec(sqlScript: string): Promise<void>;

  /** Releases the connection(s). A transaction client refuses; close its parent. */
  close(): Promise<void>;
}

/** Opens an in-memory PGlite instead of a data directory. */
export const PGLITE_MEMORY = 'memory://';

/** Embedded PostgreSQL (PGlite) in one data directory, or in memory for {@link PGLITE_MEMORY}. */
export class PgliteClient implements SqlClient {
  readonly kind = 'pglite';

  private constructor(
    private readonly db: PGlite,
    private readonly unlock: () => Promise<void>,
  ) {}

  /**
   * Opens (creating it when missing) the PGlite database in `dataDir`. Only one process
   * may open a data directory at a time: a lock file refuses a second one.
   */
  static async open(dataDir: string): Promise<PgliteClient> {
    let unlock = async (): Promise<void> => {};
    if (dataDir !== PGLITE_MEMORY) {
      await mkdir(dataDir, { recursive: true });
      unlock = await lockfile
        .lock(dataDir, {
          // A process that died leaves its lock; it goes stale after 5 s and is taken over.
          stale: 5000,
          update: 2000,
          retries: { retries: 8, minTimeout: 500, maxTimeout: 1000 },
        })
        .catch((err: unknown) => {
          const code = (err as NodeJS.ErrnoException).code;
          throw code === 'ELOCKED'
            ? new Error(
                `[SL-STORE-001] the embedded store in ${dataDir} is in use by another speedlayer process; ` +
                  'one process at a time may open a data directory',
                { cause: err },
              )
            : err;
        });
    }

    try {
      const db = await PGlite.create(dataDir);
      await db.exec(`SET TimeZone = 'UTC'`);

      return new PgliteClient(db, unlock);
    } catch (err) {
      await unlock();
      throw err;
    }
  }

  async query<R>(sql: string, params?: unknown[]): Promise<R[]> {
    const result = await this.db.query<R>(sql, params);

    return result.rows;
  }

  transaction<T>(fn: (tx: SqlClient) => Promise<T>): Promise<T> {
    return this.db.transaction((tx) => fn(new PgliteTransactionClient(tx)));
  }

  async exec(sqlScript: string): Promise<void> {
    await this.db.exec(sqlScript);
  }

  async close(): Promise<void> {
    if (!this.db.closed) {
      await this.db.close();
      await this.unlock();
    }
  }
}

class PgliteTransactionClient implements SqlClient {
  readonly kind = 'pglite';

  constructor(private readonly tx: Transaction) {}

  async query<R>(sql: string, params?: unknown[]): Promise<R[]> {
    const result = await this.tx.query<R>(sql, params);

    return result.rows;
  }

  transaction<T>(fn: (tx: SqlClient) => Promise<T>): Promise<T> {
    return fn(this);
  }

  async exec(sqlScript: string): Promise<void> {
    await this.tx.exec(sqlScript);
  }

  close(): Promise<void> {
    return Promise.reject(new Error('a transaction client cannot be closed; close its parent'));
  }
}

/** Options of {@link PostgresClient.open}. */
export interface PostgresClientOptions {
  /** Connection URL, e.g. `postgres://speedlayer@db:5432/speedlayer`. */
  readonly url: string;
  /**
   * Schema that holds the warehouse tables: created when missing and set as the
   * `search_path` of every pooled connection. Lowercase letters, digits and `_`.
   * @default the server's search_path (normally `public`)
   */
  readonly schema?: string;
  /** @default 10 */
  readonly maxConnections?: number;
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** A PostgreSQL server through a `pg` pool. */
export class PostgresClient implements SqlClient {
  readonly kind = 'postgres';

  private constructor(private readonly pool: pg.Pool) {}

  /** Connects a pool to `options.url`, creating `options.schema` when it is missing. */
  static async open(options: PostgresClientOptions): Promise<PostgresClient> {
    const { schema } = options;
    if (schema !== undefined && !SCHEMA_NAME.test(schema)) {
      throw new Error(`schema name must match ${SCHEMA_NAME.source}: ${JSON.stringify(schema)}`);
    }

    // Startup options apply to each connection before its first query, unlike a SET
    // issued from the pool's 'connect' event, which races the caller's first query.
    const settings = ['-c TimeZone=UTC'];
    if (schema !== undefined) {
      settings.push(`-c search_path=${schema}`);
    }

    const pool = new pg.Pool({
      connectionString: options.url,
      options: settings.join(' '),
      max: options.maxConnections ?? 10,
    });

    // An idle connection that the server drops emits 'error' on the pool; without a
    // listener that would crash the process. The next query opens a fresh connection.
    pool.on('error', () => undefined);

    const client = new PostgresClient(pool);
    if (schema !== undefined) {
      await client.createSchema(schema).catch(async (error: unknown) => {
        await pool.end();
        throw error;
      });
    }

    return client;
  }

  async query<R>(sql: string, params?: unknown[]): Promise<R[]> {
    const result = await this.pool.query(sql, params);

    return result.rows as R[];
  }

  async transaction<T>(fn: (tx: SqlClient) => Promise<T>): Promise<T> {
    const connection = await this.pool.connect();
    let broken: Error | undefined;

    try {
      await connection.query('BEGIN');
      const result = await fn(new PostgresTransactionClient(connection));
      await connection.query('COMMIT');

      return result;
    } catch (error) {
      await connection.query('ROLLBACK').catch((rollbackError: unknown) => {
        // A connection that cannot roll back is not returned to the pool for reuse.
        broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
      });
      throw error;
    } finally {
      connection.release(broken);
    }
  }

  async exec(sqlScript: string): Promise<void> {
    await this.pool.query(sqlScript);
  }

  async close(): Promise<void> {
    if (!this.pool.ended) {
      await this.pool.end();
    }
  }

  private async createSchema(schema: string): Promise<void> {
    try {
      await this.pool.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    } catch (error) {
      // Two processes creating the schema at once: one of them loses on the catalog's
      // unique index (23505) even with IF NOT EXISTS; the schema exists either way.
      if (!(error instanceof pg.DatabaseError && error.code === '23505')) {
        throw error;
      }
    }
  }
}

class PostgresTransactionClient implements SqlClient {
  readonly kind = 'postgres';

  constructor(private readonly connection: pg.PoolClient) {}

  async query<R>(sql: string, params?: unknown[]): Promise<R[]> {
    const result = await this.connection.query(sql, params);

    return result.rows as R[];
  }

  transaction<T>(fn: (tx: SqlClient) => Promise<T>): Promise<T> {
    return fn(this);
  }

  async exec(sqlScript: string): Promise<void> {
    await this.connection.query(sqlScript);
  }

  close(): Promise<void> {
    return Promise.reject(new Error('a transaction client cannot be closed; close its parent'));
  }
}
