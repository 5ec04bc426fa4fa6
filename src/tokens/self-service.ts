import { DomainError } from "../errors.js";
import type { DirectoryRecords } from "../identity/directory-records.js";
import type { IdentityMappings } from "../identity/identity-mappings.js";
import type { Provisioner } from "../identity/provisioning.js";
import { UpstreamError } from "../identity/upstream-error.js";
import type { Audit } from "./audit.js";
import { checkLifetime, checkScopes } from "./input-rules.js";
import type { AcsScope } from "./scopes.js";
import type { Actor, MeteredUpstream } from "./upstream-budget.js";
import type { TokenGrant, UserTokens } from "./user-tokens.js";

/**
 * A signed-in caller's own identity, found from the caller (never from arguments): created,
 * recorded and confirmed on first use (identity/provisioning.ts), then its tokens under the same
 * cache rules as the operations by user id (user-tokens.ts). `me` is not here: it only reads the
 * mapping (the context's `ownUserId`, identity-mappings.ts).
 */
export interface SelfService {
  /** The caller's own token; its identity is created and mapped on first use. */
  issueMyToken(
    actor: Actor,
    scopes: readonly AcsScope[],
    expiresInMinutes?: number,
  ): Promise<TokenGrant>;
  /** Revokes every token of the caller's own identity; `not-found` when the caller has none. */
  revokeMyTokens(actor: Actor): Promise<{ userId: string; revokedAt: number }>;
  /**
   * Deletes the caller's own identity at ACS, its cached tokens and its mapping (erasure); the next
   * `issueMyToken` makes a new identity. `not-found` when the caller has none.
   */
  deleteMe(actor: Actor): Promise<{ userId: string; deletedAt: number }>;
}

/** ACS says the identity is gone (deleted, or another resource's): its mapping may be forgotten. */
function isGone(error: unknown): boolean {
  return (
    (error instanceof UpstreamError &&
      (error.failure === "not_found" || error.failure === "not_owned")) ||
    (error instanceof DomainError && error.kind === "not-found")
  );
}

export function createSelfService(deps: {
  /** Charges the identity a caller's first call creates to that caller. */
  upstream: MeteredUpstream;
  userTokens: UserTokens;
  provisioner: Provisioner;
  mappings: IdentityMappings;
  audit: Audit;
  directory: DirectoryRecords;
  /** ACS_CUSTOM_ID: the caller's external id is sent to ACS as `customId`. */
  customId?: boolean;
  now: () => number;
}): SelfService {
  const { upstream, userTokens, provisioner, mappings, audit, directory, now } = deps;
  /** One identity creation per subject at a time in this process (the store arbitrates across instances). */
  const creating = new Map<string, Promise<string>>();

  /**
   * The ACS create behind a caller's first identity (run by the provisioner, which records the
   * mapping). With an external id (the AUTH_EXTERNAL_ID_CLAIM claim) it goes through the
   * directory's `createOnce`: an identity an admin provisioned for that external id, or one any
   * instance is creating, becomes the caller's instead of a second one. Without one (the anonymous
   * development caller) the identity is recorded in the background.
   */
  async function createIdentity(actor: Actor): Promise<string> {
    const externalId = actor.externalId;
    if (externalId === undefined) {
      const userId = await upstream.createUser(actor);
      audit({ event: "identity.created", userId, actor, via: "self-service" });
      void directory.createdInBackground({ id: userId, origin: "self-service", actor });
      return userId;
    }
    const { identity } = await directory.createOnce(
      { externalId, origin: "self-service", actor },
      async () => {
        const userId = await upstream.createUser(
          actor,
          deps.customId ? { customId: externalId } : undefined,
        );
        audit({ event: "identity.created", userId, actor, via: "self-service" });
        return userId;
      },
      async (userId) => {
        if (!deps.customId) {
          await upstream.uncharged.deleteUser(userId);
        }
      },
    );
    return identity.id;
  }

  /** The caller's identity for the token path: may be stale (known-mappings.ts says why that is safe). */
  async function ensureIdentity(actor: Actor): Promise<string> {
    const remembered = mappings.remembered(actor.key);
    if (remembered !== undefined) {
      return remembered;
    }
    // Confirmed or pending: a pending identity is already the caller's (provisioning.ts).
    const mapped = await provisioner.currentIdentity(actor.key);
    if (mapped !== undefined) {
      mappings.remember(actor.key, mapped);
      return mapped;
    }
    let flight = creating.get(actor.key);
    if (!flight) {
      const externalId = actor.externalId;
      // The directory is read first, outside the provisioner's reservation lease: a directory
      // still opening (PGlite's first start takes seconds) must not eat the lease that bounds the
      // ACS create, or another call would take the reservation over. One indexed read.
      const warm =
        externalId === undefined ? Promise.resolve() : directory.getByExternalId(externalId);
      flight = warm
        .then(() => provisioner.identityOf(actor.key, () => createIdentity(actor)))
        .then((userId) => {
          mappings.remember(actor.key, userId);
          return userId;
        })
        .finally(() => creating.delete(actor.key));
      creating.set(actor.key, flight);
    }
    return flight;
  }

  async function ownIdentity(actor: Actor): Promise<string> {
    // A pending identity counts: its token may be in the caller's hands, so revoking or deleting
    // it must not answer NOT_FOUND.
    const userId = await provisioner.currentIdentity(actor.key);
    if (userId === undefined) {
      throw new DomainError("not-found", "You have no communication identity yet.");
    }
    return userId;
  }

  return {
    async issueMyToken(actor, scopesIn, expiresInMinutes) {
      const scopes = checkScopes(scopesIn);
      checkLifetime(expiresInMinutes);
      const userId = await ensureIdentity(actor);
      try {
        return await userTokens.issue(actor, userId, scopes, expiresInMinutes);
      } catch (error) {
        if (!isGone(error)) {
          throw error;
        }
        // The mapped identity was deleted (by an admin, or outside the gateway), or belongs to
        // another ACS resource, and the mapping outlived it: forget it and give the caller a
        // fresh identity, once. The mapping may have been this process's memory of one that
        // another instance already removed (deleteMe there): that memory goes either way.
        mappings.forgetRemembered(actor.key);
        await mappings.forgetDeleted(userId);
        // The directory must let go too, or its live record would hand the caller the same gone
        // identity again (createOnce by external id). Awaited: the next line depends on it.
        await directory.deleted(userId, "gateway");
        return userTokens.issue(actor, await ensureIdentity(actor), scopes, expiresInMinutes);
      }
    },

    async revokeMyTokens(actor) {
      const userId = await ownIdentity(actor);
      return { userId, revokedAt: await userTokens.revoke(actor, userId, "self-service") };
    },

    async deleteMe(actor) {
      const userId = await ownIdentity(actor);
      try {
        return { userId, deletedAt: await userTokens.delete(actor, userId, "self-service") };
      } catch (error) {
        if (!isGone(error)) {
          throw error;
        }
        // Already gone at ACS (an earlier deleteMe that lost its answer, or an admin): the
        // caller's erasure is complete once the mapping goes too.
        await mappings.forgetDeleted(userId);
        await directory.deleted(userId, actor);
        return { userId, deletedAt: now() };
      }
    },
  };
}
