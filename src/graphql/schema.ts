import { buildSubgraphSchema } from "@apollo/subgraph";
import { printSchemaWithDirectives } from "@graphql-tools/utils";
import { parse, type GraphQLSchema } from "graphql";
import { buildSchema, createResolversMap } from "type-graphql";
import { invalidInput } from "../errors.js";
import { checkExternalId } from "./args/directory.args.js";
import { applyRights, enforceEntity } from "./apply-rights.js";
import type { GatewayContext } from "./context.js";
import { recordByExternalId } from "./directory-records.js";
import { CommunicationUserResolver, DirectoryResolver } from "./resolvers/directory.resolver.js";
import { TeamsResolver } from "./resolvers/teams.resolver.js";
import { IdentityResolver } from "./resolvers/identity.resolver.js";
import { ViewerResolver } from "./resolvers/viewer.resolver.js";
import { CommunicationUser } from "./types/communication-user.type.js";

/** The Federation 2 spec version the subgraph links; what `schema.graphql` declares. */
export const FEDERATION_LINK =
  'extend schema @link(url: "https://specs.apollo.dev/federation/v2.3", import: ["@key"])';

/**
 * `_entities` for CommunicationUser. ACS has no "get identity" call, so nothing upstream is asked:
 * a well-formed id that is not known to be deleted resolves to itself (its directory fields are
 * read only if asked for), an external id to the directory's live identity with it. The entity's rule in the
 * rights table applies to each representation (an admin any user, anyone else only their own).
 */
async function resolveCommunicationUser(
  reference: Record<string, unknown>,
  context: GatewayContext,
): Promise<CommunicationUser | null> {
  if (reference.id === undefined || reference.id === null) {
    if (typeof reference.externalId === "string") {
      return resolveByExternalId(reference, reference.externalId, context);
    }
    throw invalidInput(
      "A CommunicationUser representation needs its id or its externalId.",
      "representations",
    );
  }
  await enforceEntity("CommunicationUser", reference, context);
  const id = reference.id as string;
  if (await context.ownership.isKnownDeleted(id)) {
    return null;
  }
  return CommunicationUser.of(id);
}

/**
 * The second key, `externalId`, so that a supergraph's own user type can link to the identity by
 * the app's id: the live identity with that external id (read once per request), or null. The
 * rights rule is applied to the id it names (auth/rights.ts, `Entity`).
 */
async function resolveByExternalId(
  reference: Record<string, unknown>,
  externalId: string,
  context: GatewayContext,
): Promise<CommunicationUser | null> {
  checkExternalId(externalId);
  const identity = await recordByExternalId(context, externalId);
  await enforceEntity("CommunicationUser", { ...reference, id: identity?.id }, context);
  if (!identity || (await context.ownership.isKnownDeleted(identity.id))) {
    return null;
  }
  return CommunicationUser.from(identity);
}

/** The type-graphql schema alone (no federation): the source of `schema.graphql`. */
export function buildTypeGraphQLSchema(): Promise<GraphQLSchema> {
  return buildSchema({
    resolvers: [
      IdentityResolver,
      ViewerResolver,
      TeamsResolver,
      DirectoryResolver,
      CommunicationUserResolver,
    ],
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
