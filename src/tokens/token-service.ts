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
  createUser(actor: Actor): Promise<string>;
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
}): TokenService {
  const { upstream, userTokens, audit } = deps;
  return {
    async createUser(actor) {
      const userId = await upstream.createUser(actor);
      audit({ event: "identity.created", userId, actor, via: "admin" });
      return userId;
    },

    async issueToken(actor, input) {
      const scopes = checkScopes(input.scopes);
      checkLifetime(input.expiresInMinutes);
      if (input.userId === undefined) {
        const created = await upstream.createUserAndToken(actor, scopes, input.expiresInMinutes);
        audit({ event: "identity.created", userId: created.userId, actor, via: "admin" });
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
