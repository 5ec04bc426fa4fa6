import { Directive, Field, ID, ObjectType } from "type-graphql";

@Directive('@key(fields: "id")')
@ObjectType({
  description:
    "An Azure Communication Services identity. A federation entity: other subgraphs may reference it by `id`.",
})
export class CommunicationUser {
  @Field(() => ID, { description: "The ACS communication user id, `8:acs:<resource>_<user>`." })
  id!: string;

  static of(id: string): CommunicationUser {
    const user = new CommunicationUser();
    user.id = id;
    return user;
  }
}
