import type { Logger } from "../logger.js";
import { createRevokeConnection, type RedisClient } from "../redis/client.js";
import { guardAgainstOutages } from "./outage-guard.js";
import { createRedisTokenStore } from "./redis-token-store.js";
import {
  createCoordinatedTokenCache,
  LOCK_TTL_MS,
  type CoordinatorOptions,
  type LookupResult,
} from "./token-cache-coordinator.js";
import type { TokenCache } from "./token-cache.js";

export type { LookupResult } from "./token-cache-coordinator.js";

/**
 * Everything here comes from configuration (see `createTokenCache`); the cache's timings (lock
 * 5 s, poll 25 ms, breaker 5 failures / 1 s, tombstones 7 days, journal 100 000 users, replay
 * every 500 ms) are constants of the modules that use them, documented in docs/caching.md.
 */
export interface RedisTokenCacheOptions {
  /** Shared with other stores if wanted; closed by `close()` only when `closeClient` is set. */
  client: RedisClient;
  /** REDIS_KEY_PREFIX + "tc1:" + namespace fingerprint + ":" (see `tokenCacheKeyPrefix`). */
  keyPrefix: string;
  /** 32 bytes (AES-256-GCM): TOKEN_CACHE_ENCRYPTION_KEY, or derived from the ACS access key. */
  encryptionKey: Buffer;
  /** TOKEN_MIN_REMAINING_MINUTES in ms. */
  minRemainingMs: number;
  /** `close()` also closes the client. @default false */
  closeClient?: boolean;
  /** Clock for expiry decisions and the breaker (tests). @default Date.now */
  now?: () => number;
  logger: Logger;
  onLookup?: (result: LookupResult) => void;
  onWait?: CoordinatorOptions["onWait"];
  onBreakerOpen?: () => void;
}

/** The one cache algorithm over the Redis store, wrapped in the outage guard (journal, fence, breaker). */
export function createRedisTokenCache(options: RedisTokenCacheOptions): TokenCache {
  const { client } = options;
  const revokeClient = createRevokeConnection(client, options.logger);
  const store = createRedisTokenStore({
    client,
    revokeClient,
    keyPrefix: options.keyPrefix,
    encryptionKey: options.encryptionKey,
    lockTtlMs: LOCK_TTL_MS,
  });
  const guarded = guardAgainstOutages(store, {
    client,
    logger: options.logger,
    now: options.now,
    onBreakerOpen: options.onBreakerOpen,
  });
  const cache = createCoordinatedTokenCache(guarded, options);
  return {
    ...cache,
    async close() {
      await cache.close();
      revokeClient.disconnect();
      if (options.closeClient) {
        try {
          await client.quit();
        } catch {
          client.disconnect();
        }
      }
    },
  };
}
