import { Field, ObjectType } from "type-graphql";
import type { IdentityConnection } from "../../directory/index.js";
import { CommunicationUser } from "./communication-user.type.js";

@ObjectType({ description: "Where a page ends (Relay cursor connections)." })
export class PageInfo {
  @Field(() => Boolean, {
    description: "Whether another page follows: ask with `after: endCursor`.",
  })
  hasNextPage!: boolean;

  @Field(() => String, {
    nullable: true,
    description: "The last edge's cursor; null for an empty page.",
  })
  endCursor!: string | null;
}

@ObjectType()
export class CommunicationUserEdge {
  @Field(() => String, { description: "Opaque: pass it as `after` to continue after this node." })
  cursor!: string;

  @Field(() => CommunicationUser)
  node!: CommunicationUser;
}

@ObjectType({
  description:
    "A page of identities in creation order (oldest first); stable while pages are read.",
})
export class CommunicationUserConnection {
  @Field(() => [CommunicationUserEdge])
  edges!: CommunicationUserEdge[];

  @Field(() => PageInfo)
  pageInfo!: PageInfo;

  static from(connection: IdentityConnection): CommunicationUserConnection {
    const result = new CommunicationUserConnection();
    result.edges = connection.edges.map(({ cursor, node }) => {
      const edge = new CommunicationUserEdge();
      edge.cursor = cursor;
      edge.node = CommunicationUser.from(node);
      return edge;
    });
    const pageInfo = new PageInfo();
    pageInfo.hasNextPage = connection.pageInfo.hasNextPage;
    pageInfo.endCursor = connection.pageInfo.endCursor;
    result.pageInfo = pageInfo;
    return result;
  }
}
