import type { CommunicationUserIdentifier } from "@azure/communication-common";
import { CommunicationIdentityClient } from "@azure/communication-identity";
import type { PipelinePolicy } from "@azure/core-rest-pipeline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACS_THROTTLE_LIMITS, type Emulator } from "@acs-identity-gateway/emulator";
import { resolveOptions } from "../../packages/emulator/src/options.js";
import { identityClient, startTestEmulator } from "../helpers/emulator.js";
import { refusal } from "./refusal.js";
import { assertErrorShape } from "./spec.js";

/**
 * ACS_EMULATOR_THROTTLE=acs: the published per-30-second limits. The limits are overridden to a
 * handful (the same code path as the published ones), and the emulator's clock is injected, so the
 * test fills a window in a few calls and then moves past it when the SDK is told to retry.
 */
const LIMITS = { issueAccessToken: 5, revokeAccessTokens: 3 };

const WINDOW_MS = 30_000;
// Half a second before a window ends: the 429 will say Retry-After: 1.
let clock = Math.floor(Date.now() / WINDOW_MS) * WINDOW_MS + WINDOW_MS - 500;
let emulator: Emulator;
let user: CommunicationUserIdentifier;

async function inBatches(count: number, call: () => Promise<unknown>): Promise<void> {
  for (let done = 0; done < count; done += 50) {
    await Promise.all(Array.from({ length: Math.min(50, count - done) }, call));
  }
}

beforeAll(async () => {
  emulator = await startTestEmulator({ throttle: { limits: LIMITS }, now: () => clock });
  user = await identityClient(emulator).createUser();
});

afterAll(async () => {
  await emulator.close();
});

describe("throttle mode acs", () => {
  it("uses the published limits per 30 seconds", () => {
    expect(ACS_THROTTLE_LIMITS).toEqual({
      createIdentity: 1000,
      createIdentityWithToken: 1000,
      issueAccessToken: 1000,
      revokeAccessTokens: 500,
      deleteIdentity: 500,
      exchangeTeamsUserAccessToken: 500,
    });
    expect(resolveOptions({ throttle: "acs" }).throttle).toEqual({
      limits: ACS_THROTTLE_LIMITS,
      windowMs: WINDOW_MS,
    });
    // An override changes only the limits it names.
    expect(resolveOptions({ throttle: { limits: LIMITS } }).throttle).toEqual({
      limits: { ...ACS_THROTTLE_LIMITS, ...LIMITS },
      windowMs: WINDOW_MS,
    });
    expect(() => resolveOptions({ throttle: { limits: { issueAccessToken: 0 } } })).toThrow(
      /throttle\.limits\.issueAccessToken/,
    );
  });

  it("answers the issue past the limit in a window with 429 and Retry-After, other operations unaffected", async () => {
    const client = identityClient(emulator);
    const before = emulator.counters.issueAccessToken;
    await inBatches(LIMITS.issueAccessToken, () => client.getToken(user, ["chat"]));
    expect(emulator.counters.issueAccessToken - before).toBe(LIMITS.issueAccessToken);

    let retryAfter: string | undefined;
    let body: unknown;
    const error = await refusal(
      client.getToken(user, ["chat"], {
        onResponse: (raw) => {
          retryAfter = raw.headers.get("retry-after");
          body = raw.bodyAsText ? JSON.parse(raw.bodyAsText) : undefined;
        },
      }),
    );
    expect(error.statusCode).toBe(429);
    expect(retryAfter).toBe("1");
    assertErrorShape(body);
    expect((body as { error: { code: string } }).error.code).toBe("TooManyRequests");
    expect(emulator.counters.issueAccessToken - before).toBe(LIMITS.issueAccessToken);

    // Each operation has its own bucket.
    await expect(client.createUser()).resolves.toBeDefined();
  });

  it("lets the SDK's own retry honour Retry-After and succeed in the next window", async () => {
    const statuses: number[] = [];
    let advanced = false;
    // Sees every attempt; once the emulator has answered 429, its clock moves into the next window,
    // as 1 s of real time would (the SDK itself waits the real Retry-After second).
    const observer: PipelinePolicy = {
      name: "observe-and-advance-clock",
      async sendRequest(request, next) {
        const response = await next(request);
        statuses.push(response.status);
        if (response.status === 429 && !advanced) {
          advanced = true;
          clock += 1000;
        }
        return response;
      },
    };
    const retrying = new CommunicationIdentityClient(emulator.connectionString, {
      allowInsecureConnection: true,
      retryOptions: { maxRetries: 1 },
      additionalPolicies: [{ policy: observer, position: "perRetry" }],
    });
    const token = await retrying.getToken(user, ["voip"]);
    expect(token.token.split(".")).toHaveLength(3);
    expect(statuses).toEqual([429, 200]);
  });

  it("limits revokes in a window with their own limit", async () => {
    const client = identityClient(emulator);
    await inBatches(LIMITS.revokeAccessTokens, () => client.revokeTokens(user));
    const error = await refusal(client.revokeTokens(user));
    expect(error.statusCode).toBe(429);
    expect(Number(error.response?.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
  });
});
