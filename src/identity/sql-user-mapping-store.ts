import { isUniqueViolation, type Queryable } from "../directory/index.js";
import type { LegacyMappings } from "./legacy-redis-mappings.js";
import {
  UserMappingConflictError,
  type FoundIdentity,
  type ReserveOutcome,
  type UserMappingStore,
} from "./user-mapping-store.js";

/**
 * The self-service mappings in the gateway's SQL database, the durable home the ACS quickstart
 * advises for the app-user-to-identity mapping: PostgreSQL with DATABASE_URL, else the embedded
 * PGlite, through the one `Db` adapter (src/directory/db.ts) and the same statements. Redis holds
 * none of it, so a Redis that restarts empty or evicts keys never costs a caller a second identity.
 * The table and its rules are in mapping-schema.ts; the partial unique index on
 * (resource, subject_key) is the arbiter of concurrent first calls, and replaced rows stay as the
 * ownership history.
 */
export function createSqlUserMappingStore(options: {
  db: Queryable;
  /** The ACS resource the mappings belong to (a hash of its endpoint host). */
  resource: string;
  /**
   * The mappings earlier versions kept in Redis: a caller the database has never seen is looked up
   * there first and their identity imported, so upgrading gives no existing caller a second
   * identity. Best effort: Redis is only a cache now, so when it cannot answer the caller is
   * treated as new (the database arbitrates) instead of being refused; `onImportSkipped` reports
   * it. Callers the database already knows never touch it.
   */
  importFrom?: LegacyMappings;
  /** The earlier store could not be asked (Redis down): a caller was treated as new. */
  onImportSkipped?: (error: unknown) => void;
}): UserMappingStore {
  const { db, resource, importFrom } = options;
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
    const { rows } = await db.query<{
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
      const history = await db.query(
        `SELECT 1 FROM acsgw_identity_mapping
          WHERE resource = $1 AND subject_key = $2 AND state = 'replaced' LIMIT 1`,
        [resource, subjectKey],
      );
      if (history.rows.length !== 0) {
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

  /**
   * A deleted identity the database never saw, still mapped in Redis: its subject gets a history
   * row ('replaced'), which both keeps the ownership and stops `imported` from bringing the deleted
   * identity back on the subject's next call. Best effort like the import (Redis down: skipped).
   */
  async function forgetLegacy(userId: string): Promise<string | undefined> {
    let subjectKey: string | undefined;
    try {
      subjectKey = await importFrom!.subjectOf(userId);
    } catch (error) {
      skipped(error);
    }
    if (
      subjectKey === undefined ||
      (await importFrom!.get(subjectKey).catch(() => undefined)) !== userId
    ) {
      return undefined;
    }
    await db.query(
      `INSERT INTO acsgw_identity_mapping
         (resource, subject_key, user_id, state, reservation_id, lease_until, replaced_at)
       VALUES ($1, $2, $3, 'replaced', 'redis-import', 0, now())
       ON CONFLICT DO NOTHING`,
      [resource, subjectKey, userId],
    );
    return subjectKey;
  }

  /** The identities mapped or pending here, in keyset pages by row id (bounded statements). */
  async function* stored(): AsyncIterable<string> {
    let after = "0";
    for (;;) {
      const { rows } = await db.query<{ id: string; user_id: string }>(
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
        const inserted = await db.query(
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
        const updated = await db.query(
          `UPDATE acsgw_identity_mapping SET user_id = $4, state = 'pending'
            WHERE resource = $1 AND subject_key = $2 AND reservation_id = $3
              AND state = 'reserved'`,
          [resource, subjectKey, reservationId, userId],
        );
        return updated.rowCount === 1;
      } catch (error) {
        if (isUniqueViolation(error) && violated(error) === "acsgw_identity_mapping_user") {
          throw new UserMappingConflictError();
        }
        throw error;
      }
    },

    async confirm(subjectKey, userId) {
      const updated = await db.query(
        `UPDATE acsgw_identity_mapping SET state = 'mapped'
          WHERE resource = $1 AND subject_key = $2 AND user_id = $3
            AND state IN ('pending', 'mapped')`,
        [resource, subjectKey, userId],
      );
      return updated.rowCount === 1;
    },

    async release(subjectKey, reservationId) {
      await db.query(
        `DELETE FROM acsgw_identity_mapping
          WHERE resource = $1 AND subject_key = $2 AND reservation_id = $3 AND state = 'reserved'`,
        [resource, subjectKey, reservationId],
      );
    },

    async pending(limit) {
      const { rows } = await db.query<{ subject_key: string; user_id: string }>(
        `SELECT subject_key, user_id FROM acsgw_identity_mapping
          WHERE resource = $1 AND state = 'pending' ORDER BY id LIMIT $2`,
        [resource, limit],
      );
      return rows.map((row) => ({ subjectKey: row.subject_key, userId: row.user_id }));
    },

    async *listUserIds() {
      yield* stored();
      if (importFrom) {
        // Identities only Redis knows (never looked up since the upgrade): best effort, like the
        // import, so that the directory's start-up import sees them too.
        try {
          yield* importFrom.listUserIds();
        } catch (error) {
          skipped(error);
        }
      }
    },

    async removeByUserId(userId) {
      const { rows } = await db.query<{ subject_key: string }>(
        `UPDATE acsgw_identity_mapping SET state = 'replaced', replaced_at = now()
          WHERE resource = $1 AND user_id = $2 AND state IN ('pending', 'mapped')
          RETURNING subject_key`,
        [resource, userId],
      );
      if (rows[0] || !importFrom) {
        return rows[0]?.subject_key;
      }
      return forgetLegacy(userId);
    },

    async subjectOf(userId) {
      const { rows } = await db.query<{ subject_key: string }>(
        `SELECT subject_key FROM acsgw_identity_mapping
          WHERE resource = $1 AND user_id = $2 AND state IN ('pending', 'mapped')`,
        [resource, userId],
      );
      return rows[0]?.subject_key;
    },

    async ownsOrOwned(subjectKey, userId) {
      const { rows } = await db.query(
        `SELECT 1 FROM acsgw_identity_mapping
          WHERE resource = $1 AND subject_key = $2 AND user_id = $3`,
        [resource, subjectKey, userId],
      );
      if (rows.length === 1 || !importFrom) {
        return rows.length === 1;
      }
      // Ownership recorded only in the earlier store (never imported): best effort, like the import.
      return importFrom.ownsOrOwned(subjectKey, userId).catch((error: unknown) => {
        skipped(error);
        return false;
      });
    },

    async close() {
      // The database is closed by its owner (the app), after the last request drained.
    },
  };
  return store;
}

/** The constraint a unique violation names (pg's `constraint`; PGlite's too, else its message). */
function violated(error: unknown): string | undefined {
  const { constraint, message } = error as { constraint?: unknown; message?: unknown };
  if (typeof constraint === "string") {
    return constraint;
  }
  return typeof message === "string" ? /"([a-z_]+)"/.exec(message)?.[1] : undefined;
}
