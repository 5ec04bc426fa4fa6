import { createMemoryTokenStore } from "./memory-token-store.js";
import {
  createCoordinatedTokenCache,
  type CoordinatorOptions,
  type LookupResult,
} from "./token-cache-coordinator.js";
import type { TokenCache } from "./token-cache.js";

export interface MemoryTokenCacheOptions {
  /** MEMORY_CACHE_MAX_ENTRIES: most entries held; the least recently used goes first. @default 10000 */
  maxEntries?: number;
  /** TOKEN_MIN_REMAINING_MINUTES in ms: a cached token is served only while this much remains. */
  minRemainingMs: number;
  /** @default Date.now */
  now?: () => number;
  onLookup?: (result: LookupResult) => void;
  onWait?: CoordinatorOptions["onWait"];
}

/** The in-process token cache for a single instance: the one algorithm over the memory store. */
export function createMemoryTokenCache(options: MemoryTokenCacheOptions): TokenCache {
  return createCoordinatedTokenCache(
    createMemoryTokenStore({ maxEntries: options.maxEntries ?? 10_000, now: options.now }),
    options,
  );
}
