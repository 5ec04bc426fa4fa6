import { Args, Ctx, Mutation, Resolver } from "type-graphql";
import { exchangeTeamsToken } from "../../tokens/teams.js";
import { ExchangeTeamsTokenArgs } from "../args/exchange-teams-token.args.js";
import type { SignedInContext } from "../context.js";
import { TeamsAccessToken } from "../types/teams-access-token.type.js";

/** Teams users (Custom Teams Endpoint): their Entra ID token exchanged for an ACS token. */
@Resolver()
export class TeamsResolver {
  @Mutation(() => TeamsAccessToken, {
    description:
      "Exchanges a Teams user's Entra ID token for an ACS token. Admins for anyone; others only for their own `oid`. Never cached.",
  })
  async exchangeTeamsToken(
    @Ctx() context: SignedInContext,
    @Args(() => ExchangeTeamsTokenArgs) args: ExchangeTeamsTokenArgs,
  ): Promise<TeamsAccessToken> {
    const grant = await exchangeTeamsToken(context.upstream, context.actor, args);
    const result = new TeamsAccessToken();
    result.token = grant.token;
    result.expiresOn = grant.expiresOn;
    result.userObjectId = grant.userObjectId;
    return result;
  }
}
