import { ArgsType, Field, ID, Int } from "type-graphql";
import { TokenScope } from "../types/token-scope.enum.js";

const LIFETIME = "60 to 1440 minutes; ACS's default (1440) when omitted.";

@ArgsType()
export class IssueTokenArgs {
  @Field(() => ID, {
    nullable: true,
    description: "Omit to create a new user with its token (admins only).",
  })
  userId?: string | null;

  @Field(() => [TokenScope], { description: "At least one; duplicates are ignored." })
  scopes!: TokenScope[];

  @Field(() => Int, { nullable: true, description: LIFETIME })
  expiresInMinutes?: number | null;
}

@ArgsType()
export class IssueMyTokenArgs {
  @Field(() => [TokenScope], { description: "At least one; duplicates are ignored." })
  scopes!: TokenScope[];

  @Field(() => Int, { nullable: true, description: LIFETIME })
  expiresInMinutes?: number | null;
}
