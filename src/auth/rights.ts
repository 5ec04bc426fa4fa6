import { DomainError, forbidden, invalidInput } from "../errors.js";
import { isAcsUserId } from "../tokens/scopes.js";
import type { Caller } from "./caller.js";

/**
 * Who may do what: the whole rights table, in one place (docs/security.md states it for people).
 * Every root field and every federation entity type has exactly one rule here; the GraphQL layer
 * enforces the table for all of them before any resolver runs (graphql/apply-rights.ts), and
 * a field without a rule is refused at start-up, so a new operation cannot skip the check.
 *
 * Rules:
 * - `schema`: the subgraph's SDL (`_service`), for the router: a request with a valid router secret
 *   (even without a bearer token), an admin, or anyone in development.
 * - `signedIn`: any authenticated caller (self-service operations act only on the caller's own
 *   identity, which self-service finds from the caller, never from arguments).
 * - `admin`: callers holding AUTH_ADMIN_ROLE only.
 * - `owner`: admins, or a caller acting on the identity that is theirs (asked of the mapping
 *   layer, identity/identity-mappings.ts); the target id is taken from the arguments. An absent
 *   id is admin-only (for `issueToken`, "a new user and its token": an identity nobody maps to
 *   the caller). For revoking, an identity that WAS theirs counts too (deleted, or replaced after
 *   a lost mapping): its old tokens may still be out there.
 * - `teamsSelf`: admins, or a caller whose own Entra ID object id (`oid`) is the one in the
 *   arguments.
 */
export type Rule =
  | { kind: "schema" }
  | { kind: "signedIn" }
  | { kind: "admin" }
  | {
      kind: "owner";
      target: (args: Args) => unknown;
      formerOwnerToo?: boolean;
      /** The refusal of a non-admin when the target is absent. */
      absent?: string;
      /** The refusal of a non-admin when the target is not theirs. */
      foreign?: string;
    }
  | { kind: "teamsSelf"; target: (args: Args) => unknown };

type Args = Readonly<Record<string, unknown>>;

const schemaRule: Rule = { kind: "schema" };
const signedIn: Rule = { kind: "signedIn" };
const admin: Rule = { kind: "admin" };
const owner = (
  target: (args: Args) => unknown,
  formerOwnerToo = false,
  absent = "Only an admin may create users; use issueMyToken for your own token.",
  foreign = "You may act only on your own communication user.",
): Rule => ({
  kind: "owner",
  target,
  formerOwnerToo,
  absent,
  foreign,
});
const teamsSelf = (target: (args: Args) => unknown): Rule => ({ kind: "teamsSelf", target });

export const RIGHTS: Readonly<Record<string, Readonly<Record<string, Rule>>>> = {
  Query: {
    _service: schemaRule,
    /** Federation: each representation is then checked by its type's rule under `Entity`. */
    _entities: signedIn,
    me: signedIn,
    acsEndpoint: signedIn,
    /** The directory: admins only; an end user reads their own record through `me`. */
    communicationUser: admin,
    communicationUsers: admin,
  },
  Mutation: {
    createUser: admin,
    issueToken: owner((args) => args.userId),
    revokeTokens: owner((args) => args.userId, true),
    deleteUser: admin,
    updateUser: admin,
    issueMyToken: signedIn,
    revokeMyTokens: signedIn,
    deleteMe: signedIn,
    exchangeTeamsToken: teamsSelf((args) => args.userObjectId),
  },
  /**
   * Federation `_entities`, per entity type; the arguments are the representation. A
   * CommunicationUser represented by its `externalId` is first looked up, and the rule is applied
   * to the id found (graphql/schema.ts): an unknown external id is, for a non-admin, refused as a
   * foreign one is, so that the answer does not tell which external ids exist.
   */
  Entity: {
    // One sentence for an unknown external id (no target) and another's identity: the message
    // must not tell them apart either.
    CommunicationUser: owner(
      (representation) => representation.id,
      false,
      "You may resolve only your own communication user.",
      "You may resolve only your own communication user.",
    ),
  },
};

/** The rule of `Type.field`, or undefined when the table has none (which is refused). */
export function ruleOf(typeName: string, fieldName: string): Rule | undefined {
  return Object.hasOwn(RIGHTS, typeName) && Object.hasOwn(RIGHTS[typeName]!, fieldName)
    ? RIGHTS[typeName]![fieldName]
    : undefined;
}

/** Who is asking: the verified caller (absent for a router-only request) and what it may read. */
export interface Principal {
  caller: Caller | undefined;
  /** A valid router secret came with the request, or the gateway runs in development. */
  schemaReadable: boolean;
}

/** Whether the caller owns (or, with `formerToo`, once owned) an ACS identity. */
export type OwnershipCheck = (
  caller: Caller,
  userId: string,
  formerToo: boolean,
) => Promise<boolean>;

const signInFirst = () =>
  new DomainError("unauthenticated", "Sign in: send an Authorization: Bearer token.");

/**
 * Applies `rule` for `caller`, or throws: `invalid-input` for a malformed target id (so a caller
 * learns to fix the input rather than wonder about rights), `forbidden` otherwise. Decided before
 * any upstream call; an admin costs no lookup, and `owns` runs only when the rule needs it.
 */
export async function enforce(
  rule: Rule,
  principal: Principal,
  args: Args,
  owns: OwnershipCheck,
): Promise<void> {
  const { caller } = principal;
  if (rule.kind === "schema") {
    if (!principal.schemaReadable && !caller?.isAdmin) {
      throw caller ? forbidden("The subgraph schema is for the router and admins.") : signInFirst();
    }
    return;
  }
  if (!caller) {
    throw signInFirst();
  }
  switch (rule.kind) {
    case "signedIn":
      return;
    case "admin":
      if (!caller.isAdmin) {
        throw forbidden("This operation is for admins only.");
      }
      return;
    case "owner": {
      const target = rule.target(args);
      if (target === undefined || target === null) {
        if (!caller.isAdmin) {
          throw forbidden(rule.absent ?? "This operation is for admins only.");
        }
        return;
      }
      if (typeof target !== "string" || !isAcsUserId(target)) {
        throw invalidInput(
          "userId is not an ACS communication user id (8:acs:<resource>_<user>).",
          "userId",
        );
      }
      if (!caller.isAdmin && !(await owns(caller, target, rule.formerOwnerToo === true))) {
        throw forbidden(rule.foreign ?? "You may act only on your own communication user.");
      }
      return;
    }
    case "teamsSelf": {
      const target = rule.target(args);
      if (!caller.isAdmin && (caller.objectId === undefined || target !== caller.objectId)) {
        throw forbidden(
          "You may exchange only your own Teams token: userObjectId must be your oid claim.",
        );
      }
      return;
    }
  }
}
