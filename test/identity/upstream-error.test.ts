import { RestError } from "@azure/core-rest-pipeline";
import { describe, expect, it } from "vitest";
import { parseRetryAfter, toUpstreamError } from "../../src/identity/acs-identity-provider.js";

const headers = (values: Record<string, string>) => ({
  get: (name: string) => values[name.toLowerCase()],
});

function restError(statusCode: number | undefined, code?: string, h: Record<string, string> = {}) {
  const error = new RestError("ACS says no", { statusCode, code });
  if (statusCode !== undefined) {
    Object.assign(error, { response: { status: statusCode, headers: headers(h) } });
  }
  return error;
}

describe("mapping ACS failures", () => {
  it("tells the failures apart by status and ACS error code", () => {
    expect(toUpstreamError(restError(404, "IdentityNotFound")).failure).toBe("not_found");
    expect(toUpstreamError(restError(401, "IdentityNotOwned")).failure).toBe("not_owned");
    expect(toUpstreamError(restError(401, "Denied")).failure).toBe("unauthorized");
    expect(toUpstreamError(restError(400, "ValidationError")).failure).toBe("invalid");
    expect(toUpstreamError(restError(429)).failure).toBe("throttled");
    expect(toUpstreamError(restError(503)).failure).toBe("unavailable");
    expect(toUpstreamError(restError(undefined, "ECONNREFUSED")).failure).toBe("unavailable");
    expect(toUpstreamError(new Error("socket hang up")).failure).toBe("unavailable");
  });

  it("reads how long to wait from Retry-After in seconds, as a date, or in milliseconds", () => {
    expect(
      toUpstreamError(restError(429, undefined, { "retry-after": "17" })).options.retryAfterSeconds,
    ).toBe(17);
    expect(parseRetryAfter(headers({ "retry-after-ms": "1500" }))).toBe(2);
    expect(parseRetryAfter(headers({ "x-ms-retry-after-ms": "200" }))).toBe(1);
    const now = Date.parse("2026-11-25T10:00:00Z");
    expect(parseRetryAfter(headers({ "retry-after": "Wed, 25 Nov 2026 10:00:30 GMT" }), now)).toBe(
      30,
    );
    expect(parseRetryAfter(headers({}))).toBe(1);
  });

  it("keeps the ACS message out of what it reports", () => {
    const mapped = toUpstreamError(restError(400, "ValidationError"));
    // For logs: status and code only. For clients: a fixed sentence of the failure's kind.
    expect(mapped.diagnostic).toBe("ACS answered 400 ValidationError");
    expect(mapped.message).toBe("Azure Communication Services refused the request's input.");
    expect(mapped.kind).toBe("invalid-input");
  });
});
