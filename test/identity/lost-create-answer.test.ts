import { createServer, type Server } from "node:net";
import { Writable } from "node:stream";
import { AuthenticationError, CredentialUnavailableError } from "@azure/identity";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { EmulatorOperation, RespondOverride } from "@acs-identity-gateway/emulator";
import type { App } from "../../src/app.js";
import { createAcsIdentityProvider } from "../../src/identity/acs-identity-provider.js";
import { UpstreamError } from "../../src/identity/upstream-error.js";
import { createLogger } from "../../src/logger.js";
import { createMetrics } from "../../src/server/metrics.js";
import { ACS_ID, CREATE, ISSUE, REVOKE, errorCode, ok, startGateway } from "../helpers/gateway.js";
import { freePort } from "../helpers/ports.js";

/**
 * A create whose answer was lost: ACS created the identity, then the answer was a 503 or the
 * connection dropped. The gateway must not send the create again (a second identity nobody knows
 * of), must say so in a warn line and a counter, and must still retry what is safe to repeat.
 * The emulator's `beforeRespond` hook lets the work happen and replaces the answer; the hook's
 * calls count the requests whose work the emulator did (its `counters` count 2xx answers only).
 */

let app: App;
let logs = "";
/** Requests the emulator handled (work done), per operation, whatever it answered. */
let handled: Partial<Record<EmulatorOperation, number>>;
/** Answers to replace, per operation, in order: the n-th request gets the n-th entry. */
let replace: Partial<Record<EmulatorOperation, RespondOverride[]>>;

beforeAll(async () => {
  const capture = new Writable({
    write(chunk, _encoding, done) {
      logs += chunk.toString();
      done();
    },
  });
  app = await startGateway({}, { logger: createLogger({ level: "info" }, capture) });
  app.emulator!.hooks.beforeRespond = (operation) => {
    handled[operation] = (handled[operation] ?? 0) + 1;
    return replace[operation]?.shift();
  };
});
afterAll(async () => {
  await app?.close();
});
beforeEach(() => {
  handled = {};
  replace = {};
  logs = "";
});

async function outcomeUnknown(operation: string): Promise<number> {
  const metric = await app.metrics.upstreamCreateOutcomeUnknown.get();
  return metric.values.find((value) => value.labels.operation === operation)?.value ?? 0;
}

/** The log lines (pino JSON) saying a create's answer was lost. */
function lostCreateLines(): Record<string, unknown>[] {
  return logs
    .split("\n")
    .filter((line) => line.includes("may have created the identity"))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe("a create whose answer was lost", () => {
  it("createUser answered 503 after ACS created the identity: sent once, UPSTREAM_UNAVAILABLE, counted and logged at warn", async () => {
    const before = { ...app.emulator!.counters };
    const unknownBefore = await outcomeUnknown("createUser");
    replace.createIdentity = [{ status: 503 }];

    const { code } = await errorCode(app, CREATE);

    expect(code).toBe("UPSTREAM_UNAVAILABLE");
    expect(handled.createIdentity).toBe(1);
    expect(app.emulator!.counters.createIdentity).toBe(before.createIdentity);
    expect(await outcomeUnknown("createUser")).toBe(unknownBefore + 1);
    const exposed = await app.metrics.registry.metrics();
    expect(exposed).toMatch(
      /acsgw_upstream_create_outcome_unknown_total\{operation="createUser"\} [1-9]/,
    );
    const lines = lostCreateLines();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 40, operation: "createUser", status: 503 });
    expect(logs).not.toContain(app.acs.accessKey!);
  });

  it("issueToken without userId whose connection dropped after ACS created the identity: sent once, UPSTREAM_UNAVAILABLE, counted", async () => {
    const unknownBefore = await outcomeUnknown("createUserAndToken");
    replace.createIdentity = ["drop"];

    const { code } = await errorCode(app, ISSUE, { scopes: ["VOIP"] });

    expect(code).toBe("UPSTREAM_UNAVAILABLE");
    expect(handled.createIdentity).toBe(1);
    expect(await outcomeUnknown("createUserAndToken")).toBe(unknownBefore + 1);
    expect(lostCreateLines()).toMatchObject([
      { level: 40, operation: "createUserAndToken", status: 0 },
    ]);
  });

  it("a create refused with a 4xx is not counted as possibly done", async () => {
    const unknownBefore = await outcomeUnknown("createUser");
    replace.createIdentity = [{ status: 400, code: "ValidationError" }];

    expect((await errorCode(app, CREATE)).code).toBe("BAD_USER_INPUT");
    expect(handled.createIdentity).toBe(1);
    expect(await outcomeUnknown("createUser")).toBe(unknownBefore);
    expect(lostCreateLines()).toEqual([]);
  });

  it("a create whose connection was refused is not counted as possibly done", async () => {
    const nobody = await freePort();
    const refused = await startGateway({
      COMMUNICATION_SERVICES_CONNECTION_STRING: `endpoint=http://127.0.0.1:${nobody}/;accesskey=${app.acs.accessKey}`,
    });
    try {
      expect((await errorCode(refused, CREATE)).code).toBe("UPSTREAM_UNAVAILABLE");
      const metric = await refused.metrics.upstreamCreateOutcomeUnknown.get();
      expect(metric.values.reduce((sum, value) => sum + value.value, 0)).toBe(0);
      const attempts = await refused.metrics.upstreamRequests.get();
      expect(
        attempts.values.filter((value) => value.labels.operation === "createUser"),
      ).toMatchObject([{ labels: { status: "0" }, value: 1 }]);
    } finally {
      await refused.close();
    }
  });
});

describe("operations that may be repeated", () => {
  it("a revoke answered 503 after the work is retried once and succeeds", async () => {
    const { createUser } = await ok(app, CREATE);
    expect(createUser.id).toMatch(ACS_ID);
    const before = app.emulator!.counters.revokeAccessTokens;
    replace.revokeAccessTokens = [{ status: 503 }];

    const { revokeTokens } = await ok(app, REVOKE, { userId: createUser.id });

    expect(revokeTokens.user.id).toBe(createUser.id);
    expect(handled.revokeAccessTokens).toBe(2);
    expect(app.emulator!.counters.revokeAccessTokens).toBe(before + 1);
  });

  it("an issue for an existing user answered 503 is retried once and succeeds", async () => {
    const { createUser } = await ok(app, CREATE);
    replace.issueAccessToken = [{ status: 503 }];

    const { issueToken } = await ok(app, ISSUE, { userId: createUser.id, scopes: ["CHAT"] });

    expect(issueToken.user.id).toBe(createUser.id);
    expect(handled.issueAccessToken).toBe(2);
  });
});

describe("Entra ID mode (ACS_ENDPOINT): a create is counted only when it was sent to ACS", () => {
  /** A provider whose credential gives `token` (or throws), against `endpoint`; its counter and lines. */
  function entraProvider(endpoint: string, token: () => Promise<string>) {
    const metrics = createMetrics();
    let lines = "";
    const logger = createLogger(
      { level: "info" },
      new Writable({
        write(chunk, _encoding, done) {
          lines += chunk.toString();
          done();
        },
      }),
    );
    let asked = 0;
    const credential = {
      getToken: async () => {
        asked++;
        return { token: await token(), expiresOnTimestamp: Date.now() + 3_600_000 };
      },
    };
    const provider = createAcsIdentityProvider({ endpoint, credential, metrics, logger });
    return {
      provider,
      asked: () => asked,
      lines: () => lines,
      unknown: async () =>
        (await metrics.upstreamCreateOutcomeUnknown.get()).values.reduce((n, v) => n + v.value, 0),
    };
  }

  it.each([
    ["CredentialUnavailableError", () => new CredentialUnavailableError("no managed identity")],
    [
      "AuthenticationError with status 503 (the token endpoint's)",
      () =>
        new AuthenticationError(503, {
          error: "temporarily_unavailable",
          error_description: "try again later",
        }),
    ],
    ["any other error of the credential", () => new Error("IMDS connection reset")],
  ])(
    "no Entra ID token (%s): nothing sent, not counted nor logged as possibly done",
    async (_, failure) => {
      const nobody = await freePort();
      const entra = entraProvider(`https://127.0.0.1:${nobody}/`, () => Promise.reject(failure()));

      await expect(entra.provider.createUser()).rejects.toBeInstanceOf(UpstreamError);

      expect(entra.asked()).toBe(1);
      expect(await entra.unknown()).toBe(0);
      expect(entra.lines()).not.toContain("may have created the identity");
    },
  );

  it("a token, then the connection to ACS lost: counted as possibly done", async () => {
    // Accepts, then drops the connection: the request was on its way.
    const dropping: Server = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => dropping.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = dropping.address() as { port: number };
      const entra = entraProvider(`https://127.0.0.1:${port}/`, async () => "a-token");

      await expect(entra.provider.createUser()).rejects.toBeInstanceOf(UpstreamError);

      expect(entra.asked()).toBe(1);
      expect(await entra.unknown()).toBe(1);
      expect(entra.lines()).toContain("may have created the identity");
    } finally {
      await new Promise((resolve) => dropping.close(resolve));
    }
  });
});
