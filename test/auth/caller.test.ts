import { describe, expect, it } from "vitest";
import { ANONYMOUS_ADMIN, AuthError, callerKey, type Caller } from "../../src/auth/caller.js";
import { enforce, RIGHTS, ruleOf, type OwnershipCheck } from "../../src/auth/rights.js";
import type { DomainError } from "../../src/errors.js";
import { buildGatewaySchema } from "../../src/graphql/schema.js";

const ISSUER = "https://issuer.test/";
const caller = (subject: string, isAdmin: boolean): Caller => ({
  subject,
  issuer: ISSUER,
  roles: isAdmin ? ["acs.admin"] : [],
  isAdmin,
  key: callerKey(ISSUER, subject),
});
const admin = caller("ops", true);
const ann = caller("ann", false);
const ANN = "8:acs:00000000-0000-0000-0000-000000000001_ann";
const BOB = "8:acs:00000000-0000-0000-0000-000000000001_bob";
/** Ann's identity before she deleted it (deleteMe) and got a new one. */
const ANN_BEFORE = "8:acs:00000000-0000-0000-0000-000000000001_ann-before";

describe("caller keys", () => {
  it("are fixed-length, hash-tag-safe, stable, and namespaced by issuer", () => {
    const key = callerKey(ISSUER, "ann");
    expect(key).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(callerKey(ISSUER, "ann")).toBe(key);
    expect(callerKey("https://other.test/", "ann")).not.toBe(key);
    expect(callerKey(undefined, "ann")).not.toBe(key);
    expect(callerKey("a", "bc")).not.toBe(callerKey("ab", "c"));
    expect(callerKey(ISSUER, "x".repeat(10_000))).toHaveLength(32);
  });

  it("make the development caller an immutable admin called anonymous", () => {
    expect(ANONYMOUS_ADMIN).toMatchObject({
      subject: "anonymous",
      isAdmin: true,
      issuer: undefined,
    });
    expect(Object.isFrozen(ANONYMOUS_ADMIN)).toBe(true);
    expect(ANONYMOUS_ADMIN.key).toBe(callerKey(undefined, "anonymous"));
  });
});

describe("the rights table", () => {
  const principal = (caller: Caller | undefined, schemaReadable = false) => ({
    caller,
    schemaReadable,
  });
  /** Ann owns ANN; every lookup is counted, so a test can say when none is needed. */
  function ownership() {
    const lookups: string[] = [];
    const owns: OwnershipCheck = async (who, userId, formerToo) => {
      lookups.push(userId);
      return who.subject === "ann" && (userId === ANN || (formerToo && userId === ANN_BEFORE));
    };
    return { owns, lookups };
  }
  const allowed = async (
    type: string,
    field: string,
    who: Caller | undefined,
    args: Record<string, unknown> = {},
  ) => {
    const { owns } = ownership();
    try {
      await enforce(ruleOf(type, field)!, principal(who), args, owns);
      return "allowed";
    } catch (error) {
      return (error as DomainError).kind;
    }
  };

  it("has a rule for every root field of the schema the gateway serves, and for its entity", async () => {
    const schema = await buildGatewaySchema();
    for (const type of [schema.getQueryType()!, schema.getMutationType()!]) {
      for (const name of Object.keys(type.getFields())) {
        expect(ruleOf(type.name, name), `${type.name}.${name}`).toBeDefined();
      }
    }
    expect(ruleOf("Entity", "CommunicationUser")).toBeDefined();
  });

  it("lets an admin do everything without a single ownership lookup", async () => {
    const { owns, lookups } = ownership();
    for (const [type, fields] of Object.entries(RIGHTS)) {
      for (const [field, rule] of Object.entries(fields)) {
        const args = { userId: BOB, id: BOB, userObjectId: "someone-else" };
        await expect(enforce(rule, principal(admin), args, owns), `${type}.${field}`).resolves.toBe(
          undefined,
        );
      }
    }
    expect(lookups).toEqual([]);
  });

  it("gives any signed-in caller the self-service operations", async () => {
    for (const field of ["me", "acsEndpoint"]) {
      expect(await allowed("Query", field, ann)).toBe("allowed");
    }
    for (const field of ["issueMyToken", "revokeMyTokens", "deleteMe"]) {
      expect(await allowed("Mutation", field, ann)).toBe("allowed");
    }
  });

  it("lets other callers act only on their own identity, and refuses the admin mutations", async () => {
    for (const field of ["issueToken", "revokeTokens"]) {
      expect(await allowed("Mutation", field, ann, { userId: ANN })).toBe("allowed");
      expect(await allowed("Mutation", field, ann, { userId: BOB })).toBe("forbidden");
      // Not a caller's own: a caller with no identity at all.
      expect(await allowed("Mutation", field, caller("cy", false), { userId: ANN })).toBe(
        "forbidden",
      );
    }
    expect(await allowed("Entity", "CommunicationUser", ann, { id: ANN })).toBe("allowed");
    expect(await allowed("Entity", "CommunicationUser", ann, { id: BOB })).toBe("forbidden");
    expect(await allowed("Mutation", "createUser", ann)).toBe("forbidden");
    expect(await allowed("Mutation", "deleteUser", ann, { userId: ANN })).toBe("forbidden");
    // issueToken without a user creates one nobody maps to the caller: admins only.
    expect(await allowed("Mutation", "issueToken", ann, {})).toBe("forbidden");
  });

  it("lets a former owner revoke the tokens of an identity that was theirs, and nothing more", async () => {
    expect(await allowed("Mutation", "revokeTokens", ann, { userId: ANN_BEFORE })).toBe("allowed");
    expect(await allowed("Mutation", "issueToken", ann, { userId: ANN_BEFORE })).toBe("forbidden");
    expect(await allowed("Entity", "CommunicationUser", ann, { id: ANN_BEFORE })).toBe("forbidden");
  });

  it("says a malformed user id is bad input before it says anything about rights", async () => {
    expect(await allowed("Mutation", "revokeTokens", ann, { userId: "bob" })).toBe("invalid-input");
  });

  it("lets a Teams user exchange only their own oid", async () => {
    const teamsAnn = { ...ann, objectId: "11111111-1111-1111-1111-111111111111" };
    const args = (oid: string) => ({ userObjectId: oid });
    expect(await allowed("Mutation", "exchangeTeamsToken", teamsAnn, args(teamsAnn.objectId))).toBe(
      "allowed",
    );
    expect(
      await allowed(
        "Mutation",
        "exchangeTeamsToken",
        teamsAnn,
        args("22222222-2222-2222-2222-222222222222"),
      ),
    ).toBe("forbidden");
    // A token without an oid claim can exchange for nobody.
    expect(await allowed("Mutation", "exchangeTeamsToken", ann, args("undefined"))).toBe(
      "forbidden",
    );
  });

  it("lets a router-only request (secret, no bearer) read the schema and nothing else", async () => {
    const { owns } = ownership();
    const router = principal(undefined, true);
    await expect(enforce(ruleOf("Query", "_service")!, router, {}, owns)).resolves.toBe(undefined);
    await expect(enforce(ruleOf("Query", "me")!, router, {}, owns)).rejects.toMatchObject({
      kind: "unauthenticated",
    });
    // In production without the router secret, the schema is for admins.
    await expect(
      enforce(ruleOf("Query", "_service")!, principal(ann, false), {}, owns),
    ).rejects.toMatchObject({ kind: "forbidden" });
  });
});

describe("AuthError", () => {
  it("carries a reason and its own name", () => {
    const error = new AuthError("expired", "The bearer token has expired.");
    expect(error).toBeInstanceOf(Error);
    expect(error.kind).toBe("unauthenticated");
    expect(error.name).toBe("AuthError");
    expect(error.reason).toBe("expired");
  });
});
