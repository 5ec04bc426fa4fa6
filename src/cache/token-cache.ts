import type { IssuedToken } from "../identity/identity-provider.js";
import type { AcsScope } from "../tokens/scopes.js";

/** What identifies one cache entry. `scopes` arrive already normalised (sorted, unique). */
export interface TokenCacheKey {
  userId: string;
  scopes: readonly AcsScope[];
  /** The lifetime the caller asked for; `undefined` (ACS default) is its own entry. */
  expiresInMinutes: number | undefined;
}

export interface TokenCacheResult {
  token: IssuedToken;
  /** true when served from the cache, false when `mint` ran for this request (or its flight). */
  cached: boolean;
}

export interface InvalidationResult<T> {
  value: T;
  /** Both sides of the bracket were recorded where every instance reads. */
  confirmed: boolean;
}

/** Thrown by `getOrMint` when the user carries a deletion tombstone: answer NOT_FOUND, no upstream call. */
export class UserDeletedError extends Error {
  override readonly name = "UserDeletedError";
  constructor(readonly userId: string) {
    super("the communication user was deleted");
  }
}

/**
 * The token cache (rules: docs/caching.md, "The token cache, precisely").
 *
 * Implementations never throw for their own trouble (Redis down, slow, full): they degrade to
 * calling `mint` and report it through metrics/logs. They throw only what `mint` or
 * `invalidateUser`'s upstream call throws, and `UserDeletedError`.
 */
export interface TokenCache {
  /**
   * A token for `key` with at least the configured minimum validity left, from the cache or from
   * `mint` (one flight per key across concurrent callers and instances). A minted token is stored
   * only if no invalidation of the user began since the lookup.
   */
  getOrMint(key: TokenCacheKey, mint: () => Promise<IssuedToken>): Promise<TokenCacheResult>;

  /**
   * Runs `upstream` (the ACS revoke or delete) bracketed by invalidations of every entry of the user:
   * one before (no reader gets an old token from then on) and one after (anything minted while the
   * upstream call was in flight is orphaned). With `tombstone`, the user is remembered as deleted
   * (after `upstream` succeeded) so `getOrMint` answers `UserDeletedError` without an upstream call.
   *
   * Resolves with `upstream`'s value and `confirmed`: both sides of the bracket were recorded in
   * the shared store, so no instance can serve an entry cached before the call (memory: always
   * true). When false, the invalidation is kept for replay and the caller must not claim
   * completion. Rejects only with `upstream`'s error (the bracket's second side still ran).
   */
  invalidateUser<T>(
    userId: string,
    upstream: () => Promise<T>,
    options?: { tombstone?: boolean },
  ): Promise<InvalidationResult<T>>;

  /** Is the user known to be deleted? (tombstone; false when unknown or the cache is unavailable) */
  isDeleted(userId: string): Promise<boolean>;

  /** For /readyz: can the cache's backing store be reached right now? (memory: always true) */
  isReady(): Promise<boolean>;

  /** Release connections and timers. */
  close(): Promise<void>;
}
