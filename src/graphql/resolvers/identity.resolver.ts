import { Arg, Args, Ctx, ID, Mutation, Resolver } from "type-graphql";
import type { TokenGrant } from "../../tokens/user-tokens.js";
import { createUserInput, CreateUserArgs } from "../args/directory.args.js";
import { IssueTokenArgs } from "../args/issue-token.args.js";
import type { SignedInContext } from "../context.js";
import { AccessToken } from "../types/access-token.type.js";
import { CommunicationUser } from "../types/communication-user.type.js";
import { DeleteUserPayload, RevokeTokensPayload } from "../types/payloads.type.js";
import type { TokenScope } from "../types/token-scope.enum.js";
import { userOf } from "./directory.resolver.js";

export function toAccessToken(grant: TokenGrant): AccessToken {
  const result = new AccessToken();
  result.token = grant.token;
  result.expiresOn = grant.expiresOn;
  // TokenScope's values are the ACS strings, so the normalised scopes are already enum values.
  result.scopes = grant.scopes as readonly string[] as readonly TokenScope[];
  result.user = CommunicationUser.of(grant.userId);
  return result;
}

export function revokePayload(userId: string, revokedAt: number): RevokeTokensPayload {
  const payload = new RevokeTokensPayload();
  payload.user = CommunicationUser.of(userId);
  payload.revokedAt = revokedAt;
  return payload;
}

export function deletePayload(userId: string, deletedAt: number): DeleteUserPayload {
  const payload = new DeleteUserPayload();
  payload.userId = userId;
  payload.deletedAt = deletedAt;
  return payload;
}

/**
 * Thin: parse arguments and call the token service. Who may call what is the rights table's
 * (auth/rights.ts), applied before these run; errors are mapped in errors.ts.
 */
@Resolver()
export class IdentityResolver {
  @Mutation(() => CommunicationUser, {
    description:
      "Creates an ACS identity, recorded in the directory. With `externalId`, idempotent: the live identity with that external id is returned (its display name unchanged) instead of a second one. Admins only.",
  })
  async createUser(
    @Ctx() context: SignedInContext,
    @Args(() => CreateUserArgs) args: CreateUserArgs,
  ): Promise<CommunicationUser> {
    return userOf(context, await context.tokens.createUser(context.actor, createUserInput(args)));
  }

  @Mutation(() => AccessToken, {
    description:
      "An access token for a user, served from the cache while it has enough validity left. Without `userId`: a new user and its token in one ACS call (admins only).",
  })
  async issueToken(
    @Ctx() context: SignedInContext,
    @Args(() => IssueTokenArgs) { userId, scopes, expiresInMinutes }: IssueTokenArgs,
  ): Promise<AccessToken> {
    const grant = await context.tokens.issueToken(context.actor, {
      userId: userId ?? undefined,
      scopes,
      expiresInMinutes: expiresInMinutes ?? undefined,
    });
    return toAccessToken(grant);
  }

  @Mutation(() => RevokeTokensPayload, {
    description: "Revokes every token of the user at ACS and drops the gateway's cached tokens.",
  })
  async revokeTokens(
    @Ctx() context: SignedInContext,
    @Arg("userId", () => ID) userId: string,
  ): Promise<RevokeTokensPayload> {
    return revokePayload(userId, await context.tokens.revokeTokens(context.actor, userId));
  }

  @Mutation(() => DeleteUserPayload, {
    description:
      "Deletes the identity at ACS (revoking its tokens) and its self-service mapping. Admins only.",
  })
  async deleteUser(
    @Ctx() context: SignedInContext,
    @Arg("userId", () => ID) userId: string,
  ): Promise<DeleteUserPayload> {
    return deletePayload(userId, await context.tokens.deleteUser(context.actor, userId));
  }
}
