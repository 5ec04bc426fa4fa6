import type { IssuedToken } from "../identity/identity-provider.js";

/**
 * The narrow storage interface under the one token-cache algorithm (token-cache-coordinator.ts).
 * A store keeps, per user: an epoch (a value that changes on every invalidation and never
 * repeats), a tombstone, entries (one per entry suffix, each remembering the epoch it was written
 * under) and, for shared stores, a short singleflight lock per entry.
 *
 * Stores do not decide: they read, lock and write atomically where needed, and THROW when they
 * cannot (Redis down, slow, breaker open). The coordinator turns every throw into a miss.
 */
export interface StoredEntry {
  token: IssuedToken;
  /** When the flight that wrote it began (store clock, ms): the outage fence compares it. */
  beganAtMs: number;
}

export interface EntryRead {
  /** The user's current epoch; "" when none is recorded yet. */
  epoch: string;
  /** The user carries a deletion tombstone. */
  deleted: boolean;
  /** The entry, only if it was written under `epoch` (never an entry from an older epoch). */
  entry: StoredEntry | undefined;
  /** Only with `withLock`: another flight holds this entry's lock under `epoch`. */
  lockedByOther: boolean;
}

export interface Begun {
  /** The user's epoch now (created if there was none); a write must name it. */
  epoch: string;
  /** This flight holds the entry's lock (always true for a store that is not shared). */
  locked: boolean;
  /** Store clock, ms. */
  beganAtMs: number;
  /**
   * An entry was written under `epoch` since the caller's read (a flight that just finished): no
   * lock was taken, and the caller serves `entry` instead of minting a second token for the key.
   */
  written: boolean;
  /** With `written`: the entry, when it opens and this instance may serve it. */
  entry?: StoredEntry | undefined;
}

export interface TokenStore {
  /** Epoch, tombstone and the entry (a hit costs this one call; Redis: one MGET). */
  read(userId: string, suffix: string, withLock?: boolean): Promise<EntryRead>;
  /**
   * Read (or create) the epoch; hand back the entry if one was written under it since the caller's
   * read, else take the entry's lock as `owner` unless a flight of this epoch holds it.
   */
  begin(userId: string, suffix: string, owner: string): Promise<Begun>;
  /**
   * Store `token` only if the user's epoch is still `epoch` (the late-answer race is closed
   * here, atomically) and `ttlMs > 0`; release the lock if `owner` still holds it, either way.
   * @returns whether the entry was stored
   */
  write(
    userId: string,
    suffix: string,
    write: { epoch: string; beganAtMs: number; token: IssuedToken; ttlMs: number; owner?: string },
  ): Promise<boolean>;
  /**
   * Release the lock if `owner` still holds it: the flight's upstream call failed, or its `begin`
   * or `write` did (a command that timed out may still run when the store answers again).
   */
  release(userId: string, suffix: string, owner: string): Promise<void>;
  /** A new epoch for the user (every entry unservable at once), entries dropped, tombstone if asked. Throws when not recorded. */
  invalidate(userId: string, tombstone: boolean): Promise<void>;
  isDeleted(userId: string): Promise<boolean>;
  isReady(): Promise<boolean>;
  close(): Promise<void>;
}
