import { Args, Ctx, Mutation, Query, Resolver } from "type-graphql";
import { IssueMyTokenArgs } from "../args/issue-token.args.js";
import type { GatewayContext } from "../context.js";
import { AccessToken } from "../types/access-token.type.js";
import { CommunicationUser } from "../types/communication-user.type.js";
import { Viewer } from "../types/payloads.type.js";
import { toAccessToken } from "./identity.resolver.js";

/** Self-service for signed-in end users: their own identity, created on first use. */
@Resolver()
export class ViewerResolver {
  @Query(() => Viewer, { description: "Who is calling, and their ACS identity if they have one." })
  async me(@Ctx() context: GatewayContext): Promise<Viewer> {
    const viewer = new Viewer();
    viewer.subject = context.caller.subject;
    const userId = await context.tokens.userIdOf(context.caller.key);
    viewer.communicationUser = userId === undefined ? null : CommunicationUser.of(userId);
    return viewer;
  }

  @Mutation(() => AccessToken, {
    description: "A token for the caller's own ACS identity, which is created on the first call.",
  })
  async issueMyToken(
    @Ctx() context: GatewayContext,
    @Args(() => IssueMyTokenArgs) { scopes, expiresInMinutes }: IssueMyTokenArgs,
  ): Promise<AccessToken> {
    await context.consumeMintBudget();
    const grant = await context.tokens.issueMyToken(
      context.caller.key,
      scopes,
      expiresInMinutes ?? undefined,
    );
    return toAccessToken(grant);
  }
}
