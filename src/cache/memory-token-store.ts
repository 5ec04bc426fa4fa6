import { LRUCache } from "lru-cache";
import type { IssuedToken } from "../identity/identity-provider.js";
import type { StoredEntry, TokenStore } from "./token-store.js";

/** How long a deleted user is answered NOT_FOUND without an upstream call. */
export const TOMBSTONE_TTL_MS = 7 * 24 * 60 * 60 * 1000;

export interface MemoryTokenStoreOptions {
  /** Most entries held; the least recently used goes first (epochs: twice that, tombstones: that). */
  maxEntries: number;
  /** @default Date.now */
  now?: () => number;
}

interface Entry {
  token: IssuedToken;
  epoch: string;
  beganAtMs: number;
  /** The in-memory "TTL": from then on the entry is dead. */
  expiresAt: number;
}

/**
 * The token store in process memory, for a single instance. Entries are an lru-cache (least
 * recently used out first): it keeps recency in typed arrays, so a hit allocates nothing that
 * outlives the request. ("Delete then set" on a Map, as here before, had V8 rebuild the long-lived
 * Map's table every few hits, straight in the old generation: garbage for full mark-compacts.)
 * Epochs and tombstones change only on writes and stay insertion-ordered Maps. No timers: expiry
 * is checked on read, and the bounds evict on write.
 *
 * Epochs come from one counter that only grows, and a user without a recorded epoch gets a NEW
 * one, so an epoch record dropped by the bound can never make an old entry valid again. Not
 * shared, so there is no lock: the coordinator's in-process singleflight is the only one needed.
 */
export function createMemoryTokenStore(options: MemoryTokenStoreOptions): TokenStore {
  const maxEntries = options.maxEntries;
  const now = options.now ?? Date.now;
  /** userId -> suffixes of its entries, so an invalidation drops them at once. */
  const byUser = new Map<string, Set<string>>();
  const entries = new LRUCache<string, Entry>({
    max: maxEntries,
    // An entry pushed out by the bound leaves its user's index too (deletes here do that
    // themselves; an overwrite keeps its suffix).
    dispose: (_entry, k, reason) => {
      if (reason === "evict") {
        forgetEntry(k);
      }
    },
  });
  const epochs = new Map<string, string>();
  const tombstones = new Map<string, number>();
  let counter = 0;

  const entryKey = (userId: string, suffix: string) => `${userId}\u0000${suffix}`;

  function trim<K, V>(map: Map<K, V>, max: number): void {
    while (map.size > max) {
      map.delete(map.keys().next().value as K);
    }
  }

  function newEpoch(userId: string): string {
    const epoch = String(++counter);
    epochs.delete(userId);
    epochs.set(userId, epoch);
    trim(epochs, maxEntries * 2);
    return epoch;
  }

  const epochOf = (userId: string) => epochs.get(userId) ?? newEpoch(userId);

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

  /** The entry, if written under `epoch` and not expired (an expired one is dropped). */
  function current(userId: string, suffix: string, epoch: string): StoredEntry | undefined {
    const k = entryKey(userId, suffix);
    const entry = entries.get(k);
    if (!entry) {
      return undefined;
    }
    if (entry.epoch !== epoch || now() >= entry.expiresAt) {
      entries.delete(k);
      forgetEntry(k);
      return undefined;
    }
    return { token: entry.token, beganAtMs: entry.beganAtMs };
  }

  return {
    async read(userId, suffix) {
      const epoch = epochs.get(userId) ?? "";
      return {
        epoch,
        deleted: isTombstoned(userId),
        entry: current(userId, suffix, epoch),
        lockedByOther: false,
      };
    },

    async begin(userId, suffix) {
      const epoch = epochOf(userId);
      const entry = current(userId, suffix, epoch);
      return { epoch, locked: entry === undefined, beganAtMs: now(), written: !!entry, entry };
    },

    async write(userId, suffix, { epoch, beganAtMs, token, ttlMs }) {
      if (epochs.get(userId) !== epoch || ttlMs <= 0) {
        return false;
      }
      // Set (which may evict the least recently used) before indexing, so an eviction never
      // touches this user's fresh suffix.
      entries.set(entryKey(userId, suffix), { token, epoch, beganAtMs, expiresAt: now() + ttlMs });
      let set = byUser.get(userId);
      if (!set) {
        set = new Set();
        byUser.set(userId, set);
      }
      set.add(suffix);
      return true;
    },

    async release() {
      // No locks in process: the coordinator's singleflight is the only one.
    },

    async invalidate(userId, tombstone) {
      newEpoch(userId);
      const suffixes = byUser.get(userId);
      if (suffixes) {
        for (const suffix of suffixes) {
          entries.delete(entryKey(userId, suffix));
        }
        byUser.delete(userId);
      }
      if (tombstone) {
        tombstones.delete(userId);
        tombstones.set(userId, now() + TOMBSTONE_TTL_MS);
        trim(tombstones, maxEntries);
      }
    },

    isDeleted: async (userId) => isTombstoned(userId),
    isReady: async () => true,

    async close() {
      entries.clear();
      byUser.clear();
      epochs.clear();
      tombstones.clear();
    },
  };
}
