import { randomBytes } from "node:crypto";
import type { IssuedToken } from "../identity/identity-provider.js";
import { entrySuffix } from "./keys.js";
import { createSingleflight } from "./singleflight.js";
import { UserDeletedError, type TokenCache, type TokenCacheResult } from "./token-cache.js";
import type { EntryRead, StoredEntry, TokenStore } from "./token-store.js";

export type LookupResult = "hit" | "miss";

export interface CoordinatorOptions {
  /** A cached token is served only while at least this long remains; entries expire there. */
  minRemainingMs: number;
  /** Clock for expiry decisions. @default Date.now */
  now?: () => number;
  onLookup?: (result: LookupResult) => void;
  /**
   * A miss that waited for another's mint instead of calling upstream: joined a flight in this
   * process, or waited for another instance's lock holder.
   */
  onWait?: (scope: "process" | "instance") => void;
}

/** How long a lock holder may take before waiters mint themselves (shared stores). */
export const LOCK_TTL_MS = 5000;
/** How often a waiter looks for the lock holder's entry. */
export const WAIT_POLL_MS = 25;
const MAX_FLIGHT_ATTEMPTS = 3;

type WaitOutcome = "hit" | "deleted" | "retry" | "timeout" | "error";

const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * The token cache's rules, written once (docs/caching.md, "The token cache, precisely"), over a
 * `TokenStore` (memory, or Redis wrapped in the outage guard):
 *
 * - Lookup: one `read` gives epoch, tombstone and entry; an entry is served only if it was
 *   written under the current epoch and enough validity remains.
 * - Singleflight in process: flights are keyed by user, entry AND the epoch the lookup read, so a
 *   request that saw a newer epoch (a revoke began since) never joins a flight that may return a
 *   pre-revoke token. Across instances: the store's lock (`begin`), which also carries its epoch.
 * - Write-if-epoch: a minted token is stored only if no invalidation began since `begin`.
 * - The revoke/delete bracket: invalidate, upstream, invalidate again (+ tombstone for a delete).
 *   `confirmed` says whether both sides were recorded by the store.
 * - A store that throws is a miss: the token comes straight from upstream, and such a request
 *   joins no flight (it cannot know whether another instance revoked the user since that flight
 *   began).
 */
export function createCoordinatedTokenCache(
  store: TokenStore,
  options: CoordinatorOptions,
): TokenCache {
  const { minRemainingMs, onLookup } = options;
  const now = options.now ?? Date.now;
  const flights = createSingleflight<TokenCacheResult>();

  const servable = (read: { entry?: StoredEntry | undefined }): IssuedToken | undefined => {
    const token = read.entry?.token;
    return token && token.expiresOn - now() >= minRemainingMs ? token : undefined;
  };

  const straight = async (mint: () => Promise<IssuedToken>): Promise<TokenCacheResult> => ({
    token: await mint(),
    cached: false,
  });

  async function mintAndWrite(
    userId: string,
    suffix: string,
    epoch: string,
    beganAtMs: number,
    owner: string | undefined,
    mint: () => Promise<IssuedToken>,
  ): Promise<TokenCacheResult> {
    let token: IssuedToken;
    try {
      token = await mint();
    } catch (error) {
      if (owner !== undefined) {
        // Not awaited: the release bypasses an open breaker, and against a Redis that hangs the
        // caller's ACS error would wait a command timeout for it. Sent now, it is on its way.
        void store.release(userId, suffix, owner).catch(() => undefined);
      }
      throw error;
    }
    // The entry's life ends exactly when the token may no longer be served.
    const ttlMs = Math.floor(token.expiresOn - minRemainingMs - now());
    if (ttlMs > 0 || owner !== undefined) {
      await store.write(userId, suffix, { epoch, beganAtMs, token, ttlMs, owner }).catch(() => {
        // The write would have released the lock. Refused (the breaker opened during the mint),
        // it leaves the lock for its full life, and every other instance's miss for the key
        // waits that long; so it is released apart. Not awaited: the token is answered now.
        if (owner !== undefined) {
          void store.release(userId, suffix, owner).catch(() => undefined);
        }
      });
    }
    return { token, cached: false };
  }

  async function waitForHolder(
    userId: string,
    suffix: string,
    epoch: string,
    deadline: number,
  ): Promise<{ outcome: WaitOutcome; token?: IssuedToken }> {
    for (;;) {
      await pause(WAIT_POLL_MS);
      let read: EntryRead;
      try {
        read = await store.read(userId, suffix, true);
      } catch {
        return { outcome: "error" };
      }
      if (read.deleted) {
        return { outcome: "deleted" };
      }
      if (read.epoch !== epoch) {
        return { outcome: "retry" };
      }
      const token = servable(read);
      if (token) {
        return { outcome: "hit", token };
      }
      if (!read.lockedByOther) {
        // No current lock and no entry: the holder failed, died, or its write was refused.
        return { outcome: "retry" };
      }
      if (performance.now() >= deadline) {
        return { outcome: "timeout" };
      }
    }
  }

  async function fly(
    userId: string,
    suffix: string,
    mint: () => Promise<IssuedToken>,
  ): Promise<TokenCacheResult> {
    const owner = randomBytes(9).toString("base64url");
    // Real elapsed time, not `now` (which tests skew to age tokens).
    const deadline = performance.now() + LOCK_TTL_MS + 4 * WAIT_POLL_MS;
    for (let attempt = 0; attempt < MAX_FLIGHT_ATTEMPTS; attempt++) {
      let begun;
      try {
        begun = await store.begin(userId, suffix, owner);
      } catch {
        return straight(mint);
      }
      if (begun.written) {
        // Another flight finished between our read and this call: its token, not a second mint.
        const token = begun.entry && servable({ entry: begun.entry });
        if (token) {
          return { token, cached: true };
        }
        // One this instance may not serve (fenced, unreadable, nearly expired): replace it.
        return mintAndWrite(userId, suffix, begun.epoch, begun.beganAtMs, undefined, mint);
      }
      if (begun.locked) {
        return mintAndWrite(userId, suffix, begun.epoch, begun.beganAtMs, owner, mint);
      }
      options.onWait?.("instance");
      const waited = await waitForHolder(userId, suffix, begun.epoch, deadline);
      switch (waited.outcome) {
        case "hit":
          return { token: waited.token!, cached: true };
        case "deleted":
          throw new UserDeletedError(userId);
        case "error":
          return straight(mint);
        case "timeout":
          // The holder is alive but slow: mint without the lock; the write still checks the epoch.
          return mintAndWrite(userId, suffix, begun.epoch, begun.beganAtMs, undefined, mint);
        case "retry":
          break;
      }
    }
    return straight(mint);
  }

  async function lookupOrMint(
    userId: string,
    suffix: string,
    mint: () => Promise<IssuedToken>,
  ): Promise<TokenCacheResult> {
    let read: EntryRead;
    try {
      read = await store.read(userId, suffix);
    } catch {
      return straight(mint);
    }
    if (read.deleted) {
      throw new UserDeletedError(userId);
    }
    const token = servable(read);
    if (token) {
      return { token, cached: true };
    }
    let led = false;
    const result = flights.run(flightKey(userId, suffix, read.epoch), () => {
      led = true;
      return fly(userId, suffix, mint);
    });
    if (!led) {
      options.onWait?.("process");
    }
    return result;
  }

  const flightKey = (userId: string, suffix: string, epoch: string) =>
    `${userId}\u0000${suffix}\u0000${epoch}`;
  const forgetFlights = (userId: string) => flights.forget(`${userId}\u0000`);

  /** One side of the bracket: did the store record it? */
  const record = (userId: string, tombstone: boolean): Promise<boolean> =>
    store.invalidate(userId, tombstone).then(
      () => true,
      () => false,
    );

  return {
    async getOrMint(key, mint) {
      const result = await lookupOrMint(key.userId, entrySuffix(key), mint);
      onLookup?.(result.cached ? "hit" : "miss");
      return result;
    },

    async invalidateUser(userId, upstream, opts) {
      // A flight of this user that began before the revoke may carry a token ACS minted before
      // it. The epoch in a flight's key normally keeps later requests out of it, but not when
      // Redis lost the epoch meanwhile (its read is "" again, as when the flight began): so the
      // user's flights are forgotten on both sides of the upstream call, and later requests start
      // their own.
      forgetFlights(userId);
      const before = await record(userId, false);
      let value;
      try {
        value = await upstream();
      } catch (error) {
        await record(userId, false);
        throw error;
      }
      const after = await record(userId, opts?.tombstone === true);
      forgetFlights(userId);
      return { value, confirmed: before && after };
    },

    async isDeleted(userId) {
      return store.isDeleted(userId).catch(() => false);
    },

    isReady: () => store.isReady().catch(() => false),

    async close() {
      flights.clear();
      await store.close();
    },
  };
}
