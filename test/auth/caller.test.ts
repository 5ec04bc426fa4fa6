import { describe, expect, it } from "vitest";
import {
  ANONYMOUS_ADMIN,
  AuthError,
  callerKey,
  canActOnUser,
  isAllowed,
  needsOwnUserId,
  type Caller,
  type CallerAction,
} from "../../src/auth/caller.js";

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
  it("lets an admin act on any user, and anyone else only on their own mapped identity", () => {
    expect(canActOnUser(admin, BOB, undefined)).toBe(true);
    expect(canActOnUser(ann, ANN, ANN)).toBe(true);
    expect(canActOnUser(ann, BOB, ANN)).toBe(false);
    // No mapping yet: the caller owns nothing, not "whatever id they name".
    expect(canActOnUser(ann, ANN, undefined)).toBe(false);
  });

  it("allows admins everything", () => {
    const actions: CallerAction[] = [
      { kind: "me" },
      { kind: "issueMyToken" },
      { kind: "createUser" },
      { kind: "deleteUser", userId: BOB },
      { kind: "issueToken", userId: undefined },
      { kind: "issueToken", userId: BOB },
      { kind: "revokeTokens", userId: BOB },
      { kind: "resolveUser", userId: BOB },
    ];
    for (const action of actions) {
      expect(isAllowed(admin, action), action.kind).toBe(true);
      expect(needsOwnUserId(admin, action), action.kind).toBe(false);
    }
  });

  it("allows other callers me, issueMyToken, and their own identity's tokens and entity", () => {
    expect(isAllowed(ann, { kind: "me" })).toBe(true);
    expect(isAllowed(ann, { kind: "issueMyToken" })).toBe(true);
    for (const kind of ["issueToken", "revokeTokens", "resolveUser"] as const) {
      expect(needsOwnUserId(ann, { kind, userId: ANN })).toBe(true);
      expect(isAllowed(ann, { kind, userId: ANN }, ANN), kind).toBe(true);
      expect(isAllowed(ann, { kind, userId: BOB }, ANN), kind).toBe(false);
      expect(isAllowed(ann, { kind, userId: ANN }, undefined), kind).toBe(false);
    }
  });

  it("refuses other callers createUser, deleteUser (even their own) and issueToken without a user id, with no lookup", () => {
    const refused: CallerAction[] = [
      { kind: "createUser" },
      { kind: "deleteUser", userId: ANN },
      { kind: "issueToken", userId: undefined },
    ];
    for (const action of refused) {
      expect(needsOwnUserId(ann, action), action.kind).toBe(false);
      expect(isAllowed(ann, action, ANN), action.kind).toBe(false);
    }
    expect(needsOwnUserId(ann, { kind: "me" })).toBe(false);
    expect(needsOwnUserId(ann, { kind: "issueMyToken" })).toBe(false);
  });
});

describe("AuthError", () => {
  it("carries a reason and its own name", () => {
    const error = new AuthError("expired", "The bearer token has expired.");
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe("AuthError");
    expect(error.reason).toBe("expired");
  });
});
