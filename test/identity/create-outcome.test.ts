import {
  createHttpHeaders,
  createPipelineRequest,
  RestError,
  type PipelineRequest,
} from "@azure/core-rest-pipeline";
import {
  AggregateAuthenticationError,
  AuthenticationError,
  AuthenticationRequiredError,
  CredentialUnavailableError,
} from "@azure/identity";
import { describe, expect, it } from "vitest";
import { createOutcomeUnknown } from "../../src/identity/acs-identity-provider.js";
import { UpstreamError } from "../../src/identity/upstream-error.js";

/**
 * `createOutcomeUnknown`: may a failed create have created the identity at ACS? Counted in
 * `acsgw_upstream_create_outcome_unknown_total` only when the request was sent to ACS.
 */
const request: PipelineRequest = createPipelineRequest({
  url: "https://acs.example/identities?api-version=2023-10-01",
  method: "POST",
});

/** A RestError from the ACS call: answered with `status`, or none (`code` says why). */
function fromAcs(status: number | undefined, code?: string): RestError {
  return new RestError(status === undefined ? "no answer" : `ACS answered ${status}`, {
    code,
    statusCode: status,
    request,
    response: status === undefined ? undefined : { status, headers: createHttpHeaders(), request },
  });
}

const credentialErrors: [string, Error][] = [
  ["CredentialUnavailableError", new CredentialUnavailableError("no managed identity endpoint")],
  [
    "AuthenticationError 503",
    new AuthenticationError(503, { error: "temporarily_unavailable", error_description: "later" }),
  ],
  ["AuthenticationError 400", new AuthenticationError(400, { error: "invalid_client" })],
  [
    "AuthenticationRequiredError",
    new AuthenticationRequiredError({ scopes: ["https://communication.azure.com//.default"] }),
  ],
  [
    "AggregateAuthenticationError",
    new AggregateAuthenticationError([new CredentialUnavailableError("none")], "all failed"),
  ],
];

describe("createOutcomeUnknown", () => {
  it.each(credentialErrors)("a credential error (%s): nothing reached ACS", (_, error) => {
    expect(createOutcomeUnknown(error)).toBe(false);
    // Even when a first request was sent (a challenge's second token that failed).
    expect(createOutcomeUnknown(error, true)).toBe(false);
    // And wrapped.
    expect(createOutcomeUnknown(new Error("wrapped", { cause: error }))).toBe(false);
  });

  it("ACS answered 5xx, 408, or 2xx whose body could not be read: it may have created it", () => {
    for (const status of [500, 502, 503, 504, 408, 201]) {
      expect(createOutcomeUnknown(fromAcs(status), true), String(status)).toBe(true);
    }
  });

  it("ACS answered another 4xx, or 429: it did not", () => {
    for (const status of [400, 401, 403, 404, 409, 429]) {
      expect(createOutcomeUnknown(fromAcs(status), true), String(status)).toBe(false);
    }
  });

  it("no answer: a refused or unresolved connection sent nothing; a reset or an abort may have come after", () => {
    for (const code of ["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH"]) {
      expect(createOutcomeUnknown(fromAcs(undefined, code)), code).toBe(false);
    }
    expect(createOutcomeUnknown(fromAcs(undefined, "ECONNRESET"), true)).toBe(true);
    expect(createOutcomeUnknown(fromAcs(undefined, RestError.REQUEST_SEND_ERROR), true)).toBe(true);
    const aborted = Object.assign(new Error("The operation was aborted."), { name: "AbortError" });
    expect(createOutcomeUnknown(aborted, true)).toBe(true);
  });

  it("not sent (the pipeline never reached the HTTP client): never, whatever the error", () => {
    const aborted = Object.assign(new Error("The operation was aborted."), { name: "AbortError" });
    expect(createOutcomeUnknown(aborted, false)).toBe(false);
    expect(createOutcomeUnknown(new Error("Failed to refresh access token."), false)).toBe(false);
    expect(createOutcomeUnknown(fromAcs(undefined, "ECONNRESET"), false)).toBe(false);
  });

  it("an UpstreamError already made: by its status and code", () => {
    expect(createOutcomeUnknown(new UpstreamError("unavailable", "x", { status: 503 }))).toBe(true);
    expect(
      createOutcomeUnknown(new UpstreamError("unavailable", "x", { acsCode: "ECONNREFUSED" })),
    ).toBe(false);
    expect(createOutcomeUnknown(new UpstreamError("invalid", "x", { status: 400 }))).toBe(false);
  });
});
