import { Field, ID, ObjectType } from "type-graphql";
import { DateTimeScalar } from "../scalars/date-time.scalar.js";

@ObjectType({
  description:
    "An ACS access token for a Teams user (Custom Teams Endpoint): it acts as that Teams user, not as a CommunicationUser.",
})
export class TeamsAccessToken {
  @Field(() => String, {
    description: "The bearer token for the ACS calling and chat SDKs. Treat it as a secret.",
  })
  token!: string;

  @Field(() => DateTimeScalar, {
    description: "When the token stops working: as ACS says, at most the Entra ID token's expiry.",
  })
  expiresOn!: number;

  @Field(() => ID, { description: "The Teams user's Entra ID object id." })
  userObjectId!: string;
}
