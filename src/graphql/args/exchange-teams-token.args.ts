import { ArgsType, Field, ID } from "type-graphql";

@ArgsType()
export class ExchangeTeamsTokenArgs {
  @Field(() => String, {
    description:
      "The Teams user's Entra ID access token for ACS (scopes Teams.ManageCalls / Teams.ManageChats).",
  })
  teamsToken!: string;

  @Field(() => ID, { description: "The Entra ID application (client) id the token was issued to." })
  appId!: string;

  @Field(() => ID, {
    description: "The Teams user's Entra ID object id; a non-admin may name only their own `oid`.",
  })
  userObjectId!: string;
}
