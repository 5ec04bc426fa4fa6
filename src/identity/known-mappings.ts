import { LRUCache } from "lru-cache";

/**
 * The confirmed self-service mappings (subject key -> ACS user id) this process has seen lately,
 * so that a cache-hit `issueMyToken` is ONE Redis round trip (the token cache's lookup) instead of
 * a mapping-store read followed by it.
 *
 * Why a stale entry is safe: a mapping never changes while its identity exists; it goes only when
 * that identity is deleted (deleteMe, an admin's deleteUser, or outside the gateway). A token
 * request for a deleted identity is refused by the layer below: the token cache's tombstone
 * (UserDeletedError), or ACS itself (404) when the tombstone is not there (Redis lost its data,
 * the cache unreachable). `issueMyToken` then forgets the mapping, drops the entry here and asks
 * the store again (tokens/self-service.ts). A deletion made by this process drops its entry at
 * once (identity-mappings.ts, `forgetDeleted`); one made by another instance is found out that
 * way, on the caller's next call.
 *
 * What this is not: a copy of anything the rights table or `me` rely on. Those read the store,
 * which is the truth (identity-mappings.ts, `Ownership`); only the token path, which the layer
 * below checks anyway, reads this.
 *
 * Bounded in count and age (lru-cache: least recently used out first, and nothing older than
 * `maxAgeMs`, which bounds how long an id another instance erased stays in this process's memory).
 */
export interface KnownMappings {
  get(subjectKey: string): string | undefined;
  remember(subjectKey: string, userId: string): void;
  forget(subjectKey: string): void;
  readonly size: number;
}

export interface KnownMappingsOptions {
  /** @default 10000 (0 turns it off) */
  maxEntries?: number;
  /** @default 60000 */
  maxAgeMs?: number;
  /** The clock (ms, monotonic) the age is measured on. @default performance.now */
  now?: () => number;
}

export function createKnownMappings(options: KnownMappingsOptions = {}): KnownMappings {
  const maxEntries = options.maxEntries ?? 10_000;
  const maxAgeMs = options.maxAgeMs ?? 60_000;
  if (maxEntries === 0) {
    return { get: () => undefined, remember() {}, forget() {}, size: 0 };
  }
  const entries = new LRUCache<string, string>({
    max: maxEntries,
    ttl: maxAgeMs,
    // Age from when the store said so, not from the last use: a busy caller's entry is re-read
    // from the store once per `maxAgeMs` too.
    updateAgeOnGet: false,
    // No timers: an expired entry is dropped when it is next read or pushed out by newer ones,
    // and the clock is read on each look (its default caches the time behind a timer per ms).
    ttlAutopurge: false,
    ttlResolution: 0,
    ...(options.now ? { perf: { now: options.now } } : {}),
  });
  return {
    get: (subjectKey) => entries.get(subjectKey),
    remember: (subjectKey, userId) => void entries.set(subjectKey, userId),
    forget: (subjectKey) => void entries.delete(subjectKey),
    get size() {
      return entries.size;
    },
  };
}
