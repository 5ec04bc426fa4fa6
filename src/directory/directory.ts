import { randomUUID } from "node:crypto";
import type { Logger } from "../logger.js";
import { iso, sleep, systemClock, type Clock } from "./clock.js";
import { decodeCursor, encodeCursor } from "./cursor.js";
import type { Db, Queryable } from "./db.js";
import {
  DirectoryBusyError,
  DirectoryConflictError,
  DirectoryInputError,
  DirectoryRecordError,
} from "./errors.js";
import {
  appendEvent,
  notifyOutboxWrite,
  type IdentityOrigin,
  type LifecycleEventType,
} from "./events.js";

export interface DirectoryIdentity {
  /** The ACS user id (8:acs:...). */
  id: string;
  externalId: string | null;
  displayName: string | null;
  origin: IdentityOrigin;
  createdAt: Date;
  /** When the gateway last minted a token for it at ACS (cache hits do not count). */
  lastTokenIssuedAt: Date | null;
  deletedAt: Date | null;
}

export interface ListArgs {
  /** Page size, 1 to 100 (default 20); larger is refused with BAD_PAGE_SIZE, never clamped. */
  first?: number | null;
  /** An `endCursor` (or edge cursor) from an earlier page. */
  after?: string | null;
  /** Only identities whose external id starts with this (taken literally: % and _ match themselves). */
  externalIdPrefix?: string | null;
  includeDeleted?: boolean | null;
}

export interface IdentityConnection {
  edges: { cursor: string; node: DirectoryIdentity }[];
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
}

/** The outcome of `reserve`. */
export type Reservation =
  | { kind: "existing"; identity: DirectoryIdentity }
  /** The caller holds the create until `leaseUntil`: create at ACS, then `complete` (or `release`). */
  | { kind: "reserved"; externalId: string; holder: string; leaseUntil: number; takeover: boolean }
  /** Another caller holds it until `leaseUntil`. */
  | { kind: "busy"; leaseUntil: number };

export interface CreateDetails {
  displayName?: string | null;
  origin: IdentityOrigin;
  actor?: string | null;
}

export interface ImportRecord {
  id: string;
  externalId?: string | null;
  displayName?: string | null;
  origin: IdentityOrigin;
  createdAt?: Date | null;
  lastTokenIssuedAt?: Date | null;
  deletedAt?: Date | null;
}

export interface Directory {
  /** The identity with this ACS id, deleted or not. */
  get(id: string): Promise<DirectoryIdentity | undefined>;
  /** The live identity with this external id. */
  getByExternalId(externalId: string): Promise<DirectoryIdentity | undefined>;
  /** A page in (createdAt, id) order, Relay style. */
  list(args?: ListArgs): Promise<IdentityConnection>;
  /**
   * The identity for `externalId`, created with `create` (the ACS call) if there is none: across
   * every instance on the database, concurrent calls for one external id call `create` once and
   * all get the same identity. `discard` receives an identity this call created but lost to
   * another one (only after a lease expired mid-create): the caller deletes it at ACS.
   */
  createOnce(
    input: CreateDetails & { externalId: string },
    create: () => Promise<string>,
    options?: { discard?: (userId: string) => Promise<void> },
  ): Promise<{ identity: DirectoryIdentity; created: boolean }>;
  /** The steps of createOnce, for callers that drive them (e.g. across a queue). */
  reserve(externalId: string): Promise<Reservation>;
  complete(
    reservation: Extract<Reservation, { kind: "reserved" }>,
    userId: string,
    details: CreateDetails,
  ): Promise<{ identity: DirectoryIdentity; won: boolean }>;
  release(reservation: Extract<Reservation, { kind: "reserved" }>): Promise<void>;
  /** Records an identity created at ACS without an external-id reservation (e.g. an admin create). */
  recordCreated(
    input: CreateDetails & { id: string; externalId?: string | null },
  ): Promise<{ identity: DirectoryIdentity; created: boolean }>;
  /** The live identity after the change (event only when the name changed); undefined if none. */
  updateDisplayName(
    id: string,
    displayName: string | null,
    actor?: string | null,
  ): Promise<DirectoryIdentity | undefined>;
  /** Marks it deleted (event once); the identity as stored, undefined if unknown. */
  markDeleted(id: string, actor?: string | null): Promise<DirectoryIdentity | undefined>;
  /**
   * Sets each identity's last-token time, in one statement (500 at most per call), no event; a
   * time only moves forward. Call it when tokens were minted at ACS. Resolves with the ids the
   * directory does not hold (the caller may `import` them).
   */
  touchLastTokenIssuedAt(touches: readonly { id: string; at: Date | number }[]): Promise<string[]>;
  /** Identities created before the directory existed: no events; rows already present are kept. */
  import(records: readonly ImportRecord[]): Promise<{ inserted: number; skipped: number }>;
  /** Writes a tokens.revoked event (the directory row itself does not change). */
  recordRevocation(userId: string, actor?: string | null): Promise<void>;
}

export interface DirectoryOptions {
  db: Db;
  clock?: Clock;
  logger?: Logger;
  /**
   * How long a reservation belongs to its creator (default 30 s). Must exceed the ACS create's
   * own timeout: a create still running when its lease expires may be duplicated (and then
   * discarded). After a creator crashed, its external id waits at most this long.
   */
  reservationLeaseMs?: number;
  /** How long createOnce waits for another caller's create before DirectoryBusyError (default 10 s). */
  waitMs?: number;
  /**
   * Write lifecycle events to the outbox (default true). The gateway writes them only when it
   * delivers webhooks: nothing else reads or prunes them, and without a dispatcher they would pile
   * up for ever, then all go out to the first URL configured.
   */
  events?: boolean;
}

interface EventOf {
  type: LifecycleEventType;
  userId: string;
  externalId: string | null;
  origin: IdentityOrigin | null;
  actor: string | null;
}

const eventOf = (
  type: LifecycleEventType,
  identity: DirectoryIdentity,
  actor: string | null,
): EventOf => ({
  type,
  userId: identity.id,
  externalId: identity.externalId,
  origin: identity.origin,
  actor,
});

const COLUMNS = `id, external_id, display_name, origin, created_at, last_token_issued_at, deleted_at`;

interface IdentityRow {
  id: string;
  external_id: string | null;
  display_name: string | null;
  origin: IdentityOrigin;
  created_at: Date | string;
  last_token_issued_at: Date | string | null;
  deleted_at: Date | string | null;
}

const date = (value: Date | string): Date => (value instanceof Date ? value : new Date(value));

function toIdentity(row: IdentityRow): DirectoryIdentity {
  return {
    id: row.id,
    externalId: row.external_id,
    displayName: row.display_name,
    origin: row.origin,
    createdAt: date(row.created_at),
    lastTokenIssuedAt: row.last_token_issued_at === null ? null : date(row.last_token_issued_at),
    deletedAt: row.deleted_at === null ? null : date(row.deleted_at),
  };
}

const MAX_PAGE = 100;
const DEFAULT_PAGE = 20;
const MAX_TEXT = 256;
/** Identities per touchLastTokenIssuedAt statement (as many as an `import` batch). */
export const MAX_TOUCHES = 500;
const ORIGINS: readonly IdentityOrigin[] = ["admin", "self-service"];

function text(name: string, value: unknown, optional: boolean): void {
  if (value === null || value === undefined) {
    if (optional) {
      return;
    }
    throw new DirectoryInputError("BAD_INPUT", `${name} is required`);
  }
  if (typeof value !== "string" || value.length === 0 || value.length > MAX_TEXT) {
    throw new DirectoryInputError("BAD_INPUT", `${name} must be 1 to ${MAX_TEXT} characters`);
  }
}

function origin(value: unknown): void {
  if (!ORIGINS.includes(value as IdentityOrigin)) {
    throw new DirectoryInputError("BAD_INPUT", "origin must be 'admin' or 'self-service'");
  }
}

/** LIKE treats \ % _ specially; the prefix is taken literally (ESCAPE '\'). */
export function likePrefix(prefix: string): string {
  return `${prefix.replace(/[\\%_]/g, "\\$&")}%`;
}

/**
 * The directory of ACS identities over one Db (PostgreSQL or PGlite).
 *
 * Idempotent create by external id (createOnce), across instances:
 * 1. A live identity with the external id is returned as it is (one indexed read).
 * 2. Otherwise the caller inserts a reservation row (primary key: the external id) holding a lease;
 *    an existing row is taken over only if its lease expired (its creator crashed or hung). The
 *    primary key makes exactly one caller the holder; the others wait (polling with backoff: a
 *    held transaction would pin a connection, and all of PGlite, for the length of an HTTP call).
 * 3. The holder calls ACS, then records the identity, its identity.created event and the removal
 *    of the reservation in one transaction. The partial unique index on live external ids is the
 *    final arbiter: a holder whose lease expired mid-create and who finds the external id taken
 *    loses, and its identity goes to `discard` (to be deleted at ACS) instead of the directory.
 *
 * What cannot be made exactly-once: ACS's create takes no idempotency key, so a create whose
 * outcome is unknown (timeout, connection lost) may have made an identity nobody can name. The
 * reservation is then released at once (waiting would not recover it) and the next caller
 * creates again: at most one orphan at ACS per lost answer, never two directory entries for one
 * external id. Likewise a process that dies between ACS's answer and the recording orphans that
 * one identity; recording retries transient database errors before giving up with
 * DirectoryRecordError, which carries the id so the gateway can log it for `import`.
 */
export function createDirectory(options: DirectoryOptions): Directory {
  const { db } = options;
  const clock = options.clock ?? systemClock;
  const leaseMs = options.reservationLeaseMs ?? 30_000;
  const waitMs = options.waitMs ?? 10_000;
  const logger = options.logger;
  const writesEvents = options.events ?? true;

  async function byId(runner: Queryable, id: string): Promise<DirectoryIdentity | undefined> {
    const { rows } = await runner.query<IdentityRow>(
      `SELECT ${COLUMNS} FROM acsgw_directory_identity WHERE id = $1`,
      [id],
    );
    return rows[0] && toIdentity(rows[0]);
  }

  async function byExternalId(
    runner: Queryable,
    externalId: string,
  ): Promise<DirectoryIdentity | undefined> {
    const { rows } = await runner.query<IdentityRow>(
      `SELECT ${COLUMNS} FROM acsgw_directory_identity
        WHERE external_id = $1 AND deleted_at IS NULL`,
      [externalId],
    );
    return rows[0] && toIdentity(rows[0]);
  }

  /** A change and its event in one transaction; dispatchers on this Db are nudged after commit. */
  async function withEvent<T>(
    change: (tx: Queryable) => Promise<{
      result: T;
      event?: EventOf;
    }>,
  ): Promise<T> {
    let wrote = false;
    const result = await db.transaction(async (tx) => {
      const { result, event } = await change(tx);
      if (event && writesEvents) {
        await appendEvent(tx, { ...event, at: clock.now() });
        wrote = true;
      }
      return result;
    });
    if (wrote) {
      notifyOutboxWrite(db);
    }
    return result;
  }

  /** Inserts the identity with its identity.created event; undefined when a unique key exists. */
  async function insertCreated(
    input: CreateDetails & { id: string; externalId: string | null },
    then?: (tx: Queryable) => Promise<unknown>,
  ): Promise<DirectoryIdentity | undefined> {
    return withEvent(async (tx) => {
      const { rows } = await tx.query<IdentityRow>(
        `INSERT INTO acsgw_directory_identity (id, external_id, display_name, origin, created_at)
         VALUES ($1, $2, $3, $4, $5::timestamptz)
         ON CONFLICT DO NOTHING
         RETURNING ${COLUMNS}`,
        [input.id, input.externalId, input.displayName ?? null, input.origin, iso(clock.now())],
      );
      if (!rows[0]) {
        return { result: undefined };
      }
      const identity = toIdentity(rows[0]);
      await then?.(tx);
      return {
        result: identity,
        event: eventOf("identity.created", identity, input.actor ?? null),
      };
    });
  }

  async function release(reservation: Extract<Reservation, { kind: "reserved" }>) {
    await db.query(
      "DELETE FROM acsgw_directory_reservation WHERE external_id = $1 AND holder = $2",
      [reservation.externalId, reservation.holder],
    );
  }

  const directory: Directory = {
    get: (id) => byId(db, id),
    getByExternalId: (externalId) => byExternalId(db, externalId),

    async list(args = {}) {
      const first = args.first ?? DEFAULT_PAGE;
      if (!Number.isInteger(first) || first < 1 || first > MAX_PAGE) {
        throw new DirectoryInputError(
          "BAD_PAGE_SIZE",
          `first must be an integer from 1 to ${MAX_PAGE}`,
        );
      }
      const conditions: string[] = [];
      const params: unknown[] = [];
      if (!args.includeDeleted) {
        conditions.push("deleted_at IS NULL");
      }
      if (args.after !== null && args.after !== undefined) {
        const after = decodeCursor(args.after);
        params.push(iso(after.createdAt.getTime()), after.id);
        conditions.push(
          `(created_at, id) > ($${params.length - 1}::timestamptz, $${params.length})`,
        );
      }
      if (args.externalIdPrefix) {
        text("externalIdPrefix", args.externalIdPrefix, false);
        params.push(likePrefix(args.externalIdPrefix));
        conditions.push(`external_id LIKE $${params.length} ESCAPE '\\'`);
      }
      params.push(first + 1);
      const { rows } = await db.query<IdentityRow>(
        `SELECT ${COLUMNS} FROM acsgw_directory_identity
          ${conditions.length ? `WHERE ${conditions.join(" AND ")}` : ""}
          ORDER BY created_at, id LIMIT $${params.length}`,
        params,
      );
      const edges = rows.slice(0, first).map((row) => {
        const node = toIdentity(row);
        return { cursor: encodeCursor(node), node };
      });
      return {
        edges,
        pageInfo: { hasNextPage: rows.length > first, endCursor: edges.at(-1)?.cursor ?? null },
      };
    },

    async reserve(externalId) {
      text("externalId", externalId, false);
      for (let attempt = 0; attempt < 5; attempt++) {
        const existing = await byExternalId(db, externalId);
        if (existing) {
          return { kind: "existing", identity: existing };
        }
        const holder = randomUUID();
        const now = clock.now();
        const leaseUntil = now + leaseMs;
        const taken = await db.query<{ takes: number }>(
          `INSERT INTO acsgw_directory_reservation (external_id, holder, lease_until, created_at)
           VALUES ($1, $2, $3::timestamptz, $4::timestamptz)
           ON CONFLICT (external_id) DO UPDATE
             SET holder = EXCLUDED.holder, lease_until = EXCLUDED.lease_until,
                 takes = acsgw_directory_reservation.takes + 1
             WHERE acsgw_directory_reservation.lease_until <= EXCLUDED.created_at
           RETURNING takes`,
          [externalId, holder, iso(leaseUntil), iso(now)],
        );
        if (taken.rows[0]) {
          // A holder may have completed between our read and our insert (its transaction removed
          // its reservation, so ours went in): this read sees its commit. Then there is nothing to do.
          const completed = await byExternalId(db, externalId);
          const reservation = {
            kind: "reserved" as const,
            externalId,
            holder,
            leaseUntil,
            takeover: taken.rows[0].takes > 1,
          };
          if (completed) {
            await release(reservation);
            return { kind: "existing", identity: completed };
          }
          if (reservation.takeover) {
            logger?.warn(
              { takes: taken.rows[0].takes },
              "took over an expired identity reservation (its creator died or outlived its lease)",
            );
          }
          return reservation;
        }
        const { rows } = await db.query<{ lease_until: Date | string }>(
          "SELECT lease_until FROM acsgw_directory_reservation WHERE external_id = $1",
          [externalId],
        );
        if (rows[0]) {
          return { kind: "busy", leaseUntil: date(rows[0].lease_until).getTime() };
        }
        // Completed or released between our insert and this read: look again.
      }
      return { kind: "busy", leaseUntil: clock.now() };
    },

    async complete(reservation, userId, details) {
      text("userId", userId, false);
      origin(details.origin);
      text("displayName", details.displayName, true);
      const { externalId } = reservation;
      const identity = await insertCreated({ ...details, id: userId, externalId }, (tx) =>
        // Once the identity exists the reservation is moot, whoever holds it now.
        tx.query("DELETE FROM acsgw_directory_reservation WHERE external_id = $1", [externalId]),
      );
      if (identity) {
        return { identity, won: true };
      }
      // A key exists: this very identity (a retried complete whose first commit's answer was
      // lost), or another holder's identity for the external id (ours then loses).
      const same = await byId(db, userId);
      if (same && same.externalId === externalId) {
        return { identity: same, won: true };
      }
      const theirs = await byExternalId(db, externalId);
      if (theirs) {
        await release(reservation);
        return { identity: theirs, won: false };
      }
      throw new DirectoryConflictError(externalId);
    },

    release,

    async createOnce(input, create, createOptions = {}) {
      text("externalId", input.externalId, false);
      origin(input.origin);
      text("displayName", input.displayName, true);
      const deadline = clock.now() + waitMs;
      for (let wait = 10; ; wait = Math.min(wait * 2, 250)) {
        const reservation = await directory.reserve(input.externalId);
        if (reservation.kind === "existing") {
          return { identity: reservation.identity, created: false };
        }
        if (reservation.kind === "reserved") {
          let userId: string;
          try {
            userId = await create();
          } catch (error) {
            // Failed or unknown outcome: nothing recoverable to wait for (see above).
            await release(reservation).catch(() => {});
            throw error;
          }
          const { identity, won } = await completeWithRetries(reservation, userId, input);
          if (!won) {
            logger?.warn(
              "an identity created after its reservation expired lost to another; discarding it",
            );
            // Best effort: the caller has its identity either way; an undiscarded one is an orphan.
            await createOptions
              .discard?.(userId)
              .catch((error: unknown) =>
                logger?.warn({ err: error }, "could not discard the losing identity"),
              );
          }
          return { identity, created: won };
        }
        const now = clock.now();
        if (now >= deadline) {
          throw new DirectoryBusyError(input.externalId);
        }
        // Poll again soon, or right when the holder's lease expires (then we take over).
        await sleep(
          clock,
          Math.max(1, Math.min(wait, deadline - now, reservation.leaseUntil - now)),
        );
      }
    },

    async recordCreated(input) {
      text("id", input.id, false);
      text("externalId", input.externalId, true);
      text("displayName", input.displayName, true);
      origin(input.origin);
      const identity = await insertCreated({ ...input, externalId: input.externalId ?? null });
      if (identity) {
        return { identity, created: true };
      }
      const same = await byId(db, input.id);
      if (same && same.externalId === (input.externalId ?? null)) {
        // Already recorded: by this very write retried after a commit whose answer was lost, or
        // by a mint that saw the new identity first (`import`, no event). Either way the identity
        // was created now, so its identity.created goes out once: written unless it exists.
        await withEvent(async (tx) => {
          const { rows } = await tx.query(
            `SELECT 1 FROM acsgw_directory_event
              WHERE user_id = $1 AND type = 'identity.created' LIMIT 1`,
            [input.id],
          );
          return {
            result: undefined,
            event:
              rows.length === 0
                ? eventOf("identity.created", same, input.actor ?? null)
                : undefined,
          };
        });
        return { identity: same, created: false };
      }
      throw new DirectoryConflictError(input.externalId ?? "");
    },

    async updateDisplayName(id, displayName, actor = null) {
      text("displayName", displayName, true);
      return withEvent(async (tx) => {
        const { rows } = await tx.query<IdentityRow>(
          `UPDATE acsgw_directory_identity SET display_name = $2
            WHERE id = $1 AND deleted_at IS NULL AND display_name IS DISTINCT FROM $2
            RETURNING ${COLUMNS}`,
          [id, displayName],
        );
        if (!rows[0]) {
          const current = await byId(tx, id);
          return { result: current?.deletedAt === null ? current : undefined };
        }
        const identity = toIdentity(rows[0]);
        return { result: identity, event: eventOf("identity.updated", identity, actor) };
      });
    },

    async markDeleted(id, actor = null) {
      return withEvent(async (tx) => {
        const { rows } = await tx.query<IdentityRow>(
          `UPDATE acsgw_directory_identity SET deleted_at = $2::timestamptz
            WHERE id = $1 AND deleted_at IS NULL
            RETURNING ${COLUMNS}`,
          [id, iso(clock.now())],
        );
        if (!rows[0]) {
          return { result: await byId(tx, id) };
        }
        const identity = toIdentity(rows[0]);
        return { result: identity, event: eventOf("identity.deleted", identity, actor) };
      });
    },

    async touchLastTokenIssuedAt(touches) {
      if (touches.length > MAX_TOUCHES) {
        throw new DirectoryInputError("BAD_INPUT", `at most ${MAX_TOUCHES} touches per call`);
      }
      // One row per id, its latest time: UPDATE ... FROM would pick any one of duplicate rows.
      const latest = new Map<string, number>();
      for (const { id, at } of touches) {
        text("id", id, false);
        const ms = at instanceof Date ? at.getTime() : at;
        latest.set(id, Math.max(ms, latest.get(id) ?? ms));
      }
      if (latest.size === 0) {
        return [];
      }
      // The UPDATE in a WITH runs to completion though nothing reads it; the SELECT sees the rows
      // as they were before it, which is all it needs: whether each id is held at all.
      const { rows } = await db.query<{ id: string }>(
        `WITH touch AS (
           SELECT * FROM unnest($1::text[], $2::timestamptz[]) AS touch(id, at)
         ), moved AS (
           UPDATE acsgw_directory_identity AS identity SET last_token_issued_at = touch.at
             FROM touch
            WHERE identity.id = touch.id
              AND (identity.last_token_issued_at IS NULL OR identity.last_token_issued_at < touch.at)
         )
         SELECT touch.id FROM touch
          WHERE NOT EXISTS (SELECT 1 FROM acsgw_directory_identity AS held WHERE held.id = touch.id)`,
        [[...latest.keys()], [...latest.values()].map(iso)],
      );
      return rows.map((row) => row.id);
    },

    async import(records) {
      const now = iso(clock.now());
      const optionalIso = (value: Date | null | undefined) => (value ? value.toISOString() : null);
      for (const record of records) {
        text("id", record.id, false);
        text("externalId", record.externalId, true);
        text("displayName", record.displayName, true);
        origin(record.origin);
      }
      let inserted = 0;
      for (let start = 0; start < records.length; start += 500) {
        const batch = records.slice(start, start + 500);
        // One statement per batch: unnest turns the column arrays back into rows.
        const { rowCount } = await db.query(
          `INSERT INTO acsgw_directory_identity
             (id, external_id, display_name, origin, created_at, last_token_issued_at, deleted_at)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                                $5::timestamptz[], $6::timestamptz[], $7::timestamptz[])
           ON CONFLICT DO NOTHING`,
          [
            batch.map((r) => r.id),
            batch.map((r) => r.externalId ?? null),
            batch.map((r) => r.displayName ?? null),
            batch.map((r) => r.origin),
            batch.map((r) => optionalIso(r.createdAt) ?? now),
            batch.map((r) => optionalIso(r.lastTokenIssuedAt)),
            batch.map((r) => optionalIso(r.deletedAt)),
          ],
        );
        inserted += rowCount;
      }
      return { inserted, skipped: records.length - inserted };
    },

    async recordRevocation(userId, actor = null) {
      text("userId", userId, false);
      await withEvent(async (tx) => {
        const known = await byId(tx, userId);
        // Unknown to the directory (never imported): the event still goes out, without details.
        const event: EventOf = known
          ? eventOf("tokens.revoked", known, actor)
          : { type: "tokens.revoked", userId, externalId: null, origin: null, actor };
        return { result: undefined, event };
      });
    },
  };

  /** The identity exists at ACS now: losing it to a database blip would orphan it, so retry. */
  async function completeWithRetries(
    reservation: Extract<Reservation, { kind: "reserved" }>,
    userId: string,
    details: CreateDetails,
  ): Promise<{ identity: DirectoryIdentity; won: boolean }> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await directory.complete(reservation, userId, details);
      } catch (error) {
        if (error instanceof DirectoryConflictError || attempt >= 3) {
          logger?.error(
            { err: error, userId, attempt },
            "an identity created at ACS could not be recorded in the directory",
          );
          // Best effort: waiting out the lease would not bring this identity back either.
          await release(reservation).catch(() => {});
          throw new DirectoryRecordError(userId, reservation.externalId, { cause: error });
        }
        await sleep(clock, 100 * attempt);
      }
    }
  }

  return directory;
}
