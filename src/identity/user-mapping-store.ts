import { hashTag, redisScript, runScript, type RedisClient } from "../redis/index.js";

/**
 * Self-service mappings: a caller (`Caller.key`) to its one ACS identity. This is data, not a
 * cache: losing a mapping would give the caller a second identity (and strand the first, whose
 * tokens stay valid), so nothing here expires or is evicted, and store errors propagate (callers
 * are answered UPSTREAM_UNAVAILABLE, guarded-mapping-store.ts, rather than given an identity they
 * may already have).
 *
 * A caller's first identity is made in three steps (see provisioning.ts), each a store call:
 * 1. `reserve`: a reservation for the subject, before anything exists at ACS. The store's atomic
 *    insert (PostgreSQL's unique index, Redis SET NX on one key) is the arbiter between concurrent
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
   * start (app/directory.ts). Optional: the Redis store has no cheap listing across a Cluster, and
   * its mappings reach PostgreSQL (and from there the directory) when DATABASE_URL is set.
   */
  listUserIds?(): AsyncIterable<string>;
  close(): Promise<void>;
}

export interface FoundIdentity {
  userId: string;
  /** False while the identity is recorded but not yet confirmed (see `confirm`). */
  confirmed: boolean;
}

/** A reservation's outcome as the identity it names, if it names one. */
function foundIn(outcome: ReserveOutcome | undefined): FoundIdentity | undefined {
  return outcome?.kind === "mapped" || outcome?.kind === "pending"
    ? { userId: outcome.userId, confirmed: outcome.kind === "mapped" }
    : undefined;
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
      `the in-memory identity mapping store holds its maximum of ${maxEntries} mappings; configure DATABASE_URL (or REDIS_URL) for more`,
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

/** In process: for a single instance (the default without Redis or PostgreSQL). */
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

/*
 * Redis values of the subject key: a confirmed mapping is the bare user id (the format of earlier
 * versions, so existing mappings stay valid); a reservation is `~r|<reservation>|<leaseUntil>`
 * and a pending identity `~p|<reservation>|<userId>`. ACS ids start with `8:`, never with `~`.
 */
const RESERVED = "~r|";
const PENDING = "~p|";

/**
 * KEYS[1] the subject key; ARGV reservation, leaseUntil, now. Sets the reservation when the key
 * is empty or holds an expired reservation; returns "" when it did, else the value that holds.
 */
const RESERVE = redisScript(`
local v = redis.call("GET", KEYS[1])
if v then
  if string.sub(v, 1, 3) ~= "${RESERVED}" then return v end
  local lease = tonumber(string.match(v, "|([0-9]+)$"))
  if lease and lease > tonumber(ARGV[3]) and string.sub(v, 4, 3 + string.len(ARGV[1])) ~= ARGV[1] then return v end
end
redis.call("SET", KEYS[1], "${RESERVED}" .. ARGV[1] .. "|" .. ARGV[2])
return ""`);

/** KEYS[1] the subject key; ARGV reservation, userId. Reserved by us -> pending. 1 if recorded. */
const RECORD = redisScript(`
local v = redis.call("GET", KEYS[1])
if v and string.sub(v, 1, 4 + string.len(ARGV[1])) == "${RESERVED}" .. ARGV[1] .. "|" then
  redis.call("SET", KEYS[1], "${PENDING}" .. ARGV[1] .. "|" .. ARGV[2])
  return 1
end
return 0`);

/** KEYS[1] the subject key; ARGV userId. Pending with this id -> mapped. 1 if mapped now. */
const CONFIRM = redisScript(`
local v = redis.call("GET", KEYS[1])
if v == ARGV[1] then return 1 end
if v and string.sub(v, 1, 3) == "${PENDING}" and string.sub(v, -string.len(ARGV[1]) - 1) == "|" .. ARGV[1] then
  redis.call("SET", KEYS[1], ARGV[1])
  return 1
end
return 0`);

/** KEYS[1] the subject key; ARGV reservation. Drops our reservation if it holds no identity. */
const RELEASE = redisScript(`
local v = redis.call("GET", KEYS[1])
if v and string.sub(v, 1, 4 + string.len(ARGV[1])) == "${RESERVED}" .. ARGV[1] .. "|" then
  return redis.call("DEL", KEYS[1])
end
return 0`);

/** KEYS[1] the subject key; ARGV userId. Deletes the mapping or pending record of this id only. */
const REMOVE = redisScript(`
local v = redis.call("GET", KEYS[1])
if v and (v == ARGV[1] or (string.sub(v, 1, 3) == "${PENDING}" and string.sub(v, -string.len(ARGV[1]) - 1) == "|" .. ARGV[1])) then
  return redis.call("DEL", KEYS[1])
end
return 0`);

/** Deletes KEYS[1] only while it still holds ARGV[1] (never a newer value). 1 if deleted. */
const DELETE_IF_EQUAL = redisScript(
  `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`,
);

function parseSubjectValue(value: string): ReserveOutcome {
  if (value.startsWith(PENDING)) {
    return { kind: "pending", userId: value.slice(value.indexOf("|", PENDING.length) + 1) };
  }
  if (value.startsWith(RESERVED)) {
    return { kind: "busy", leaseUntil: Number(value.slice(value.lastIndexOf("|") + 1)) };
  }
  return { kind: "mapped", userId: value };
}

/**
 * In Redis, shared by every instance; keys have no TTL (see caching.md on eviction policies), and
 * the data is only as durable as Redis itself: a Redis that restarts empty or evicts keys loses
 * mappings (set DATABASE_URL for a durable home).
 *
 * Redis Cluster allows a script to touch keys of one hash slot only, and the two directions cannot
 * share one (the owner key is looked up by user id alone, the subject key by subject alone), so
 * every step is a single-key command or script and the ORDER of steps carries the invariants:
 *
 * - the owner key (`u:{userId}` -> subject) is written before an identity is recorded on the
 *   subject key, and kept after removal: it is the ownership history `ownsOrOwned` reads. A record
 *   that loses its reservation deletes the owner key it wrote. A crash between the two writes
 *   leaves an owner key for an identity the subject's own call created: harmless.
 * - pending identities are also listed in one set (`pending`), added after the record and
 *   removed after the confirm; a crash between leaves the subject key as the truth, which the
 *   caller's next call finds and confirms.
 */
export function createRedisUserMappingStore(options: {
  redis: RedisClient;
  /** Prefix of every key, e.g. `acsgw:map:<resource>:`. */
  keyPrefix: string;
}): UserMappingStore {
  const { redis, keyPrefix } = options;
  // The shared escaping rule (redis/keys.ts): the names of existing mappings do not change.
  const subjectKeyOf = (subjectKey: string) => `${keyPrefix}s:${hashTag(subjectKey)}`;
  const ownerKeyOf = (userId: string) => `${keyPrefix}u:${hashTag(userId)}`;
  const pendingKey = `${keyPrefix}pending`;
  const pendingMember = (subjectKey: string, userId: string) =>
    JSON.stringify([subjectKey, userId]);

  async function valueOf(subjectKey: string): Promise<ReserveOutcome | undefined> {
    const value = await redis.get(subjectKeyOf(subjectKey));
    return value === null ? undefined : parseSubjectValue(value);
  }

  return {
    async get(subjectKey) {
      return foundIn(await valueOf(subjectKey))?.userId;
    },
    async find(subjectKey) {
      return foundIn(await valueOf(subjectKey));
    },
    async reserve(subjectKey, reservationId, leaseUntil, now) {
      const held = (await runScript(
        redis,
        RESERVE,
        [subjectKeyOf(subjectKey)],
        [reservationId, leaseUntil, now],
      )) as string;
      return held === "" ? { kind: "reserved" } : parseSubjectValue(held);
    },
    async record(subjectKey, reservationId, userId) {
      const ownerKey = ownerKeyOf(userId);
      if ((await redis.set(ownerKey, subjectKey, "NX")) !== "OK") {
        if ((await redis.get(ownerKey)) !== subjectKey) {
          throw new UserMappingConflictError();
        }
      }
      const recorded = (await runScript(
        redis,
        RECORD,
        [subjectKeyOf(subjectKey)],
        [reservationId, userId],
      )) as number;
      if (recorded !== 1) {
        await runScript(redis, DELETE_IF_EQUAL, [ownerKey], [subjectKey]);
        return false;
      }
      await redis.sadd(pendingKey, pendingMember(subjectKey, userId));
      return true;
    },
    async confirm(subjectKey, userId) {
      const done =
        ((await runScript(redis, CONFIRM, [subjectKeyOf(subjectKey)], [userId])) as number) === 1;
      await redis.srem(pendingKey, pendingMember(subjectKey, userId));
      return done;
    },
    async release(subjectKey, reservationId) {
      await runScript(redis, RELEASE, [subjectKeyOf(subjectKey)], [reservationId]);
    },
    async pending(limit) {
      const members = await redis.srandmember(pendingKey, limit);
      return members.map((member) => {
        const [subjectKey, userId] = JSON.parse(member) as [string, string];
        return { subjectKey, userId };
      });
    },
    async removeByUserId(userId) {
      const subjectKey = await redis.get(ownerKeyOf(userId));
      if (subjectKey === null) {
        return undefined;
      }
      const removed = (await runScript(
        redis,
        REMOVE,
        [subjectKeyOf(subjectKey)],
        [userId],
      )) as number;
      await redis.srem(pendingKey, pendingMember(subjectKey, userId));
      return removed === 1 ? subjectKey : undefined;
    },
    async subjectOf(userId) {
      const subjectKey = await redis.get(ownerKeyOf(userId));
      if (subjectKey === null) {
        return undefined;
      }
      return foundIn(await valueOf(subjectKey))?.userId === userId ? subjectKey : undefined;
    },
    async ownsOrOwned(subjectKey, userId) {
      return (await redis.get(ownerKeyOf(userId))) === subjectKey;
    },
    async close() {
      // The client is shared and closed by its owner.
    },
  };
}
