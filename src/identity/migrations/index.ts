import type pg from "pg";
import type { Logger } from "../../logger.js";

/**
 * The PostgreSQL schema of the self-service mappings, as numbered steps applied in order at start.
 *
 * Hand-written rather than a migration library: the schema is two tables, the gateway must migrate
 * in-process at start (no separate CLI step to forget in a deployment), and what a library adds
 * (down-migrations, file loading, a CLI) is not needed. What it must get right is done here: one
 * transaction per start, an advisory lock so that instances starting together apply each step
 * once, and a table of applied versions. Steps are append-only: never edit a released one.
 */
export interface Migration {
  version: number;
  name: string;
  statements: readonly string[];
}

export const MAPPING_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "identity mappings with reservations and ownership history",
    statements: [
      `CREATE TABLE acsgw_identity_mapping (
        id bigserial PRIMARY KEY,
        -- the ACS resource (hash of its endpoint host): a caller maps to one identity per resource
        resource text NOT NULL,
        subject_key text NOT NULL,
        user_id text,
        -- reserved (no identity yet) -> pending (created and recorded) -> mapped; replaced: history
        state text NOT NULL CHECK (state IN ('reserved', 'pending', 'mapped', 'replaced')),
        reservation_id text NOT NULL,
        -- epoch ms until which a reservation without identity belongs to its creator
        lease_until bigint NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        replaced_at timestamptz,
        CHECK ((state = 'reserved') = (user_id IS NULL))
      )`,
      // The arbiter of concurrent first calls: one live row per caller and resource.
      `CREATE UNIQUE INDEX acsgw_identity_mapping_live
        ON acsgw_identity_mapping (resource, subject_key) WHERE state <> 'replaced'`,
      // An identity belongs to one caller, ever (replaced rows included: the ownership history).
      `CREATE UNIQUE INDEX acsgw_identity_mapping_user
        ON acsgw_identity_mapping (resource, user_id) WHERE user_id IS NOT NULL`,
      `CREATE INDEX acsgw_identity_mapping_pending
        ON acsgw_identity_mapping (resource) WHERE state = 'pending'`,
      `CREATE INDEX acsgw_identity_mapping_owner
        ON acsgw_identity_mapping (resource, subject_key, user_id)`,
    ],
  },
];

/** Any constant both old and new instances agree on: it serialises concurrent migrations. */
const MIGRATION_LOCK = 4_107_223_901;

/**
 * Applies the steps newer than the database's version, in one transaction. A database that is
 * newer than this code (a rollout in progress, or a rollback) is left as it is, with a warning:
 * steps only add, so older code keeps working on a newer schema.
 */
export async function migrate(
  pool: pg.Pool,
  logger: Logger,
  migrations: readonly Migration[] = MAPPING_MIGRATIONS,
): Promise<{ applied: number[] }> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    await client.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK]);
    await client.query(
      `CREATE TABLE IF NOT EXISTS acsgw_schema_migrations (
        version integer PRIMARY KEY,
        name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`,
    );
    const { rows } = await client.query<{ version: number | null }>(
      "SELECT max(version) AS version FROM acsgw_schema_migrations",
    );
    const current = rows[0]?.version ?? 0;
    const applied: number[] = [];
    for (const migration of [...migrations].sort((a, b) => a.version - b.version)) {
      if (migration.version <= current) {
        continue;
      }
      for (const statement of migration.statements) {
        await client.query(statement);
      }
      await client.query("INSERT INTO acsgw_schema_migrations (version, name) VALUES ($1, $2)", [
        migration.version,
        migration.name,
      ]);
      applied.push(migration.version);
    }
    await client.query("COMMIT");
    const latest = Math.max(0, ...migrations.map((m) => m.version));
    if (current > latest) {
      logger.warn(
        { databaseVersion: current, codeVersion: latest },
        "the mapping database's schema is newer than this gateway; continuing",
      );
    } else if (applied.length > 0) {
      logger.info({ applied }, "applied mapping database migrations");
    }
    return { applied };
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}
