import type { Logger } from "../logger.js";
import type { Db } from "./db.js";

/**
 * The gateway's SQL schemas (the directory's, and the self-service mappings' in
 * src/identity/mapping-schema.ts) as numbered, append-only steps: never edit a released one.
 *
 * Hand-written rather than a migration library: the gateway must migrate in-process when its
 * database opens (no separate CLI step to forget in a deployment), on PostgreSQL and on the
 * embedded PGlite alike through the one `Db` adapter, and what a library adds (down-migrations,
 * file loading, a CLI) is not needed. What it must get right is done here: one transaction per
 * schema, an advisory lock so that instances opening together apply each step once, and a table of
 * applied versions per schema (their version numbers are independent and may share a database).
 */
export interface Migration {
  version: number;
  name: string;
  statements: readonly string[];
}

export interface Schema {
  /** Names the schema in log lines ("directory", "mapping"). */
  name: string;
  /** Where its applied versions are kept (created when missing). */
  versionTable: string;
  /** Any constant every version of the gateway agrees on, one per schema. */
  advisoryLock: number;
  migrations: readonly Migration[];
}

/**
 * Applies the steps newer than the database's version of `schema`, in one transaction. A database
 * newer than this code (a rollout in progress, or a rollback) is left as it is, with a warning:
 * steps only add, so older code keeps working on a newer schema.
 */
export async function migrate(
  db: Db,
  schema: Schema,
  logger: Logger,
): Promise<{ applied: number[] }> {
  if (!/^[a-z_][a-z0-9_]*$/.test(schema.versionTable)) {
    throw new Error(`invalid version table name ${schema.versionTable}`);
  }
  const { current, applied } = await db.transaction(async (tx) => {
    await tx.query("SELECT pg_advisory_xact_lock($1)", [schema.advisoryLock]);
    await tx.query(
      `CREATE TABLE IF NOT EXISTS ${schema.versionTable} (
        version integer PRIMARY KEY,
        name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`,
    );
    const { rows } = await tx.query<{ version: number | null }>(
      `SELECT max(version) AS version FROM ${schema.versionTable}`,
    );
    const current = rows[0]?.version ?? 0;
    const applied: number[] = [];
    for (const migration of [...schema.migrations].sort((a, b) => a.version - b.version)) {
      if (migration.version <= current) {
        continue;
      }
      for (const statement of migration.statements) {
        await tx.query(statement);
      }
      await tx.query(`INSERT INTO ${schema.versionTable} (version, name) VALUES ($1, $2)`, [
        migration.version,
        migration.name,
      ]);
      applied.push(migration.version);
    }
    return { current, applied };
  });
  const latest = Math.max(0, ...schema.migrations.map((m) => m.version));
  if (current > latest) {
    logger.warn(
      { schema: schema.name, databaseVersion: current, codeVersion: latest },
      "the database's schema is newer than this gateway; continuing",
    );
  } else if (applied.length > 0) {
    logger.info({ schema: schema.name, applied }, "applied database migrations");
  }
  return { applied };
}

/**
 * The directory's schema. Every timestamp is timestamptz(3): millisecond precision, what a JS Date
 * holds, so the (created_at, id) key a cursor carries compares equal to the stored one.
 */
export const DIRECTORY_SCHEMA: Schema = {
  name: "directory",
  versionTable: "acsgw_directory_migrations",
  advisoryLock: 4_107_223_917,
  migrations: [
    {
      version: 1,
      name: "identity directory, creation reservations, event outbox and webhook deliveries",
      statements: [
        `CREATE TABLE acsgw_directory_identity (
          -- the ACS user id (8:acs:...). Ids compare bytewise (COLLATE "C"): the same order on every
          -- server whatever its locale, and LIKE 'prefix%' can use a plain btree index.
          id text COLLATE "C" PRIMARY KEY,
          -- the app's own id for the person (optional)
          external_id text COLLATE "C",
          display_name text,
          origin text NOT NULL CHECK (origin IN ('admin', 'self-service')),
          created_at timestamptz(3) NOT NULL,
          -- when the gateway last minted a token at ACS for it (not cache hits)
          last_token_issued_at timestamptz(3),
          deleted_at timestamptz(3)
        )`,
        // An external id names one live identity; once deleted, the person may get a new one.
        `CREATE UNIQUE INDEX acsgw_directory_identity_external
          ON acsgw_directory_identity (external_id) WHERE deleted_at IS NULL`,
        // The paging order, and the prefix filter over deleted identities too.
        `CREATE INDEX acsgw_directory_identity_order ON acsgw_directory_identity (created_at, id)`,
        `CREATE INDEX acsgw_directory_identity_prefix ON acsgw_directory_identity (external_id)`,
        // A create in progress for an external id: who holds it and until when (see directory.ts).
        `CREATE TABLE acsgw_directory_reservation (
          external_id text COLLATE "C" PRIMARY KEY,
          holder text NOT NULL,
          lease_until timestamptz(3) NOT NULL,
          -- how many holders took it (1 + takeovers of expired leases): a crashed-creator signal
          takes integer NOT NULL DEFAULT 1,
          created_at timestamptz(3) NOT NULL
        )`,
        // Lifecycle events, written in the transaction of the change they describe.
        `CREATE TABLE acsgw_directory_event (
          seq bigserial PRIMARY KEY,
          -- the webhook-id: stable across retries, the receiver's deduplication key
          id text NOT NULL UNIQUE,
          type text NOT NULL
            CHECK (type IN ('identity.created', 'identity.updated', 'identity.deleted', 'tokens.revoked')),
          user_id text NOT NULL,
          -- the exact bytes signed and sent (text, not jsonb: jsonb would reorder keys)
          body text NOT NULL,
          created_at timestamptz(3) NOT NULL,
          -- false until a dispatcher created its delivery rows (one per configured URL)
          routed boolean NOT NULL DEFAULT false
        )`,
        `CREATE INDEX acsgw_directory_event_unrouted ON acsgw_directory_event (seq) WHERE NOT routed`,
        `CREATE TABLE acsgw_directory_delivery (
          event_seq bigint NOT NULL REFERENCES acsgw_directory_event (seq) ON DELETE CASCADE,
          url text NOT NULL,
          state text NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
          -- attempts started (counted at claim, so an attempt whose instance died counts too)
          attempts integer NOT NULL DEFAULT 0,
          next_attempt_at timestamptz(3) NOT NULL,
          give_up_at timestamptz(3) NOT NULL,
          -- the claim: the instance delivering it until then; expired, another instance takes it
          locked_until timestamptz(3),
          claim text,
          last_status integer,
          last_error text,
          created_at timestamptz(3) NOT NULL,
          finished_at timestamptz(3),
          PRIMARY KEY (event_seq, url)
        )`,
        `CREATE INDEX acsgw_directory_delivery_due
          ON acsgw_directory_delivery (next_attempt_at) WHERE state = 'pending'`,
        `CREATE INDEX acsgw_directory_delivery_finished
          ON acsgw_directory_delivery (finished_at) WHERE state <> 'pending'`,
      ],
    },
  ],
};

/** Applies the directory's schema (the library's own tests and embeddings without the gateway). */
export function migrateDirectory(db: Db, logger: Logger): Promise<{ applied: number[] }> {
  return migrate(db, DIRECTORY_SCHEMA, logger);
}
