import { randomUUID } from "node:crypto";
import type { Db, Queryable } from "./db.js";
import { iso } from "./clock.js";

export type IdentityOrigin = "admin" | "self-service";

export const EVENT_TYPES = [
  "identity.created",
  "identity.updated",
  "identity.deleted",
  "tokens.revoked",
] as const;
export type LifecycleEventType = (typeof EVENT_TYPES)[number];

/**
 * The body every receiver gets. Deliberately small and fixed: ids and the actor, never a token, a
 * key or a display name (receivers read details back through the API, which checks rights).
 */
export interface LifecycleEventBody {
  type: LifecycleEventType;
  /** When the change happened (ISO 8601). */
  timestamp: string;
  data: {
    userId: string;
    externalId: string | null;
    origin: IdentityOrigin | null;
    /** Who made the change (e.g. "admin:<subject>", "self:<subject>"), as the caller names it. */
    actor: string | null;
  };
}

/** The NOTIFY channel: wakes dispatchers on other instances (PostgreSQL) right after the commit. */
export const OUTBOX_CHANNEL = "acsgw_directory_outbox";

/**
 * Appends one event to the outbox on `tx`, the transaction of the change it describes: the event
 * exists if and only if the change committed. NOTIFY is transactional too (sent at commit).
 */
export async function appendEvent(
  tx: Queryable,
  event: {
    type: LifecycleEventType;
    at: number;
    userId: string;
    externalId: string | null;
    origin: IdentityOrigin | null;
    actor: string | null;
  },
): Promise<string> {
  const id = `msg_${randomUUID().replaceAll("-", "")}`;
  const body: LifecycleEventBody = {
    type: event.type,
    timestamp: iso(event.at),
    data: {
      userId: event.userId,
      externalId: event.externalId,
      origin: event.origin,
      actor: event.actor,
    },
  };
  await tx.query(
    `INSERT INTO acsgw_directory_event (id, type, user_id, body, created_at)
     VALUES ($1, $2, $3, $4, $5::timestamptz)`,
    [id, event.type, event.userId, JSON.stringify(body), iso(event.at)],
  );
  await tx.query("SELECT pg_notify($1, '')", [OUTBOX_CHANNEL]);
  return id;
}

/**
 * The in-process nudge: a directory that committed an event wakes the dispatchers built on the
 * same Db object at once, without waiting for NOTIFY or the poll. Keyed by the Db object so that
 * wiring them to one Db is all it takes.
 */
const listeners = new WeakMap<Db, Set<() => void>>();

export function onOutboxWrite(db: Db, listener: () => void): () => void {
  let set = listeners.get(db);
  if (!set) {
    set = new Set();
    listeners.set(db, set);
  }
  set.add(listener);
  return () => set.delete(listener);
}

export function notifyOutboxWrite(db: Db): void {
  for (const listener of listeners.get(db) ?? []) {
    listener();
  }
}
