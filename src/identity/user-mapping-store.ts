/**
 * Self-service mappings: a caller (`Caller.key`) to its one ACS identity. This is data, not a
 * cache: losing a mapping would give the caller a second identity (and strand the first, whose
 * tokens stay valid), so nothing here expires or is evicted, and store errors propagate (callers
 * are answered UPSTREAM_UNAVAILABLE, guarded-mapping-store.ts, rather than given an identity they
 * may already have).
 *
 * A caller's first identity is made in three steps (see provisioning.ts), each a store call:
 * 1. `reserve`: a reservation for the subject, before anything exists at ACS. The store's atomic
 *    insert (the SQL table's unique index; a Map in the memory store) is the arbiter between concurrent
 *    first calls on any number of instances; when it cannot be written, no identity is created.
 * 2. create at ACS, then `record` its id on the reservation (state "pending"): from here the
 *    identity is known to the store and can be found after a crash (`pending()`).
 * 3. `confirm`: the mapping becomes visible to `get`. Anyone may confirm a pending identity (the
 *    owner, a later call of the same caller, start-up recovery): it is the same identity either way.
 *
 * A reservation without an identity carries a lease: another call waits for it, and takes it over
 * once the lease ran out (its owner died during the ACS call).
 *
 * Ownership is history, not only the present: an identity that was mapped to a subject stays
 * attributed to it after `removeByUserId` (deleted or replaced), so `ownsOrOwned` lets a former
 * owner still revoke that identity's tokens.
 */
export interface UserMappingStore {
  /**
   * The caller's identity, confirmed or pending, if any. A pending identity was created for this
   * caller and its token may already be in their hands, so it is theirs for every purpose (`me`,
   * revoking, deleting) before it is confirmed; `find` tells the two apart.
   */
  get(subjectKey: string): Promise<string | undefined>;
  /** The caller's identity and whether it is confirmed yet; undefined while none is recorded. */
  find(subjectKey: string): Promise<FoundIdentity | undefined>;
  /**
   * Reserves the subject for `reservationId` unless it is mapped, pending or reserved by a
   * reservation whose lease (epoch ms) is still after `now`; an expired reservation is taken over.
   */
  reserve(
    subjectKey: string,
    reservationId: string,
    leaseUntil: number,
    now: number,
  ): Promise<ReserveOutcome>;
  /**
   * Records the identity created for the reservation (it becomes pending). False when the
   * reservation is no longer ours (taken over after its lease ran out): the caller must then
   * delete the identity it created. Throws UserMappingConflictError if `userId` has an owner.
   */
  record(subjectKey: string, reservationId: string, userId: string): Promise<boolean>;
  /** Makes the pending `userId` the subject's mapping; true when it is (or already was) mapped. */
  confirm(subjectKey: string, userId: string): Promise<boolean>;
  /** Drops the reservation if it is still ours and holds no identity (creation failed). */
  release(subjectKey: string, reservationId: string): Promise<void>;
  /** Recorded but unconfirmed identities (left by a crash between the steps), at most `limit`. */
  pending(limit: number): Promise<{ subjectKey: string; userId: string }[]>;
  /**
   * Forgets the current mapping (or pending record) of a deleted identity; returns the subject key
   * that was mapped to it, or undefined. Never removes the subject's newer mapping. The identity
   * stays attributed to that subject (`ownsOrOwned`).
   */
  removeByUserId(userId: string): Promise<string | undefined>;
  /** The subject key `userId` is currently the identity of (confirmed or pending), if any. */
  subjectOf(userId: string): Promise<string | undefined>;
  /** Is or was `userId` the identity of `subjectKey` (also after deletion or replacement)? */
  ownsOrOwned(subjectKey: string, userId: string): Promise<boolean>;
  /**
   * Every identity currently mapped or pending, in batches: the identity directory imports them at
   * start (app/directory.ts).
   */
  listUserIds(): AsyncIterable<string>;
  close(): Promise<void>;
}

export interface FoundIdentity {
  userId: string;
  /** False while the identity is recorded but not yet confirmed (see `confirm`). */
  confirmed: boolean;
}

export type ReserveOutcome =
  /** Confirmed: use it. */
  | { kind: "mapped"; userId: string }
  /** The reservation is ours: create the identity. */
  | { kind: "reserved" }
  /** Created and recorded, not yet confirmed: confirm it and use it. */
  | { kind: "pending"; userId: string }
  /** Another call is creating the identity; its lease runs until `leaseUntil` (epoch ms). */
  | { kind: "busy"; leaseUntil: number };

/** A memory store at its bound refuses new mappings instead of evicting old ones. */
export class UserMappingStoreFullError extends Error {
  override readonly name = "UserMappingStoreFullError";
  constructor(readonly maxEntries: number) {
    super(
      `the in-memory identity mapping store holds its maximum of ${maxEntries} mappings; configure DATABASE_URL or DIRECTORY_DATA_DIR for a database`,
    );
  }
}

/** An identity may belong to one caller only; recording it for a second is refused. */
export class UserMappingConflictError extends Error {
  override readonly name = "UserMappingConflictError";
  constructor() {
    super("the identity is already mapped to another caller");
  }
}

/**
 * All three steps at once for an identity that already exists (tests, imports): the mapping that
 * holds wins. A subject being provisioned by someone else is an error.
 */
export async function claimMapping(
  store: UserMappingStore,
  subjectKey: string,
  userId: string,
  now: number = Date.now(),
): Promise<{ userId: string; won: boolean }> {
  const reservationId = `claim-${userId}`;
  const outcome = await store.reserve(subjectKey, reservationId, now + 60_000, now);
  if (outcome.kind === "mapped") {
    return { userId: outcome.userId, won: outcome.userId === userId };
  }
  if (outcome.kind === "busy") {
    throw new Error("the subject is being provisioned");
  }
  if (outcome.kind === "pending") {
    await store.confirm(subjectKey, outcome.userId);
    return { userId: outcome.userId, won: outcome.userId === userId };
  }
  try {
    if (!(await store.record(subjectKey, reservationId, userId))) {
      throw new Error("the reservation was taken over");
    }
  } catch (error) {
    await store.release(subjectKey, reservationId);
    throw error;
  }
  await store.confirm(subjectKey, userId);
  return { userId, won: true };
}

export interface MemoryUserMappingStoreOptions {
  /**
   * Most subjects held, and most identities ever recorded (deleted ones stay attributed to their
   * former owner, so a development instance with much churn reaches it sooner). At the bound, a reservation for a new caller throws
   * UserMappingStoreFullError (answered as unavailable) and existing mappings stay:
   * evicting one would silently hand its caller a second identity on their next call. Memory mode
   * is for a single development instance; mappings there also end with the process.
   * @default 100000
   */
  maxEntries?: number;
}

type MemoryEntry =
  | { kind: "reserved"; reservationId: string; leaseUntil: number }
  | { kind: "pending"; reservationId: string; userId: string }
  | { kind: "mapped"; userId: string };

/**
 * In process, for one instance that keeps no database: `createApp` given its own settings without
 * DATABASE_URL nor DIRECTORY_DATA_DIR (tests and embeddings; app/mapping-store.ts).
 */
export function createMemoryUserMappingStore(
  options: MemoryUserMappingStoreOptions = {},
): UserMappingStore {
  const maxEntries = options.maxEntries ?? 100_000;
  const bySubject = new Map<string, MemoryEntry>();
  /** userId -> subject, kept after removal: the ownership history. */
  const owners = new Map<string, string>();
  const current = (userId: string): string | undefined => {
    const subjectKey = owners.get(userId);
    const entry = subjectKey === undefined ? undefined : bySubject.get(subjectKey);
    return entry && entry.kind !== "reserved" && entry.userId === userId ? subjectKey : undefined;
  };
  // Every method completes synchronously between awaits, so each is atomic in this process.
  return {
    async *listUserIds() {
      for (const entry of [...bySubject.values()]) {
        if (entry.kind !== "reserved") {
          yield entry.userId;
        }
      }
    },
    async get(subjectKey) {
      const entry = bySubject.get(subjectKey);
      return entry?.kind === "reserved" ? undefined : entry?.userId;
    },
    async find(subjectKey) {
      const entry = bySubject.get(subjectKey);
      return entry?.kind === "reserved" || !entry
        ? undefined
        : { userId: entry.userId, confirmed: entry.kind === "mapped" };
    },
    async reserve(subjectKey, reservationId, leaseUntil, now) {
      const entry = bySubject.get(subjectKey);
      if (entry?.kind === "mapped" || entry?.kind === "pending") {
        return entry.kind === "mapped"
          ? { kind: "mapped", userId: entry.userId }
          : { kind: "pending", userId: entry.userId };
      }
      if (entry && entry.leaseUntil > now && entry.reservationId !== reservationId) {
        return { kind: "busy", leaseUntil: entry.leaseUntil };
      }
      if (!entry && (bySubject.size >= maxEntries || owners.size >= maxEntries)) {
        throw new UserMappingStoreFullError(maxEntries);
      }
      bySubject.set(subjectKey, { kind: "reserved", reservationId, leaseUntil });
      return { kind: "reserved" };
    },
    async record(subjectKey, reservationId, userId) {
      const owner = owners.get(userId);
      if (owner !== undefined && owner !== subjectKey) {
        throw new UserMappingConflictError();
      }
      const entry = bySubject.get(subjectKey);
      if (entry?.kind !== "reserved" || entry.reservationId !== reservationId) {
        return false;
      }
      owners.set(userId, subjectKey);
      bySubject.set(subjectKey, { kind: "pending", reservationId, userId });
      return true;
    },
    async confirm(subjectKey, userId) {
      const entry = bySubject.get(subjectKey);
      if (entry?.kind === "pending" && entry.userId === userId) {
        bySubject.set(subjectKey, { kind: "mapped", userId });
        return true;
      }
      return entry?.kind === "mapped" && entry.userId === userId;
    },
    async release(subjectKey, reservationId) {
      const entry = bySubject.get(subjectKey);
      if (entry?.kind === "reserved" && entry.reservationId === reservationId) {
        bySubject.delete(subjectKey);
      }
    },
    async pending(limit) {
      const found: { subjectKey: string; userId: string }[] = [];
      for (const [subjectKey, entry] of bySubject) {
        if (found.length >= limit) {
          break;
        }
        if (entry.kind === "pending") {
          found.push({ subjectKey, userId: entry.userId });
        }
      }
      return found;
    },
    async removeByUserId(userId) {
      const subjectKey = current(userId);
      if (subjectKey !== undefined) {
        bySubject.delete(subjectKey);
      }
      return subjectKey;
    },
    async subjectOf(userId) {
      const subjectKey = owners.get(userId);
      const entry = subjectKey === undefined ? undefined : bySubject.get(subjectKey);
      return entry && entry.kind !== "reserved" && entry.userId === userId ? subjectKey : undefined;
    },
    async ownsOrOwned(subjectKey, userId) {
      return owners.get(userId) === subjectKey;
    },
    async close() {
      bySubject.clear();
      owners.clear();
    },
  };
}
