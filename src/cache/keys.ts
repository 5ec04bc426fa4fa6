import { assertKeyPrefix, hashTag, tokenCacheKeyPrefix } from "../redis/keys.js";
import type { TokenCacheKey } from "./token-cache.js";

/**
 * The Redis key scheme. With `P` = REDIS_KEY_PREFIX + "tc1:" + namespace fingerprint + ":",
 * every key of user `u` carries the hash tag `{u}`, so they all live in one Redis Cluster slot and
 * a Lua script (or MGET) may touch any of them:
 *
 *   P{u}:e              epoch: a fresh, never-repeating value on every invalidation
 *   P{u}:d              tombstone: the user was deleted
 *   P{u}:i              index: a set of the entry suffixes written, so an invalidation can drop them
 *   P{u}:t:<suffix>     entry: "<epoch>|<beganAtMs>|" + AES-GCM sealed token
 *   P{u}:l:<suffix>     singleflight lock (SET NX PX, random owner value)
 *
 * <suffix> = normalised scopes joined with "," + ":" + requested lifetime ("d": the ACS default).
 *
 * Why the epoch lives in the VALUE and not in the key name: a reader then needs one round trip
 * (MGET epoch, tombstone, entry, all declared keys of one slot) instead of "read epoch, then read
 * entry"; every script declares every key it touches in KEYS (cluster-correct); and an entry whose
 * epoch is stale is never served, whatever its TTL, because the comparison happens at read time.
 */
export interface KeyScheme {
  /** Everything this cache writes starts with it (also used for SCAN in tests and tooling). */
  readonly prefix: string;
  suffix(key: TokenCacheKey): string;
  epoch(userId: string): string;
  tombstone(userId: string): string;
  index(userId: string): string;
  entry(userId: string, suffix: string): string;
  lock(userId: string, suffix: string): string;
}

/** Kept for callers of the old name; the rule lives in src/redis/keys.ts. */
export function cacheKeyPrefix(redisKeyPrefix: string, fingerprint: string): string {
  return tokenCacheKeyPrefix(redisKeyPrefix, fingerprint);
}

export function entrySuffix(key: TokenCacheKey): string {
  const scopes = key.scopes.length === 1 ? key.scopes[0]! : key.scopes.join(",");
  return `${scopes}:${key.expiresInMinutes === undefined ? "d" : key.expiresInMinutes}`;
}

export function createKeyScheme(prefix: string): KeyScheme {
  assertKeyPrefix(prefix);
  const tag = hashTag;
  return {
    prefix,
    suffix: entrySuffix,
    epoch: (u) => `${prefix}${tag(u)}:e`,
    tombstone: (u) => `${prefix}${tag(u)}:d`,
    index: (u) => `${prefix}${tag(u)}:i`,
    entry: (u, suffix) => `${prefix}${tag(u)}:t:${suffix}`,
    lock: (u, suffix) => `${prefix}${tag(u)}:l:${suffix}`,
  };
}
