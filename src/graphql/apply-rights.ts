import {
  defaultFieldResolver,
  type GraphQLFieldResolver,
  type GraphQLObjectType,
  type GraphQLSchema,
} from "graphql";
import { enforce, RIGHTS, ruleOf, type OwnershipCheck } from "../auth/rights.js";
import { invalidInput } from "../errors.js";
import type { GatewayContext } from "./context.js";

/** Representations one `_entities` call may resolve: a router batches far fewer per request. */
export const MAX_ENTITY_REPRESENTATIONS = 100;

/**
 * `owner` rule lookups, answered by the mapping layer (identity/identity-mappings.ts): the
 * request's memoised own-identity read first (one lookup however many representations ask), and
 * the ownership history only for rules that accept a former owner.
 */
function ownershipCheck(context: GatewayContext): OwnershipCheck {
  return async (caller, userId, formerToo) =>
    (await context.ownUserId()) === userId ||
    (formerToo && (await context.ownership.ownsOrOwned(caller.key, userId)));
}

/**
 * Puts the rights table (auth/rights.ts) in front of every root field of the executable schema:
 * each resolver runs only after its rule let the caller through, before any upstream call. A root
 * field without a rule makes this throw, so the gateway does not start with an unguarded operation.
 * Done on the built schema rather than with type-graphql's `@Authorized`, so federation's own
 * fields (`_service`, `_entities`) follow the same table and resolvers carry no rights code.
 */
export function applyRights(schema: GraphQLSchema): GraphQLSchema {
  for (const type of [schema.getQueryType(), schema.getMutationType()]) {
    if (type) {
      guardFields(type);
    }
  }
  return schema;
}

function guardFields(type: GraphQLObjectType): void {
  for (const field of Object.values(type.getFields())) {
    const rule = ruleOf(type.name, field.name);
    if (!rule) {
      throw new Error(
        `${type.name}.${field.name} has no rule in the rights table (src/auth/rights.ts)`,
      );
    }
    const resolve: GraphQLFieldResolver<unknown, GatewayContext> =
      field.resolve ?? defaultFieldResolver;
    const check =
      field.name === "_entities"
        ? (args: Record<string, unknown>) => checkRepresentations(args.representations)
        : () => {};
    field.resolve = async (source, args, context, info) => {
      check(args);
      await enforce(rule, context, args, ownershipCheck(context));
      return resolve(source, args, context, info);
    };
  }
}

/**
 * Refused as one quiet BAD_USER_INPUT, before any lookup: more representations than a router
 * sends, or a type that is not an entity here. Otherwise each would be its own logged error.
 */
function checkRepresentations(representations: unknown): void {
  if (!Array.isArray(representations)) {
    return; // graphql-js already refused a non-list for [_Any!]!
  }
  if (representations.length > MAX_ENTITY_REPRESENTATIONS) {
    throw invalidInput(
      `_entities resolves at most ${MAX_ENTITY_REPRESENTATIONS} representations per call.`,
      "representations",
    );
  }
  for (const representation of representations) {
    const typename = (representation as { __typename?: unknown } | null)?.__typename;
    if (typeof typename !== "string" || !Object.hasOwn(RIGHTS.Entity!, typename)) {
      throw invalidInput(
        `Every representation must be an entity of this subgraph (${Object.keys(RIGHTS.Entity!).join(", ")}).`,
        "representations",
      );
    }
  }
}

/** The entity's own rule, for its reference resolver (one representation). */
export async function enforceEntity(
  typename: string,
  representation: Record<string, unknown>,
  context: GatewayContext,
): Promise<void> {
  await enforce(ruleOf("Entity", typename)!, context, representation, ownershipCheck(context));
}
