import { GraphQLError } from "graphql";
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { DomainError, rateLimited, type ErrorKind } from "../../src/errors.js";
import { createFormatError } from "../../src/graphql/errors.js";
import { UpstreamError } from "../../src/identity/upstream-error.js";
import { createLogger } from "../../src/logger.js";

function capture() {
  let text = "";
  const logger = createLogger(
    { level: "info" },
    new Writable({
      write(chunk, _e, done) {
        text += chunk.toString();
        done();
      },
    }),
  );
  return { logger, lines: () => text };
}

/** What a resolver's throw looks like by the time Apollo calls formatError. */
function wrapped(original: Error): GraphQLError {
  return new GraphQLError(original.message, { originalError: original, path: ["issueToken"] });
}

describe("error formatting", () => {
  it("masks an unexpected error in production and logs it once", () => {
    const { logger, lines } = capture();
    const format = createFormatError({ production: true, logger });
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
    expect(lines().match(/unexpected error/g)?.length).toBe(1);
  });

  it("keeps the detail of an unexpected error in development", () => {
    const { logger } = capture();
    const format = createFormatError({ production: false, logger });
    const result = format({ message: "boom", extensions: {} }, wrapped(new Error("boom")));
    expect(result.message).toBe("boom");
    expect(result.extensions?.code).toBe("INTERNAL_SERVER_ERROR");
  });

  it("gives known failures their contract code and a safe message, without stack traces", () => {
    const { logger } = capture();
    const format = createFormatError({ production: false, logger });
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
    const { logger, lines } = capture();
    const format = createFormatError({ production: true, logger });
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
    // Expected failures are answers, not incidents: nothing is logged for them.
    expect(lines()).toBe("");
  });

  it("passes Apollo's own codes through", () => {
    const { logger } = capture();
    const format = createFormatError({ production: true, logger });
    const formatted = {
      message: 'Cannot query field "x"',
      extensions: { code: "GRAPHQL_VALIDATION_FAILED" },
    };
    expect(format(formatted, new GraphQLError(formatted.message))).toBe(formatted);
  });
});
