/**
 * The warehouse schema as an ordered list of migrations. They are applied at start, in
 * one transaction, under an advisory lock, and recorded in `schema_migrations`; a
 * migration that is recorded is never run again, so its SQL must never change.
 */
import type { SqlClient } from './sql-client.js';

/** One step of the schema. `id` sorts in the order the steps run. */
export interface Migration {
  readonly id: string;
  readonly sql: string;
}

const PERIOD_TYPE_CHECK = `CHECK (period_type IN ('hour', 'day', 'week'))`;

const PERIODS = `
CREATE TABLE period_current (
  period_type text NOT NULL ${PERIOD_TYPE_CHECK},
  period_start timestamptz NOT NULL,
  distinct_users bigint NOT NULL CHECK (distinct_users >= 0),
  version integer NOT NULL CHECK (version >= 0),
  status text NOT NULL CHECK (status IN ('provisional', 'final', 'restated')),
  computed_at timestamptz NOT NULL DEFAULT now(),
  watermark timestamptz NOT NULL,
  ring_epoch bigint NOT NULL,
  fencing_token bigint NOT NULL,
  PRIMARY KEY (period_type, period_start),
  CHECK ((version = 0) = (status = 'provisional'))
);

CREATE TABLE period_version (
  period_type text NOT NULL ${PERIOD_TYPE_CHECK},
  period_start timestamptz NOT NULL,
  version integer NOT NULL CHECK (version >= 1),
  distinct_users bigint NOT NULL CHECK (distinct_users >= 0),
  status text NOT NULL CHECK (status IN ('final', 'restated')),
  reason text NOT NULL,
  written_at timestamptz NOT NULL DEFAULT now(),
  watermark timestamptz NOT NULL,
  ring_epoch bigint NOT NULL,
  fencing_token bigint NOT NULL,
  PRIMARY KEY (period_type, period_start, version),
  CHECK ((version = 1) = (status = 'final'))
);

CREATE FUNCTION refuse_version_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'period versions are append-only: % on period_version refused', TG_OP;
END
$$;

CREATE TRIGGER period_version_append_only
  BEFORE UPDATE OR DELETE ON period_version
  FOR EACH ROW EXECUTE FUNCTION refuse_version_change();

CREATE TRIGGER period_version_no_truncate
  BEFORE TRUNCATE ON period_version
  FOR EACH STATEMENT EXECUTE FUNCTION refuse_version_change();
`;

const FILINGS = `
CREATE TABLE filing (
  filing_id bigserial PRIMARY KEY,
  period_type text NOT NULL,
  period_start timestamptz NOT NULL,
  version integer NOT NULL,
  distinct_users bigint NOT NULL,
  filed_by text NOT NULL CHECK (filed_by <> ''),
  note text,
  filed_at timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (period_type, period_start, version)
    REFERENCES period_version (period_type, period_start, version)
);

CREATE FUNCTION refuse_filing_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'filings are immutable: % on filing refused', TG_OP;
END
$$;

CREATE TRIGGER filing_immutable
  BEFORE UPDATE OR DELETE ON filing
  FOR EACH ROW EXECUTE FUNCTION refuse_filing_change();

CREATE TRIGGER filing_no_truncate
  BEFORE TRUNCATE ON filing
  FOR EACH STATEMENT EXECUTE FUNCTION refuse_filing_change();

-- The number filed must be the number of the version filed, not one typed in beside it.
CREATE FUNCTION check_filing_number() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  published bigint;
BEGIN
  SELECT distinct_users INTO published
  FROM period_version
  WHERE period_type = NEW.period_type
    AND period_start = NEW.period_start
    AND version = NEW.version;

  -- A version that does not exist is left to the foreign key to refuse.
  IF published <> NEW.distinct_users THEN
    RAISE EXCEPTION 'filing of % % version % says % users, the version says %',
      NEW.period_type, NEW.period_start, NEW.version, NEW.distinct_users, published;
  END IF;

  RETURN NEW;
END
$$;

CREATE TRIGGER filing_matches_version
  BEFORE INSERT ON filing
  FOR EACH ROW EXECUTE FUNCTION check_filing_number();
`;

const DEAD_LETTERS = `
CREATE TABLE dead_letter (
  id bigserial PRIMARY KEY,
  source text NOT NULL,
  line bigint NOT NULL,
  reason text NOT NULL
    CHECK (reason IN ('invalid_user_id', 'invalid_time', 'malformed', 'future', 'too_old')),
  detail text NOT NULL,
  raw text NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (source, line)
);
`;

// Fencing. writer_fence holds the highest fencing token any coordinator has claimed.
// Every write to period_version and period_current is checked against it by statement
// triggers, so a deposed leader is refused by the database whatever SQL it sends. The
// check reads the fence row FOR SHARE: a claim (an UPDATE of that row) waits for every
// publish that has already passed the check, and a publish that starts after a claim
// sees the claimed token. Once claimFence returns, no older token can commit a row.
const WRITER_FENCE = `
CREATE TABLE writer_fence (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  fencing_token bigint NOT NULL,
  ring_epoch bigint NOT NULL,
  claimed_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO writer_fence (fencing_token, ring_epoch) VALUES (0, 0);

CREATE FUNCTION guard_writer_fence() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP <> 'UPDATE' THEN
    RAISE EXCEPTION 'the writer fence row cannot be removed: % refused', TG_OP;
  END IF;

  IF NEW.fencing_token < OLD.fencing_token THEN
    RAISE EXCEPTION 'the fencing token cannot be lowered from % to %',
      OLD.fencing_token, NEW.fencing_token;
  END IF;

  RETURN NEW;
END
$$;

CREATE TRIGGER writer_fence_only_rises
  BEFORE UPDATE OR DELETE ON writer_fence
  FOR EACH ROW EXECUTE FUNCTION guard_writer_fence();

CREATE TRIGGER writer_fence_no_truncate
  BEFORE TRUNCATE ON writer_fence
  FOR EACH STATEMENT EXECUTE FUNCTION guard_writer_fence();

-- Raises unless token is at least the claimed one; holds the fence row until commit.
CREATE FUNCTION assert_writer_fence(token bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  claimed bigint;
BEGIN
  SELECT fencing_token INTO claimed FROM writer_fence FOR SHARE;

  IF token < claimed THEN
    RAISE EXCEPTION 'stale fencing token %: the writer fence is at %', token, claimed;
  END IF;
END
$$;

CREATE FUNCTION check_written_fence() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  lowest bigint;
BEGIN
  SELECT min(fencing_token) INTO lowest FROM written_rows;

  IF lowest IS NOT NULL THEN
    PERFORM assert_writer_fence(lowest);
  END IF;

  RETURN NULL;
END
$$;

CREATE TRIGGER period_version_fenced
  AFTER INSERT ON period_version
  REFERENCING NEW TABLE AS written_rows
  FOR EACH STATEMENT EXECUTE FUNCTION check_written_fence();

CREATE TRIGGER period_current_fenced_insert
  AFTER INSERT ON period_current
  REFERENCING NEW TABLE AS written_rows
  FOR EACH STATEMENT EXECUTE FUNCTION check_written_fence();

CREATE TRIGGER period_current_fenced_update
  AFTER UPDATE ON period_current
  REFERENCING NEW TABLE AS written_rows
  FOR EACH STATEMENT EXECUTE FUNCTION check_written_fence();
`;

// WatchVersions streams poll for the versions written since an instant.
const VERSIONS_BY_WRITTEN_AT = `
CREATE INDEX period_version_written_at ON period_version (written_at);
`;

// A dead letter is one rejected event: (source, line) and what was read there. Keyed by
// (source, line) alone, a client that reused a batch id or a line number for other events
// lost the later rejects without a word; a resent batch (the same events) still keeps one
// row per event.
const DEAD_LETTER_BY_CONTENT = `
ALTER TABLE dead_letter DROP CONSTRAINT dead_letter_source_line_key;
CREATE UNIQUE INDEX dead_letter_event ON dead_letter (source, line, md5(raw));
`;

/** Every migration, in the order it runs. Append only; never edit one that has shipped. */
// Trigger functions resolve table names through search_path. Pin each to the
// schema it was created in, so that a session with another search_path can
// neither bypass nor confuse them.
const PIN_FUNCTION_SCHEMA = `
ALTER FUNCTION refuse_version_change() SET search_path FROM CURRENT;
ALTER FUNCTION refuse_filing_change() SET search_path FROM CURRENT;
ALTER FUNCTION check_filing_number() SET search_path FROM CURRENT;
ALTER FUNCTION guard_writer_fence() SET search_path FROM CURRENT;
ALTER FUNCTION assert_writer_fence(bigint) SET search_path FROM CURRENT;
ALTER FUNCTION check_written_fence() SET search_path FROM CURRENT;
`;

export const MIGRATIONS: readonly Migration[] = [
  { id: '0001_periods', sql: PERIODS },
  { id: '0002_filings', sql: FILINGS },
  { id: '0003_dead_letters', sql: DEAD_LETTERS },
  { id: '0004_writer_fence', sql: WRITER_FENCE },
  { id: '0005_pin_function_schema', sql: PIN_FUNCTION_SCHEMA },
  { id: '0006_versions_by_written_at', sql: VERSIONS_BY_WRITTEN_AT },
  { id: '0007_dead_letter_by_content', sql: DEAD_LETTER_BY_CONTENT },
];

/**
 * Applies the migrations that `client`'s database has not recorded yet and returns their
 * ids. Safe to run from several processes at once: an advisory lock, keyed by the current
 * schema, lets one of them migrate while the others wait and then find nothing to do.
 */
export async function applyMigrations(
  client: SqlClient,
  migrations: readonly Migration[] = MIGRATIONS,
): Promise<string[]> {
  return client.transaction(async (tx) => {
    await tx.query(
      `SELECT pg_advisory_xact_lock(hashtext('speedlayer.migrations.' || current_schema()))`,
    );
    await tx.exec(`
      CREATE TABLE IF NOT EXISTS schema_migrations (
        id text PRIMARY KEY,
        applied_at timestamptz NOT NULL DEFAULT now()
      )
    `);

    const rows = await tx.query<{ id: string }>('SELECT id FROM schema_migrations');
    const recorded = new Set(rows.map((row) => row.id));
    const known = new Set(migrations.map((migration) => migration.id));
    const unknown = [...recorded].filter((id) => !known.has(id));
    if (unknown.length > 0) {
      throw new Error(
        `the warehouse has migrations this build does not know (${unknown.join(', ')}): it was created by a newer speedlayer`,
      );
    }

    const applied: string[] = [];
    for (const migration of migrations) {
      if (recorded.has(migration.id)) {
        continue;
      }

      await tx.exec(migration.sql);
      await tx.query('INSERT INTO schema_migrations (id) VALUES ($1)', [migration.id]);
      applied.push(migration.id);
    }

    return applied;
  });
}
