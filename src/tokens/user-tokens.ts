import { UserDeletedError, type TokenCache } from "../cache/token-cache.js";
import { DomainError, notFound } from "../errors.js";
import type { DirectoryRecords } from "../identity/directory-records.js";
import type { IdentityMappings } from "../identity/identity-mappings.js";
import type { Audit, AuditEvent } from "./audit.js";
import type { AcsScope } from "./scopes.js";
import type { Actor, MeteredUpstream } from "./upstream-budget.js";

export interface TokenGrant {
  userId: string;
  token: string;
  /** epoch ms */
  expiresOn: number;
  /** normalised: sorted, unique */
  scopes: readonly AcsScope[];
}

/**
 * The tokens of one ACS identity whose id is known, under the token cache's rules: issued from the
 * cache while a token has enough validity left, revoked and deleted inside the cache's bracket
 * (docs/caching.md, "Revocation and deletion: what is guaranteed"). The operations by user id
 * (token-service.ts) and self-service (self-service.ts) differ only in how they find the identity
 * and check their input, which is done before these are called.
 */
export interface UserTokens {
  /** `scopes` already checked and normalised (input-rules.ts). */
  issue(
    actor: Actor,
    userId: string,
    scopes: AcsScope[],
    expiresInMinutes: number | undefined,
  ): Promise<TokenGrant>;
  /** @returns when the revocation took effect (epoch ms) */
  revoke(actor: Actor, userId: string, via: AuditEvent["via"]): Promise<number>;
  /** Deletes the identity at ACS, then its mapping. @returns when it was deleted (epoch ms) */
  delete(actor: Actor, userId: string, via: AuditEvent["via"]): Promise<number>;
}

export function createUserTokens(deps: {
  upstream: MeteredUpstream;
  cache: TokenCache;
  mappings: Pick<IdentityMappings, "forgetDeleted">;
  audit: Audit;
  /** Told, in the background, of tokens minted at ACS, revocations and deletions. */
  directory: Pick<DirectoryRecords, "tokenMinted" | "revoked" | "deleted">;
  now: () => number;
}): UserTokens {
  const { upstream, cache, mappings, audit, directory, now } = deps;

  /**
   * The revoke/delete bracket of the cache around the upstream call: the one place the services
   * ask the cache to invalidate a user.
   */
  async function invalidate(
    userId: string,
    call: () => Promise<void>,
    tombstone: boolean,
  ): Promise<{ at: number; confirmed: boolean }> {
    if (await cache.isDeleted(userId)) {
      throw notFound();
    }
    const { confirmed } = await cache.invalidateUser(userId, call, { tombstone });
    return { at: now(), confirmed };
  }

  return {
    async issue(actor, userId, scopes, expiresInMinutes) {
      try {
        const { token, cached } = await cache.getOrMint({ userId, scopes, expiresInMinutes }, () =>
          upstream.issueToken(actor, userId, scopes, expiresInMinutes),
        );
        if (actor.usage) {
          actor.usage[cached ? "cacheHits" : "cacheMisses"]++;
        }
        if (!cached) {
          // Minted at ACS: one UPDATE by primary key, in the background. A hit writes nothing.
          void directory.tokenMinted(userId, actor.isAdmin ? "admin" : "self-service");
        }
        return { userId, token: token.token, expiresOn: token.expiresOn, scopes };
      } catch (error) {
        if (error instanceof UserDeletedError) {
          throw notFound();
        }
        throw error;
      }
    },

    async revoke(actor, userId, via) {
      const { at, confirmed } = await invalidate(
        userId,
        () => upstream.revokeTokens(actor, userId),
        false,
      );
      audit({ event: "tokens.revoked", userId, actor, via });
      // ACS revoked whatever the cache could confirm: the event is written either way.
      void directory.revoked(userId, actor);
      return confirmedAt(confirmed, at);
    },

    async delete(actor, userId, via) {
      const { at, confirmed } = await invalidate(
        userId,
        () => upstream.deleteUser(actor, userId),
        true,
      );
      audit({ event: "identity.deleted", userId, actor, via });
      // Waited for before answering (its first attempt; retries go on in the background): the
      // caller's next issueMyToken provisions through the directory, whose live record, not yet
      // marked deleted, would hand back this gone identity (createOnce by external id). It never
      // rejects, and runs beside the mapping's removal, so a stalled database costs one wait.
      const recorded = directory.deleted(userId, actor);
      // The identity is gone at ACS whatever the cache could record: its mapping goes too.
      await mappings.forgetDeleted(userId);
      await recorded;
      return confirmedAt(confirmed, at);
    },
  };
}

/**
 * The upstream change succeeded, but the shared cache could not record the invalidation (Redis
 * unreachable): another instance may still serve an older token until this one replays it. Say so
 * instead of OK; a retry that reaches Redis confirms (docs/caching.md).
 */
function confirmedAt(confirmed: boolean, at: number): number {
  if (!confirmed) {
    throw new DomainError(
      "revocation-unconfirmed",
      "ACS took the change, but the token cache could not confirm that no gateway instance still serves a token issued before it. A retry confirms it once the cache is reachable.",
      { revokedAt: new Date(at).toISOString() },
    );
  }
  return at;
}
