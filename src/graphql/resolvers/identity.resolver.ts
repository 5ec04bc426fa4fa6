import { Arg, Args, Authorized, Ctx, ID, Mutation, Resolver } from "type-graphql";
import { forbidden } from "../../errors.js";
import type { TokenGrant } from "../../tokens/token-service.js";
import { ADMIN, assertMayActOn } from "../auth-checker.js";
import type { GatewayContext } from "../context.js";
import { AccessToken } from "../types/access-token.type.js";
import { CommunicationUser } from "../types/communication-user.type.js";
import { DeleteUserPayload, RevokeTokensPayload } from "../types/payloads.type.js";
import type { TokenScope } from "../types/token-scope.enum.js";
import { IssueTokenArgs } from "../args/issue-token.args.js";

export function toAccessToken(grant: TokenGrant): AccessToken {
  const result = new AccessToken();
  result.token = grant.token;
  result.expiresOn = grant.expiresOn;
  // TokenScope's values are the ACS strings, so the normalised scopes are already enum values.
  result.scopes = grant.scopes as readonly string[] as readonly TokenScope[];
  result.user = CommunicationUser.of(grant.userId);
  return result;
}

/** Thin: parse arguments, check rights, call the token service. Errors are mapped in errors.ts. */
@Resolver()
export class IdentityResolver {
  @Authorized(ADMIN)
  @Mutation(() => CommunicationUser, { description: "Creates a new ACS identity. Admins only." })
  async createUser(@Ctx() context: GatewayContext): Promise<CommunicationUser> {
    return CommunicationUser.of(await context.tokens.createUser());
  }

  @Mutation(() => AccessToken, {
    description:
      "An access token for a user, served from the cache while it has enough validity left. Without `userId`: a new user and its token in one ACS call (admins only).",
  })
  async issueToken(
    @Ctx() context: GatewayContext,
    @Args(() => IssueTokenArgs) { userId, scopes, expiresInMinutes }: IssueTokenArgs,
  ): Promise<AccessToken> {
    if (userId === undefined || userId === null) {
      if (!context.caller.isAdmin) {
        throw forbidden("Only an admin may create users; use issueMyToken for your own token.");
      }
    } else {
      await assertMayActOn(context, userId);
    }
    await context.consumeMintBudget();
    const grant = await context.tokens.issueToken({
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
    @Ctx() context: GatewayContext,
    @Arg("userId", () => ID) userId: string,
  ): Promise<RevokeTokensPayload> {
    await assertMayActOn(context, userId);
    const payload = new RevokeTokensPayload();
    payload.revokedAt = await context.tokens.revokeTokens(userId);
    payload.user = CommunicationUser.of(userId);
    return payload;
  }

  @Authorized(ADMIN)
  @Mutation(() => DeleteUserPayload, {
    description:
      "Deletes the identity at ACS (revoking its tokens) and its self-service mapping. Admins only.",
  })
  async deleteUser(
    @Ctx() context: GatewayContext,
    @Arg("userId", () => ID) userId: string,
  ): Promise<DeleteUserPayload> {
    const payload = new DeleteUserPayload();
    payload.deletedAt = await context.tokens.deleteUser(userId);
    payload.userId = userId;
    return payload;
  }
}
