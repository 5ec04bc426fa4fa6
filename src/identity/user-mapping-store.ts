import type { RedisClient } from "../cache/redis-client.js";
import { redisScript, runScript } from "../cache/redis-scripts.js";

/**
 * Self-service mappings: a caller (`Caller.key`) to its one ACS identity, and back. This is data,
 * not a cache: losing a mapping would give the caller a second identity (and orphan the first,
 * whose tokens stay valid), so nothing here expires or is evicted, and store errors propagate
 * (the token service answers UPSTREAM_UNAVAILABLE rather than create an identity the caller may
 * already have).
 *
 * The subject -> user direction is the truth; user -> subject is an index kept so that
 * `deleteUser` can find and drop the mapping. Both backends keep one invariant: a subject mapping
 * never exists without its index entry. An index entry may briefly (or, after a crash, lastingly)
 * exist without its subject mapping; every read through the index confirms against the truth.
 */
export interface UserMappingStore {
  /** The identity mapped to the caller, if any. */
  get(subjectKey: string): Promise<string | undefined>;
  /**
   * Maps `subjectKey` to `userId` unless it is mapped already. Atomic across instances: of
   * concurrent claims exactly one wins, and every caller learns the winning userId. Claiming the
   * mapping that already holds is a win (idempotent), so a retried claim never deletes the
   * identity it mapped. A loser should delete the identity it created at ACS.
   */
  claim(subjectKey: string, userId: string): Promise<{ userId: string; won: boolean }>;
  /**
   * Forgets the mapping of a (deleted) identity, both directions; returns the subject key that was
   * mapped to it, or undefined when none was. Never removes the subject's newer mapping.
   */
  removeByUserId(userId: string): Promise<string | undefined>;
  /** The subject key `userId` is mapped from, if it is (confirmed against the subject mapping). */
  subjectOf(userId: string): Promise<string | undefined>;
  close(): Promise<void>;
}

/** A memory store at its bound refuses new mappings instead of evicting old ones. */
export class UserMappingStoreFullError extends Error {
  override readonly name = "UserMappingStoreFullError";
  constructor(readonly maxEntries: number) {
    super(
      `the in-memory identity mapping store holds its maximum of ${maxEntries} mappings; configure Redis (REDIS_URL) for more`,
    );
  }
}

/** An identity may belong to one caller only; a claim that would map it to a second is refused. */
export class UserMappingConflictError extends Error {
  override readonly name = "UserMappingConflictError";
  constructor() {
    super("the identity is already mapped to another caller");
  }
}

export interface MemoryUserMappingStoreOptions {
  /**
   * Most mappings held. At the bound, a claim for a new caller throws UserMappingStoreFullError
   * (the service answers it as unavailable) and existing mappings stay: evicting one would
   * silently hand its caller a second identity on their next call. Memory mode is for a single
   * development instance; mappings there also end with the process.
   * @default 100000
   */
  maxEntries?: number;
}

/** In process: for a single instance (the default without Redis). */
export function createMemoryUserMappingStore(
  options: MemoryUserMappingStoreOptions = {},
): UserMappingStore {
  const maxEntries = options.maxEntries ?? 100_000;
  const bySubject = new Map<string, string>();
  const byUser = new Map<string, string>();
  // Every method completes synchronously between awaits, so each is atomic in this process.
  return {
    async get(subjectKey) {
      return bySubject.get(subjectKey);
    },
    async claim(subjectKey, userId) {
      const existing = bySubject.get(subjectKey);
      if (existing !== undefined) {
        return { userId: existing, won: existing === userId };
      }
      const owner = byUser.get(userId);
      if (owner !== undefined && owner !== subjectKey) {
        throw new UserMappingConflictError();
      }
      if (bySubject.size >= maxEntries) {
        throw new UserMappingStoreFullError(maxEntries);
      }
      bySubject.set(subjectKey, userId);
      byUser.set(userId, subjectKey);
      return { userId, won: true };
    },
    async removeByUserId(userId) {
      const subjectKey = byUser.get(userId);
      byUser.delete(userId);
      if (subjectKey !== undefined && bySubject.get(subjectKey) === userId) {
        bySubject.delete(subjectKey);
        return subjectKey;
      }
      return undefined;
    },
    async subjectOf(userId) {
      const subjectKey = byUser.get(userId);
      return subjectKey !== undefined && bySubject.get(subjectKey) === userId
        ? subjectKey
        : undefined;
    },
    async close() {
      bySubject.clear();
      byUser.clear();
    },
  };
}

/** Deletes KEYS[1] only while it still holds ARGV[1] (never a newer value). 1 if deleted. */
const DELETE_IF_EQUAL = redisScript(
  `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`,
);

/**
 * In Redis, shared by every instance; keys have no TTL (see caching.md on eviction policies).
 *
 * Why not one script for both directions: in Redis Cluster a script may only touch keys of one
 * hash slot, and the two directions cannot share one. The index is looked up by user id alone
 * (deleteUser knows nothing else), so it must be tagged by user id; the mapping is looked up by
 * subject alone, so it must be tagged by subject. So every step here is a single-key command, and
 * the ORDER of steps carries the invariant instead:
 *
 * - claim: write the index (user -> subject, SET NX) first, then the mapping (subject -> user,
 *   SET NX: the single arbiter between concurrent claims). A loser deletes its own index entry.
 *   A crash between the steps leaves an index entry without a mapping, which reads ignore and
 *   `removeByUserId` clears; never a mapping without its index entry, which deleteUser could not
 *   find.
 * - removeByUserId: delete the mapping (only if it still names this user), then the index entry.
 *   A crash between the steps again leaves only a stray index entry.
 */
export function createRedisUserMappingStore(options: {
  redis: RedisClient;
  /** Prefix of every key, e.g. `acsgw:map:<resource>:`. */
  keyPrefix: string;
}): UserMappingStore {
  const { redis, keyPrefix } = options;
  const subjectKeyOf = (subjectKey: string) => `${keyPrefix}s:{${subjectKey}}`;
  const userKeyOf = (userId: string) => `${keyPrefix}u:{${userId}}`;

  async function mappedTo(subjectKey: string): Promise<string | undefined> {
    return (await redis.get(subjectKeyOf(subjectKey))) ?? undefined;
  }

  return {
    get: mappedTo,
    async claim(subjectKey, userId) {
      const existing = await mappedTo(subjectKey);
      if (existing !== undefined) {
        // The common case (every issueMyToken after the first): no write at all.
        return { userId: existing, won: existing === userId };
      }
      if ((await redis.set(userKeyOf(userId), subjectKey, "NX")) !== "OK") {
        const owner = await redis.get(userKeyOf(userId));
        if (owner !== null && owner !== subjectKey) {
          throw new UserMappingConflictError();
        }
        // Our own index entry from an earlier attempt (or it just vanished): carry on.
        await redis.set(userKeyOf(userId), subjectKey);
      }
      for (let attempt = 0; attempt < 3; attempt++) {
        if ((await redis.set(subjectKeyOf(subjectKey), userId, "NX")) === "OK") {
          return { userId, won: true };
        }
        const winner = await mappedTo(subjectKey);
        if (winner === userId) {
          return { userId, won: true };
        }
        if (winner !== undefined) {
          await runScript(redis, DELETE_IF_EQUAL, [userKeyOf(userId)], [subjectKey]);
          return { userId: winner, won: false };
        }
        // The winner's mapping was removed between our SET and GET: claim again.
      }
      throw new Error("could not settle the identity mapping");
    },
    async removeByUserId(userId) {
      const subjectKey = await redis.get(userKeyOf(userId));
      if (subjectKey === null) {
        return undefined;
      }
      const removed = (await runScript(
        redis,
        DELETE_IF_EQUAL,
        [subjectKeyOf(subjectKey)],
        [userId],
      )) as number;
      await runScript(redis, DELETE_IF_EQUAL, [userKeyOf(userId)], [subjectKey]);
      return removed === 1 ? subjectKey : undefined;
    },
    async subjectOf(userId) {
      const subjectKey = await redis.get(userKeyOf(userId));
      if (subjectKey === null) {
        return undefined;
      }
      return (await mappedTo(subjectKey)) === userId ? subjectKey : undefined;
    },
    async close() {
      // The client is shared and closed by its owner.
    },
  };
}
