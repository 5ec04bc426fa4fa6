import pg from "pg";
import {
  UserMappingConflictError,
  type FoundIdentity,
  type ReserveOutcome,
  type UserMappingStore,
} from "./user-mapping-store.js";

/**
 * The self-service mappings in PostgreSQL (`DATABASE_URL`), the durable home the ACS quickstart
 * advises for the app-user-to-identity mapping: a Redis that restarts empty or evicts keys then
 * never costs a caller a second identity. The table and its rules are in migrations/index.ts; the
 * partial unique index on (resource, subject_key) is the arbiter of concurrent first calls, and
 * replaced rows stay as the ownership history.
 */
export function createPgUserMappingStore(options: {
  pool: pg.Pool;
  /** The ACS resource the mappings belong to (a hash of its endpoint host). */
  resource: string;
  /**
   * The store used before DATABASE_URL was set (Redis): a caller PostgreSQL has never seen is
   * looked up there first and their identity imported, so switching a deployment to PostgreSQL
   * gives no existing caller a second identity. Best effort: with DATABASE_URL, Redis is only a
   * cache, so when it cannot answer the caller is treated as new (PostgreSQL arbitrates) instead
   * of being refused; `onImportSkipped` reports it. Callers PostgreSQL already knows never touch it.
   */
  importFrom?: UserMappingStore;
  /** The earlier store could not be asked (Redis down): a caller was treated as new. */
  onImportSkipped?: (error: unknown) => void;
}): UserMappingStore {
  const { pool, resource, importFrom } = options;
  const skipped = options.onImportSkipped ?? (() => {});

  /** The earlier store's answer, or undefined when it cannot give one (best effort, see above). */
  async function earlierIdentity(subjectKey: string): Promise<string | undefined> {
    try {
      return await importFrom!.get(subjectKey);
    } catch (error) {
      skipped(error);
      return undefined;
    }
  }

  async function live(subjectKey: string): Promise<ReserveOutcome | undefined> {
    const { rows } = await pool.query<{
      state: string;
      user_id: string | null;
      lease_until: string;
    }>(
      `SELECT state, user_id, lease_until FROM acsgw_identity_mapping
        WHERE resource = $1 AND subject_key = $2 AND state <> 'replaced'`,
      [resource, subjectKey],
    );
    const row = rows[0];
    if (!row) {
      return undefined;
    }
    if (row.state === "reserved" || row.user_id === null) {
      return { kind: "busy", leaseUntil: Number(row.lease_until) };
    }
    return row.state === "mapped"
      ? { kind: "mapped", userId: row.user_id }
      : { kind: "pending", userId: row.user_id };
  }

  /** Completes our fresh reservation with the caller's identity from the earlier store, if any. */
  async function imported(subjectKey: string, reservationId: string): Promise<ReserveOutcome> {
    let earlier: string | undefined;
    try {
      // Only a caller with no history here: one whose identity was since deleted or replaced
      // must not get the stale one back from the earlier store.
      const history = await pool.query(
        `SELECT 1 FROM acsgw_identity_mapping
          WHERE resource = $1 AND subject_key = $2 AND state = 'replaced' LIMIT 1`,
        [resource, subjectKey],
      );
      if (history.rowCount !== 0) {
        return { kind: "reserved" };
      }
      earlier = await earlierIdentity(subjectKey);
      if (earlier === undefined) {
        return { kind: "reserved" };
      }
      await store.record(subjectKey, reservationId, earlier);
    } catch (error) {
      await store.release(subjectKey, reservationId);
      throw error;
    }
    await store.confirm(subjectKey, earlier);
    return { kind: "mapped", userId: earlier };
  }

  const store: UserMappingStore = {
    async get(subjectKey) {
      return (await store.find(subjectKey))?.userId;
    },

    async find(subjectKey): Promise<FoundIdentity | undefined> {
      const found = await live(subjectKey);
      return found?.kind === "mapped" || found?.kind === "pending"
        ? { userId: found.userId, confirmed: found.kind === "mapped" }
        : undefined;
    },

    async reserve(subjectKey, reservationId, leaseUntil, now) {
      // A row removed between the insert and the read is retried; anything else settles at once.
      for (let attempt = 0; attempt < 3; attempt++) {
        const inserted = await pool.query(
          `INSERT INTO acsgw_identity_mapping
             (resource, subject_key, state, reservation_id, lease_until)
           VALUES ($1, $2, 'reserved', $3, $4)
           ON CONFLICT (resource, subject_key) WHERE state <> 'replaced'
           DO UPDATE SET reservation_id = EXCLUDED.reservation_id,
                         lease_until = EXCLUDED.lease_until
             WHERE acsgw_identity_mapping.state = 'reserved'
               AND (acsgw_identity_mapping.lease_until <= $5
                    OR acsgw_identity_mapping.reservation_id = EXCLUDED.reservation_id)
           RETURNING id`,
          [resource, subjectKey, reservationId, leaseUntil, now],
        );
        if (inserted.rowCount === 1) {
          return importFrom ? imported(subjectKey, reservationId) : { kind: "reserved" };
        }
        const held = await live(subjectKey);
        if (held) {
          return held;
        }
      }
      throw new Error("could not settle the identity reservation");
    },

    async record(subjectKey, reservationId, userId) {
      try {
        const updated = await pool.query(
          `UPDATE acsgw_identity_mapping SET user_id = $4, state = 'pending'
            WHERE resource = $1 AND subject_key = $2 AND reservation_id = $3
              AND state = 'reserved'`,
          [resource, subjectKey, reservationId, userId],
        );
        return updated.rowCount === 1;
      } catch (error) {
        if (
          error instanceof pg.DatabaseError &&
          error.code === "23505" &&
          error.constraint === "acsgw_identity_mapping_user"
        ) {
          throw new UserMappingConflictError();
        }
        throw error;
      }
    },

    async confirm(subjectKey, userId) {
      const updated = await pool.query(
        `UPDATE acsgw_identity_mapping SET state = 'mapped'
          WHERE resource = $1 AND subject_key = $2 AND user_id = $3
            AND state IN ('pending', 'mapped')`,
        [resource, subjectKey, userId],
      );
      return updated.rowCount === 1;
    },

    async release(subjectKey, reservationId) {
      await pool.query(
        `DELETE FROM acsgw_identity_mapping
          WHERE resource = $1 AND subject_key = $2 AND reservation_id = $3 AND state = 'reserved'`,
        [resource, subjectKey, reservationId],
      );
    },

    async pending(limit) {
      const { rows } = await pool.query<{ subject_key: string; user_id: string }>(
        `SELECT subject_key, user_id FROM acsgw_identity_mapping
          WHERE resource = $1 AND state = 'pending' ORDER BY id LIMIT $2`,
        [resource, limit],
      );
      return rows.map((row) => ({ subjectKey: row.subject_key, userId: row.user_id }));
    },

    async *listUserIds() {
      // Keyset pages by the row id: a long table is read in bounded statements.
      let after = "0";
      for (;;) {
        const { rows } = await pool.query<{ id: string; user_id: string }>(
          `SELECT id::text AS id, user_id FROM acsgw_identity_mapping
            WHERE resource = $1 AND state IN ('pending', 'mapped') AND id > $2::bigint
            ORDER BY id LIMIT 500`,
          [resource, after],
        );
        for (const row of rows) {
          yield row.user_id;
        }
        if (rows.length < 500) {
          return;
        }
        after = rows[rows.length - 1]!.id;
      }
    },

    async removeByUserId(userId) {
      const { rows } = await pool.query<{ subject_key: string }>(
        `UPDATE acsgw_identity_mapping SET state = 'replaced', replaced_at = now()
          WHERE resource = $1 AND user_id = $2 AND state IN ('pending', 'mapped')
          RETURNING subject_key`,
        [resource, userId],
      );
      return rows[0]?.subject_key;
    },

    async subjectOf(userId) {
      const { rows } = await pool.query<{ subject_key: string }>(
        `SELECT subject_key FROM acsgw_identity_mapping
          WHERE resource = $1 AND user_id = $2 AND state IN ('pending', 'mapped')`,
        [resource, userId],
      );
      return rows[0]?.subject_key;
    },

    async ownsOrOwned(subjectKey, userId) {
      const { rowCount } = await pool.query(
        `SELECT 1 FROM acsgw_identity_mapping
          WHERE resource = $1 AND subject_key = $2 AND user_id = $3`,
        [resource, subjectKey, userId],
      );
      if (rowCount === 1 || !importFrom) {
        return rowCount === 1;
      }
      // Ownership recorded only in the earlier store (never imported): best effort, like the import.
      return importFrom.ownsOrOwned(subjectKey, userId).catch((error: unknown) => {
        skipped(error);
        return false;
      });
    },

    async close() {
      // The pool is closed by its owner (the app), after the last request drained.
    },
  };
  return store;
}

/**
 * A pool with bounded waits: a PostgreSQL that hangs must fail the call (UPSTREAM_UNAVAILABLE)
 * instead of holding requests; no statement of the store needs more than a few milliseconds.
 */
export function createMappingPool(databaseUrl: string, onError: (error: Error) => void): pg.Pool {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: 10,
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 30_000,
    statement_timeout: 5000,
    query_timeout: 6000,
    application_name: "acs-identity-gateway",
  });
  // An idle client's connection dropping must not crash the process: the next query reconnects.
  pool.on("error", onError);
  return pool;
}
