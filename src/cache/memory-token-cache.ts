import type { IssuedToken } from "../identity/identity-provider.js";
import { createFlights, type Flight } from "./flights.js";
import { entrySuffix } from "./keys.js";
import type { LookupResult } from "./redis-token-cache.js";
import { UserDeletedError, type TokenCache, type TokenCacheResult } from "./token-cache.js";

export interface MemoryTokenCacheOptions {
  /** Most entries held; the least recently used goes first. @default 10000 */
  maxEntries?: number;
  /** A cached token is served only while at least this long remains. */
  minRemainingMs: number;
  /** How long a deleted user is answered NOT_FOUND without an upstream call. @default 7 days */
  tombstoneTtlMs?: number;
  /** @default Date.now */
  now?: () => number;
  onLookup?: (result: LookupResult) => void;
}

interface Entry {
  token: IssuedToken;
  /** expiresOn - minRemaining: from then on the entry is dead (the in-memory "TTL"). */
  serveUntil: number;
  epoch: number;
}

/**
 * The in-process token cache for a single instance: the same rules as the Redis one (epochs,
 * tombstones, singleflight, the late-answer race closed) with plain Maps. A Map keeps insertion
 * order, so "delete then set" on every hit makes its first key the least recently used: LRU with
 * no extra structure. No timers: expiry is checked on read, and the bound evicts on write.
 *
 * Epochs come from one counter that only grows, and a user without a recorded epoch gets a NEW
 * one, so an epoch record dropped by the bound can never make an old entry valid again.
 */
export function createMemoryTokenCache(options: MemoryTokenCacheOptions): TokenCache {
  const maxEntries = options.maxEntries ?? 10_000;
  const minRemainingMs = options.minRemainingMs;
  const tombstoneTtlMs = options.tombstoneTtlMs ?? 7 * 24 * 60 * 60 * 1000;
  const now = options.now ?? Date.now;
  const onLookup = options.onLookup;

  const entries = new Map<string, Entry>();
  /** userId -> suffixes of its entries, so an invalidation drops them at once. */
  const byUser = new Map<string, Set<string>>();
  const epochs = new Map<string, number>();
  const tombstones = new Map<string, number>();
  const flights = createFlights<TokenCacheResult>();
  let counter = 0;

  const entryKey = (userId: string, suffix: string) => `${userId}\u0000${suffix}`;

  function trim<K, V>(map: Map<K, V>, max: number, onEvict?: (key: K) => void): void {
    while (map.size > max) {
      const oldest = map.keys().next().value as K;
      map.delete(oldest);
      onEvict?.(oldest);
    }
  }

  function epochOf(userId: string): number {
    let epoch = epochs.get(userId);
    if (epoch === undefined) {
      epoch = ++counter;
      epochs.set(userId, epoch);
      trim(epochs, maxEntries * 2);
    }
    return epoch;
  }

  function forgetEntry(k: string): void {
    const at = k.indexOf("\u0000");
    const userId = k.slice(0, at);
    const set = byUser.get(userId);
    if (set) {
      set.delete(k.slice(at + 1));
      if (set.size === 0) {
        byUser.delete(userId);
      }
    }
  }

  function isTombstoned(userId: string): boolean {
    const until = tombstones.get(userId);
    if (until === undefined) {
      return false;
    }
    if (now() >= until) {
      tombstones.delete(userId);
      return false;
    }
    return true;
  }

  function invalidate(userId: string, tombstone: boolean): void {
    flights.dropUser(userId);
    epochs.delete(userId);
    epochs.set(userId, ++counter);
    trim(epochs, maxEntries * 2);
    const suffixes = byUser.get(userId);
    if (suffixes) {
      for (const suffix of suffixes) {
        entries.delete(entryKey(userId, suffix));
      }
      byUser.delete(userId);
    }
    if (tombstone) {
      tombstones.delete(userId);
      tombstones.set(userId, now() + tombstoneTtlMs);
      trim(tombstones, maxEntries);
    }
  }

  function store(userId: string, suffix: string, epoch: number, token: IssuedToken): void {
    // The late-answer race: store only if no invalidation began since this flight read the epoch.
    if (epochs.get(userId) !== epoch) {
      return;
    }
    const serveUntil = token.expiresOn - minRemainingMs;
    if (serveUntil <= now()) {
      return;
    }
    const k = entryKey(userId, suffix);
    entries.delete(k);
    entries.set(k, { token, serveUntil, epoch });
    let set = byUser.get(userId);
    if (!set) {
      set = new Set();
      byUser.set(userId, set);
    }
    set.add(suffix);
    trim(entries, maxEntries, forgetEntry);
  }

  function lookupOrMint(
    userId: string,
    suffix: string,
    mint: () => Promise<IssuedToken>,
  ): Promise<TokenCacheResult> {
    if (isTombstoned(userId)) {
      return Promise.reject(new UserDeletedError(userId));
    }
    const epoch = epochOf(userId);
    const k = entryKey(userId, suffix);
    const entry = entries.get(k);
    if (entry) {
      if (entry.epoch === epoch && now() < entry.serveUntil) {
        entries.delete(k);
        entries.set(k, entry);
        return Promise.resolve({ token: entry.token, cached: true });
      }
      entries.delete(k);
      forgetEntry(k);
    }
    const tag = String(epoch);
    const existing = flights.get(userId, suffix);
    if (existing && existing.epoch === tag) {
      return existing.promise;
    }
    const flight: Flight<TokenCacheResult> = {
      epoch: tag,
      promise: mint().then((token) => {
        store(userId, suffix, epoch, token);
        return { token, cached: false };
      }),
    };
    flight.promise = flight.promise.finally(() => flights.end(userId, suffix, flight));
    flights.set(userId, suffix, flight);
    return flight.promise;
  }

  return {
    async getOrMint(key, mint) {
      const result = await lookupOrMint(key.userId, entrySuffix(key), mint);
      onLookup?.(result.cached ? "hit" : "miss");
      return result;
    },

    async invalidateUser(userId, upstream, opts) {
      invalidate(userId, false);
      let result;
      try {
        result = await upstream();
      } catch (error) {
        invalidate(userId, false);
        throw error;
      }
      invalidate(userId, opts?.tombstone === true);
      return result;
    },

    async isDeleted(userId) {
      return isTombstoned(userId);
    },

    async isReady() {
      return true;
    },

    async close() {
      entries.clear();
      byUser.clear();
      epochs.clear();
      tombstones.clear();
    },
  };
}
