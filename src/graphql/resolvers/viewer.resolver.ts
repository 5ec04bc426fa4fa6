import { Args, Ctx, Mutation, Query, Resolver } from "type-graphql";
import { IssueMyTokenArgs } from "../args/issue-token.args.js";
import type { SignedInContext } from "../context.js";
import { AccessToken } from "../types/access-token.type.js";
import { CommunicationUser } from "../types/communication-user.type.js";
import { DeleteUserPayload, RevokeTokensPayload, Viewer } from "../types/payloads.type.js";
import { deletePayload, revokePayload, toAccessToken } from "./identity.resolver.js";

/** Self-service for signed-in end users: their own identity, created on first use. */
@Resolver()
export class ViewerResolver {
  @Query(() => Viewer, { description: "Who is calling, and their ACS identity if they have one." })
  async me(@Ctx() context: SignedInContext): Promise<Viewer> {
    const viewer = new Viewer();
    viewer.subject = context.caller.subject;
    const userId = await context.ownUserId();
    viewer.communicationUser = userId === undefined ? null : CommunicationUser.of(userId);
    return viewer;
  }

  @Query(() => String, {
    description:
      "The ACS resource's endpoint URL, which a client's ChatClient needs beside its token. Never a key.",
  })
  acsEndpoint(@Ctx() context: SignedInContext): string {
    return context.acsEndpoint;
  }

  @Mutation(() => AccessToken, {
    description: "A token for the caller's own ACS identity, which is created on the first call.",
  })
  async issueMyToken(
    @Ctx() context: SignedInContext,
    @Args(() => IssueMyTokenArgs) { scopes, expiresInMinutes }: IssueMyTokenArgs,
  ): Promise<AccessToken> {
    const grant = await context.selfService.issueMyToken(
      context.actor,
      scopes,
      expiresInMinutes ?? undefined,
    );
    return toAccessToken(grant);
  }

  @Mutation(() => RevokeTokensPayload, {
    description:
      "Signs the caller out everywhere: revokes every token of their own ACS identity. Repeating it is harmless; NOT_FOUND when they have no identity.",
  })
  async revokeMyTokens(@Ctx() context: SignedInContext): Promise<RevokeTokensPayload> {
    const { userId, revokedAt } = await context.selfService.revokeMyTokens(context.actor);
    return revokePayload(userId, revokedAt);
  }

  @Mutation(() => DeleteUserPayload, {
    description:
      "Erases the caller's own ACS identity, its tokens and its mapping; the next issueMyToken creates a new identity. NOT_FOUND when they have none (so repeating it changes nothing).",
  })
  async deleteMe(@Ctx() context: SignedInContext): Promise<DeleteUserPayload> {
    const { userId, deletedAt } = await context.selfService.deleteMe(context.actor);
    return deletePayload(userId, deletedAt);
  }
}
