import { invalidInput } from "../errors.js";
import type { IssuedToken } from "../identity/identity-provider.js";
import type { Actor, MeteredUpstream } from "./upstream-budget.js";

export interface TeamsExchangeInput {
  /** The Teams user's Entra ID access token (audience: ACS's Teams.ManageCalls/Chats scopes). */
  teamsToken: string;
  /** The Entra ID application (client) id the token was issued to. */
  appId: string;
  /** The Teams user's Entra ID object id (`oid`). */
  userObjectId: string;
}

export interface TeamsGrant extends IssuedToken {
  userObjectId: string;
}

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Entra ID access tokens are JWTs of a few KB; anything far larger is not one. */
const MAX_TEAMS_TOKEN_LENGTH = 16 * 1024;

/** Throws `invalid-input` for anything ACS would refuse, so no upstream call is spent on it. */
function checkTeamsInput(input: TeamsExchangeInput): void {
  if (
    input.teamsToken.length === 0 ||
    input.teamsToken.length > MAX_TEAMS_TOKEN_LENGTH ||
    !/^[\w-]+\.[\w-]+\.[\w-]*$/.test(input.teamsToken)
  ) {
    throw invalidInput(
      "teamsToken must be the Teams user's Entra ID access token (a JWT).",
      "teamsToken",
    );
  }
  if (!GUID.test(input.appId)) {
    throw invalidInput("appId must be the Entra ID application (client) id, a GUID.", "appId");
  }
  if (!GUID.test(input.userObjectId)) {
    throw invalidInput(
      "userObjectId must be the Teams user's Entra ID object id, a GUID.",
      "userObjectId",
    );
  }
}

/**
 * A Teams user's ACS token for their Entra ID token (Custom Teams Endpoint). Straight from the
 * metered upstream, never cached: see docs/security.md ("Teams users"). Whose `oid` a caller may
 * name is the rights table's `teamsSelf` rule, checked before this runs.
 */
export async function exchangeTeamsToken(
  upstream: Pick<MeteredUpstream, "exchangeTeamsToken">,
  actor: Actor,
  input: TeamsExchangeInput,
): Promise<TeamsGrant> {
  checkTeamsInput(input);
  const token = await upstream.exchangeTeamsToken(actor, input);
  return { ...token, userObjectId: input.userObjectId };
}
