import { Field, ID, ObjectType } from "type-graphql";
import { DateTimeScalar } from "../scalars/date-time.scalar.js";
import { CommunicationUser } from "./communication-user.type.js";

@ObjectType({ description: "Every token of the user issued before `revokedAt` no longer works." })
export class RevokeTokensPayload {
  @Field(() => CommunicationUser)
  user!: CommunicationUser;

  @Field(() => DateTimeScalar)
  revokedAt!: number;
}

@ObjectType({ description: "The identity is gone at ACS, with all its tokens and data." })
export class DeleteUserPayload {
  @Field(() => ID)
  userId!: string;

  @Field(() => DateTimeScalar)
  deletedAt!: number;
}

@ObjectType({ description: "The signed-in caller." })
export class Viewer {
  @Field(() => String, {
    description: "The caller's subject (`sub` claim), or `anonymous` when AUTH_MODE=none.",
  })
  subject!: string;

  @Field(() => CommunicationUser, {
    nullable: true,
    description: "The caller's own ACS identity; null until the first `issueMyToken`.",
  })
  communicationUser!: CommunicationUser | null;
}
