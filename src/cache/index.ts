import type { AcsConnection, Config } from "../config.js";
import type { Logger } from "../logger.js";
import { assertCacheKey, deriveCacheKey, namespaceFingerprint } from "./crypto.js";
import { createMemoryTokenCache } from "./memory-token-cache.js";
import { createRedisClient, type RedisClient } from "../redis/client.js";
import { tokenCacheKeyPrefix } from "../redis/keys.js";
import { createRedisTokenCache } from "./redis-token-cache.js";
import type { LookupResult } from "./token-cache-coordinator.js";
import type { TokenCache } from "./token-cache.js";

export { createRedisTokenCache, type RedisTokenCacheOptions } from "./redis-token-cache.js";
export {
  createCoordinatedTokenCache,
  type CoordinatorOptions,
  type LookupResult,
} from "./token-cache-coordinator.js";
export { createSingleflight, type Singleflight } from "./singleflight.js";
export type { TokenStore, EntryRead, Begun, StoredEntry } from "./token-store.js";
export { createMemoryTokenCache, type MemoryTokenCacheOptions } from "./memory-token-cache.js";
export { cacheKeyPrefix, createKeyScheme, entrySuffix, type KeyScheme } from "./keys.js";
export { deriveCacheKey, namespaceFingerprint } from "./crypto.js";
export {
  UserDeletedError,
  type InvalidationResult,
  type TokenCache,
  type TokenCacheKey,
  type TokenCacheResult,
} from "./token-cache.js";

export interface TokenCacheDeps {
  logger: Logger;
  /**
   * The ACS resource in use: names the namespace (fingerprint) and, without
   * TOKEN_CACHE_ENCRYPTION_KEY, the encryption key. Passed in rather than read from `config.acs`,
   * which is unset when the gateway runs its embedded emulator.
   */
  acs: AcsConnection;
  /** A client to share (the caller closes it); without one, Redis mode creates and owns its own. */
  redisClient?: RedisClient | undefined;
  onLookup?: (result: LookupResult) => void;
  /** A miss waited for another mint (in this process, or another instance's lock holder). */
  onWait?: (scope: "process" | "instance") => void;
  /** Redis kept failing: the breaker opened (Redis mode only). */
  onBreakerOpen?: () => void;
  /** @default Date.now */
  now?: () => number;
}

/** The token cache the configuration asks for: Redis (single or cluster) or in-process memory. */
export function createTokenCache(config: Readonly<Config>, deps: TokenCacheDeps): TokenCache {
  const minRemainingMs = Math.round(config.tokenMinRemainingMinutes * 60_000);
  if (config.redis.mode === "memory") {
    return createMemoryTokenCache({
      maxEntries: config.memoryCacheMaxEntries,
      minRemainingMs,
      now: deps.now,
      onLookup: deps.onLookup,
      onWait: deps.onWait,
    });
  }
  const encryptionKey = assertCacheKey(
    config.tokenCacheEncryptionKey ?? deriveCacheKey(deps.acs.accessKey),
  );
  const fingerprint = namespaceFingerprint(deps.acs.endpoint, deps.acs.accessKey);
  const client = deps.redisClient ?? createRedisClient(config.redis, deps.logger);
  return createRedisTokenCache({
    client,
    closeClient: deps.redisClient === undefined,
    keyPrefix: tokenCacheKeyPrefix(config.redisKeyPrefix, fingerprint),
    encryptionKey,
    minRemainingMs,
    now: deps.now,
    logger: deps.logger,
    onLookup: deps.onLookup,
    onWait: deps.onWait,
    onBreakerOpen: deps.onBreakerOpen,
  });
}
