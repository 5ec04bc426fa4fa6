import { GraphQLError } from "graphql";
import { describe, expect, it } from "vitest";
import { DomainError, rateLimited, type ErrorKind } from "../../src/errors.js";
import { createFormatError } from "../../src/graphql/errors.js";
import { UpstreamError } from "../../src/identity/upstream-error.js";

/** What a resolver's throw looks like by the time Apollo calls formatError. */
function wrapped(original: Error): GraphQLError {
  return new GraphQLError(original.message, { originalError: original, path: ["issueToken"] });
}

describe("error formatting", () => {
  it("masks an unexpected error in production", () => {
    const format = createFormatError({ production: true });
    const secret = new Error("connect to db://user:hunter2@10.0.0.5 failed");
    const result = format(
      {
        message: secret.message,
        path: ["issueToken"],
        extensions: { code: "INTERNAL_SERVER_ERROR", stacktrace: ["at x"] },
      },
      wrapped(secret),
    );
    expect(result).toEqual({
      message: "Internal server error",
      path: ["issueToken"],
      extensions: { code: "INTERNAL_SERVER_ERROR" },
    });
  });

  it("keeps the detail of an unexpected error in development", () => {
    const format = createFormatError({ production: false });
    const result = format({ message: "boom", extensions: {} }, wrapped(new Error("boom")));
    expect(result.message).toBe("boom");
    expect(result.extensions?.code).toBe("INTERNAL_SERVER_ERROR");
  });

  it("gives known failures their contract code and a safe message, without stack traces", () => {
    const format = createFormatError({ production: false });
    const throttled = format(
      { message: "x", extensions: { stacktrace: ["at y"] } },
      wrapped(
        new UpstreamError("throttled", "ACS answered 429", { status: 429, retryAfterSeconds: 12 }),
      ),
    );
    expect(throttled.extensions).toEqual({ code: "UPSTREAM_THROTTLED", retryAfterSeconds: 12 });
    const unavailable = format(
      { message: "x" },
      wrapped(new UpstreamError("unauthorized", "ACS answered 401 Denied")),
    );
    expect(unavailable.extensions).toEqual({ code: "UPSTREAM_UNAVAILABLE" });
    expect(unavailable.message).not.toContain("401");
    const limited = format({ message: "x" }, wrapped(rateLimited("slow down", 3)));
    expect(limited).toMatchObject({
      message: "slow down",
      extensions: { code: "RATE_LIMITED", retryAfterSeconds: 3 },
    });
  });

  it("maps every kind of the domain's one error model to a contract code", () => {
    const format = createFormatError({ production: true });
    const expected: Record<ErrorKind, string> = {
      "invalid-input": "BAD_USER_INPUT",
      "not-found": "NOT_FOUND",
      unauthenticated: "UNAUTHENTICATED",
      forbidden: "FORBIDDEN",
      "rate-limited": "RATE_LIMITED",
      "upstream-throttled": "UPSTREAM_THROTTLED",
      "upstream-unavailable": "UPSTREAM_UNAVAILABLE",
      "upstream-misconfigured": "UPSTREAM_UNAVAILABLE",
      "revocation-unconfirmed": "REVOCATION_UNCONFIRMED",
    };
    for (const [kind, code] of Object.entries(expected)) {
      const result = format({ message: "x" }, wrapped(new DomainError(kind as ErrorKind, "why")));
      expect(result, kind).toMatchObject({ message: "why", extensions: { code } });
    }
  });

  it("drops graphql-js's schema suggestions from messages in production only", () => {
    const coercion = {
      message:
        'Variable "$scopes" got invalid value "VIOP" at "scopes[0]"; Value "VIOP" does not exist in "TokenScope" enum. Did you mean the enum value "VOIP"?',
      extensions: { code: "BAD_USER_INPUT" },
    };
    const error = new GraphQLError(coercion.message);
    const production = createFormatError({ production: true })(coercion, error);
    expect(production.message).toBe(
      'Variable "$scopes" got invalid value "VIOP" at "scopes[0]"; Value "VIOP" does not exist in "TokenScope" enum.',
    );
    expect(production.extensions?.code).toBe("BAD_USER_INPUT");
    expect(createFormatError({ production: false })(coercion, error).message).toContain(
      "Did you mean",
    );
  });

  it("passes Apollo's own codes through", () => {
    const format = createFormatError({ production: true });
    const formatted = {
      message: 'Cannot query field "x"',
      extensions: { code: "GRAPHQL_VALIDATION_FAILED" },
    };
    expect(format(formatted, new GraphQLError(formatted.message))).toBe(formatted);
  });
});
