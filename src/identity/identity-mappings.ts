import { createKnownMappings, type KnownMappings } from "./known-mappings.js";
import type { UserMappingStore } from "./user-mapping-store.js";

/**
 * Who owns which ACS identity, and which identities are gone: what the rights table (the `owner`
 * rule), `me` and federation's `_entities` ask. Every answer comes from the truth: the mapping
 * store, and the token cache's tombstones for deletions; never from this process's memory of
 * mappings (known-mappings.ts), which only the token path may read.
 */
export interface Ownership {
  /** The ACS identity of a signed-in caller (`Caller.key`), confirmed or pending, if any. */
  userIdOf(subjectKey: string): Promise<string | undefined>;
  /**
   * Is or was `userId` the caller's own identity (also after it was deleted or replaced)? The
   * rights check for revoking tokens: a former owner may still revoke what was theirs.
   */
  ownsOrOwned(subjectKey: string, userId: string): Promise<boolean>;
  /** Is the identity known to be deleted (the token cache's tombstone)? For `_entities`. */
  isKnownDeleted(userId: string): Promise<boolean>;
}

/**
 * The mapping layer as the token services use it: `Ownership`, plus this process's memory of
 * mappings for the token path, and forgetting the mapping of a deleted identity in both places.
 */
export interface IdentityMappings extends Ownership {
  /** The caller's identity as this process last saw it: may be stale (known-mappings.ts). */
  remembered(subjectKey: string): string | undefined;
  remember(subjectKey: string, userId: string): void;
  /** Drops this process's memory of the caller's mapping (the store keeps it). */
  forgetRemembered(subjectKey: string): void;
  /** Forgets a deleted identity's mapping: in the store, then in this process's memory. */
  forgetDeleted(userId: string): Promise<void>;
}

export function createIdentityMappings(deps: {
  /** The store callers see (its failures already turned into API errors). */
  store: UserMappingStore;
  /** Where deletions are recorded: the token cache (`TokenCache.isDeleted`). */
  tombstones: { isDeleted(userId: string): Promise<boolean> };
  /** @default 10,000 entries for at most 60 s */
  known?: KnownMappings;
}): IdentityMappings {
  const { store, tombstones } = deps;
  const known = deps.known ?? createKnownMappings();
  return {
    userIdOf: (subjectKey) => store.get(subjectKey),
    ownsOrOwned: (subjectKey, userId) => store.ownsOrOwned(subjectKey, userId),
    isKnownDeleted: (userId) => tombstones.isDeleted(userId),
    remembered: (subjectKey) => known.get(subjectKey),
    remember: (subjectKey, userId) => known.remember(subjectKey, userId),
    forgetRemembered: (subjectKey) => known.forget(subjectKey),
    async forgetDeleted(userId) {
      const subjectKey = await store.removeByUserId(userId);
      if (subjectKey !== undefined) {
        known.forget(subjectKey);
      }
    },
  };
}
