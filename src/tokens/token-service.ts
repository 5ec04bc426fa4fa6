import type { DirectoryIdentity } from "../directory/index.js";
import type { DirectoryRecords } from "../identity/directory-records.js";
import type { CreateUserInput } from "../identity/identity-directory.js";
import { viaOf, type Audit } from "./audit.js";
import { assertUserId, checkLifetime, checkScopes } from "./input-rules.js";
import type { AcsScope } from "./scopes.js";
import type { Actor, MeteredUpstream } from "./upstream-budget.js";
import type { TokenGrant, UserTokens } from "./user-tokens.js";

export interface IssueTokenInput {
  /** Absent: a new user and its token, in one upstream call (never cached). */
  userId?: string | undefined;
  scopes: readonly AcsScope[];
  expiresInMinutes?: number | undefined;
}

/**
 * The token operations on an identity named by its id: `createUser`, `issueToken`,
 * `revokeTokens`, `deleteUser`. Knows nothing of GraphQL; throws `DomainError`s. Who may name which
 * identity is the rights table's (auth/rights.ts), checked before these run: an admin any, a
 * signed-in caller their own.
 */
export interface TokenService {
  /**
   * A new identity, recorded in the directory (origin `admin`). With `externalId`, idempotent
   * across instances: the live identity with that external id is returned as it is, and concurrent
   * calls make one ACS create (docs/directory.md).
   */
  createUser(actor: Actor, input?: CreateUserInput): Promise<DirectoryIdentity>;
  issueToken(actor: Actor, input: IssueTokenInput): Promise<TokenGrant>;
  /** @returns when the revocation took effect (epoch ms) */
  revokeTokens(actor: Actor, userId: string): Promise<number>;
  /**
   * Deletes the identity at ACS, its cached tokens and its self-service mapping.
   * @returns when the user was deleted (epoch ms)
   */
  deleteUser(actor: Actor, userId: string): Promise<number>;
}

export function createTokenService(deps: {
  upstream: MeteredUpstream;
  userTokens: UserTokens;
  audit: Audit;
  directory: DirectoryRecords;
  /** ACS_CUSTOM_ID: the external id is sent to ACS as `customId`. */
  customId?: boolean;
}): TokenService {
  const { upstream, userTokens, audit, directory } = deps;
  return {
    async createUser(actor, input = {}) {
      const { externalId, displayName } = input;
      if (externalId === undefined) {
        const userId = await upstream.createUser(actor);
        audit({ event: "identity.created", userId, actor, via: "admin" });
        return directory.created({ id: userId, displayName, origin: "admin", actor });
      }
      const { identity } = await directory.createOnce(
        { externalId, displayName, origin: "admin", actor },
        async () => {
          const userId = await upstream.createUser(
            actor,
            deps.customId ? { customId: externalId } : undefined,
          );
          audit({ event: "identity.created", userId, actor, via: "admin" });
          return userId;
        },
        // A create that lost to another instance's (its lease ran out mid-create): the gateway's
        // own clean-up, uncharged. With customId both are the same identity: nothing to delete.
        async (userId) => {
          if (!deps.customId) {
            await upstream.uncharged.deleteUser(userId);
          }
        },
      );
      return identity;
    },

    async issueToken(actor, input) {
      const scopes = checkScopes(input.scopes);
      checkLifetime(input.expiresInMinutes);
      if (input.userId === undefined) {
        const created = await upstream.createUserAndToken(actor, scopes, input.expiresInMinutes);
        audit({ event: "identity.created", userId: created.userId, actor, via: "admin" });
        // Not awaited: the token is the answer, and the directory may still be opening.
        void directory.createdInBackground({ id: created.userId, origin: "admin", actor });
        return { userId: created.userId, ...created.token, scopes };
      }
      assertUserId(input.userId);
      return userTokens.issue(actor, input.userId, scopes, input.expiresInMinutes);
    },

    async revokeTokens(actor, userId) {
      assertUserId(userId);
      return userTokens.revoke(actor, userId, viaOf(actor));
    },

    async deleteUser(actor, userId) {
      assertUserId(userId);
      return userTokens.delete(actor, userId, viaOf(actor));
    },
  };
}
