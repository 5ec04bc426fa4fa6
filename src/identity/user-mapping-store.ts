import type { RedisClient } from "../cache/redis-client.js";
import { redisScript, runScript } from "../cache/redis-scripts.js";

/**
 * Self-service mappings: a caller (`Caller.key`) to its one ACS identity. This is data, not a
 * cache: losing a mapping would give the caller a second identity, so nothing here expires or is
 * evicted, and Redis errors propagate (the caller answers UPSTREAM_UNAVAILABLE rather than create
 * an identity it may already have).
 */
export interface UserMappingStore {
  get(subjectKey: string): Promise<string | undefined>;
  /**
   * Maps `subjectKey` to `userId` unless it is mapped already. Atomic across instances: of
   * concurrent claims exactly one wins, and every caller learns the winning userId.
   */
  claim(subjectKey: string, userId: string): Promise<{ userId: string; won: boolean }>;
  /** Forgets the mapping of a (deleted) identity, both directions; returns the subject key it had. */
  removeByUserId(userId: string): Promise<string | undefined>;
  close(): Promise<void>;
}

/** In process: for a single instance (the default). Unbounded on purpose: see above. */
export function createMemoryUserMappingStore(): UserMappingStore {
  const bySubject = new Map<string, string>();
  const byUser = new Map<string, string>();
  return {
    async get(subjectKey) {
      return bySubject.get(subjectKey);
    },
    async claim(subjectKey, userId) {
      const existing = bySubject.get(subjectKey);
      if (existing !== undefined) {
        return { userId: existing, won: existing === userId };
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
      }
      return subjectKey;
    },
    async close() {},
  };
}

/** Deletes KEYS[1] only while it still holds ARGV[1] (never a newer mapping of the subject). */
const DELETE_IF_EQUAL = redisScript(
  `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`,
);

/**
 * In Redis, shared by every instance. The two directions live under different hash tags (one per
 * subject, one per user), so no script may touch both in Redis Cluster; instead SET NX on the
 * subject key is the single atomic arbiter, and the reverse key is written only by the winner,
 * after it won. A crash in between leaves a subject mapping without its reverse key, which
 * `removeByUserId` cannot find; the token service then heals it when ACS reports the identity gone.
 */
export function createRedisUserMappingStore(options: {
  redis: RedisClient;
  keyPrefix: string;
}): UserMappingStore {
  const { redis, keyPrefix } = options;
  const subjectKeyOf = (subjectKey: string) => `${keyPrefix}s:{${subjectKey}}`;
  const userKeyOf = (userId: string) => `${keyPrefix}u:{${userId}}`;

  return {
    async get(subjectKey) {
      return (await redis.get(subjectKeyOf(subjectKey))) ?? undefined;
    },
    async claim(subjectKey, userId) {
      for (let attempt = 0; attempt < 3; attempt++) {
        if ((await redis.set(subjectKeyOf(subjectKey), userId, "NX")) === "OK") {
          await redis.set(userKeyOf(userId), subjectKey);
          return { userId, won: true };
        }
        const existing = await redis.get(subjectKeyOf(subjectKey));
        if (existing !== null) {
          return { userId: existing, won: existing === userId };
        }
        // The winner's mapping was removed between our SET and GET: claim again.
      }
      throw new Error("could not settle the identity mapping");
    },
    async removeByUserId(userId) {
      const subjectKey = await redis.get(userKeyOf(userId));
      if (subjectKey !== null) {
        await runScript(redis, DELETE_IF_EQUAL, [subjectKeyOf(subjectKey)], [userId]);
      }
      await redis.del(userKeyOf(userId));
      return subjectKey ?? undefined;
    },
    async close() {
      // The client is shared and closed by its owner.
    },
  };
}
