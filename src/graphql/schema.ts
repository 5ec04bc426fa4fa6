import { buildSubgraphSchema } from "@apollo/subgraph";
import { printSchemaWithDirectives } from "@graphql-tools/utils";
import { parse, type GraphQLSchema } from "graphql";
import { buildSchema, createResolversMap } from "type-graphql";
import type { GatewayContext } from "./context.js";
import { applyRights, enforceEntity } from "./apply-rights.js";
import { TeamsResolver } from "./resolvers/teams.resolver.js";
import { IdentityResolver } from "./resolvers/identity.resolver.js";
import { ViewerResolver } from "./resolvers/viewer.resolver.js";
import { CommunicationUser } from "./types/communication-user.type.js";

/** The Federation 2 spec version the subgraph links; what `schema.graphql` declares. */
export const FEDERATION_LINK =
  'extend schema @link(url: "https://specs.apollo.dev/federation/v2.3", import: ["@key"])';

/**
 * `_entities` for CommunicationUser. ACS has no "get identity" call, so nothing upstream is asked:
 * a well-formed id that is not known to be deleted resolves to itself. The entity's rule in the
 * rights table applies to each representation (an admin any user, anyone else only their own).
 */
async function resolveCommunicationUser(
  reference: Record<string, unknown>,
  context: GatewayContext,
): Promise<CommunicationUser | null> {
  await enforceEntity("CommunicationUser", reference, context);
  const id = reference.id as string;
  if (await context.ownership.isKnownDeleted(id)) {
    return null;
  }
  return CommunicationUser.of(id);
}

/** The type-graphql schema alone (no federation): the source of `schema.graphql`. */
export function buildTypeGraphQLSchema(): Promise<GraphQLSchema> {
  return buildSchema({
    resolvers: [IdentityResolver, ViewerResolver, TeamsResolver],
    orphanedTypes: [CommunicationUser],
    // Arguments are checked by the token services (src/tokens/input-rules.ts: one place for the rules).
    validate: false,
  });
}

/** The executable Apollo Federation 2 subgraph schema. */
export async function buildGatewaySchema(): Promise<GraphQLSchema> {
  const schema = await buildTypeGraphQLSchema();
  const resolvers = createResolversMap(schema) as Record<string, object>;
  resolvers.CommunicationUser = {
    ...resolvers.CommunicationUser,
    __resolveReference: resolveCommunicationUser,
  };
  const subgraph = buildSubgraphSchema({
    typeDefs: parse(`${FEDERATION_LINK}\n${printSchemaWithDirectives(schema)}`),
    // type-graphql's resolver map and Apollo's differ only in their context typing.
    resolvers: resolvers as Parameters<typeof buildSubgraphSchema>[0] extends {
      resolvers?: infer R;
    }
      ? R
      : never,
  });
  return applyRights(subgraph);
}
