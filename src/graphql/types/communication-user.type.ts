import { Directive, Field, ID, ObjectType } from "type-graphql";
import type { DirectoryIdentity } from "../../directory/index.js";
import { DateTimeScalar } from "../scalars/date-time.scalar.js";

/**
 * The directory's fields (`externalId` ... `deletedAt`) are resolved from the identity's record
 * (resolvers/communication-user.resolver.ts): the one the payload already holds (`record`), or
 * the record loaded once per request and id (graphql/directory-records.ts).
 */
@Directive('@key(fields: "id")')
@Directive('@key(fields: "externalId")')
@ObjectType({
  description:
    "An Azure Communication Services identity. A federation entity: other subgraphs may reference it by `id`, or by `externalId` (the app's own id for the person).",
})
export class CommunicationUser {
  @Field(() => ID, { description: "The ACS communication user id, `8:acs:<resource>_<user>`." })
  id!: string;

  @Field(() => String, {
    nullable: true,
    description:
      "The app's own id for this person, unique among live identities: `createUser(externalId:)` is idempotent by it. Null for an identity created without one.",
  })
  externalId?: string | null;

  @Field(() => String, { nullable: true, description: "A name for people; not unique." })
  displayName?: string | null;

  @Field(() => DateTimeScalar, {
    nullable: true,
    description: "When the gateway created (or first recorded) the identity; null when unknown.",
  })
  createdAt?: Date | null;

  @Field(() => DateTimeScalar, {
    nullable: true,
    description:
      "When the gateway last minted a token for it at ACS (tokens served from the cache do not count), recorded up to a second after the mint.",
  })
  lastTokenIssuedAt?: Date | null;

  @Field(() => DateTimeScalar, {
    nullable: true,
    description: "When the identity was deleted; null while it exists.",
  })
  deletedAt?: Date | null;

  /**
   * The directory record behind the fields above, when the payload already holds it (not a
   * GraphQL field). Undefined: not loaded yet; null: the directory does not know the identity.
   */
  record?: DirectoryIdentity | null;

  static of(id: string): CommunicationUser {
    const user = new CommunicationUser();
    user.id = id;
    return user;
  }

  /** A user whose directory fields come from `record`, with no further lookup. */
  static from(record: DirectoryIdentity): CommunicationUser {
    const user = CommunicationUser.of(record.id);
    user.record = record;
    return user;
  }
}
