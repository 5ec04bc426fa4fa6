import { Field, ObjectType } from "type-graphql";
import { DateTimeScalar } from "../scalars/date-time.scalar.js";
import { CommunicationUser } from "./communication-user.type.js";
import { TokenScope } from "./token-scope.enum.js";

@ObjectType({ description: "An ACS access token and what it is good for." })
export class AccessToken {
  @Field(() => String, {
    description: "The bearer token for the ACS chat and calling SDKs. Treat it as a secret.",
  })
  token!: string;

  @Field(() => DateTimeScalar, { description: "When the token stops working." })
  expiresOn!: number;

  @Field(() => [TokenScope])
  scopes!: readonly TokenScope[];

  @Field(() => CommunicationUser)
  user!: CommunicationUser;
}
