import { createServer, type Server } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { IdentityProvider } from "../../src/identity/identity-provider.js";
import { RestError } from "@azure/core-rest-pipeline";
import { toUpstreamError } from "../../src/identity/acs-identity-provider.js";
import { UpstreamError } from "../../src/identity/upstream-error.js";
import { checkAcsCredentials, createReadiness } from "../../src/server/readiness.js";

/** A stand-in ACS origin that answers anything (ACS has no ping: any answer means reachable). */
let origin: Server;
let endpoint: string;

beforeAll(async () => {
  origin = createServer((_request, response) => response.writeHead(404).end());
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  const address = origin.address() as { port: number };
  endpoint = `http://127.0.0.1:${address.port}/`;
});
afterAll(() => new Promise<void>((resolve) => origin.close(() => resolve())));

/** An ACS client whose next answers the test decides. */
function scriptedAcs() {
  let failure: UpstreamError | undefined;
  const call = async () => {
    if (failure) {
      throw failure;
    }
  };
  const identity: IdentityProvider = {
    createUser: async () => (await call(), "8:acs:x_y"),
    createUserAndToken: async () => {
      await call();
      return { userId: "8:acs:x_y", token: { token: "t", expiresOn: 0 } };
    },
    issueToken: async () => (await call(), { token: "t", expiresOn: 0 }),
    revokeTokens: call,
    deleteUser: call,
    exchangeTeamsToken: async () => (await call(), { token: "t", expiresOn: 0 }),
  };
  return {
    identity,
    answer(next: UpstreamError | undefined) {
      failure = next;
    },
  };
}

describe("readiness", () => {
  it("reports ACS refusing the gateway's credentials as misconfigured (503), until a call succeeds again", async () => {
    const acs = scriptedAcs();
    const readiness = createReadiness({ acsEndpoint: endpoint, cacheReady: async () => true });
    const tracked = readiness.track(acs.identity);
    expect(await readiness.report()).toMatchObject({ ready: true, status: "ok" });

    acs.answer(new UpstreamError("unauthorized", "ACS answered 401 Denied", { status: 401 }));
    await expect(tracked.issueToken("8:acs:x_y", ["chat"])).rejects.toBeInstanceOf(UpstreamError);
    expect(await readiness.report()).toEqual({
      ready: false,
      status: "misconfigured",
      checks: { upstream: "credentials-rejected", cache: "ok" },
    });

    // Any other answer proves the credentials work again (a 404 is ACS talking to us).
    acs.answer(new UpstreamError("not_found", "ACS answered 404", { status: 404 }));
    await expect(tracked.revokeTokens("8:acs:x_y")).rejects.toBeInstanceOf(UpstreamError);
    expect(await readiness.report()).toMatchObject({ ready: true, status: "ok" });
  });

  it("stays ready when ACS answers 401 for the caller's own input: a caller cannot take the instance out", async () => {
    // What ACS answers (docs/acs-wire-facts.md): 401 InvalidAccessToken for a Teams token that is
    // invalid or expired, 401 IdentityNotOwned for another resource's identity. Were they taken
    // for refused credentials, any signed-in caller could make every instance unready.
    const acs = scriptedAcs();
    const readiness = createReadiness({ acsEndpoint: endpoint, cacheReady: async () => true });
    const tracked = readiness.track(acs.identity);
    const answered = (status: number, code: string) => {
      const error = new RestError("ACS says no", { statusCode: status, code });
      Object.assign(error, { response: { status, headers: { get: () => undefined } } });
      return toUpstreamError(error);
    };
    acs.answer(answered(401, "InvalidAccessToken"));
    await expect(
      tracked.exchangeTeamsToken({ teamsToken: "expired", appId: "app", userObjectId: "user" }),
    ).rejects.toBeInstanceOf(UpstreamError);
    expect(await readiness.report()).toMatchObject({ ready: true, status: "ok" });
    acs.answer(answered(401, "IdentityNotOwned"));
    await expect(tracked.issueToken("8:acs:other_y", ["chat"])).rejects.toBeInstanceOf(
      UpstreamError,
    );
    expect(await readiness.report()).toMatchObject({ ready: true, status: "ok" });
  });

  it("stays ready but degraded when only the cache is down", async () => {
    const readiness = createReadiness({ acsEndpoint: endpoint, cacheReady: async () => false });
    expect(await readiness.report()).toEqual({
      ready: true,
      status: "degraded",
      checks: { upstream: "ok", cache: "unavailable" },
    });
  });

  it("stays ready but degraded while the database's open has failed; opening is not degraded", async () => {
    let state: "idle" | "opening" | "open" | "failed" = "opening";
    const readiness = createReadiness({
      acsEndpoint: endpoint,
      cacheReady: async () => true,
      databaseState: () => state,
    });
    expect(await readiness.report()).toEqual({
      ready: true,
      status: "ok",
      checks: { upstream: "ok", cache: "ok", database: "opening" },
    });
    state = "failed";
    expect(await readiness.report()).toEqual({
      ready: true,
      status: "degraded",
      checks: { upstream: "ok", cache: "ok", database: "unavailable" },
    });
    state = "open";
    expect(await readiness.report()).toMatchObject({ status: "ok", checks: { database: "ok" } });
  });

  it("is unavailable when ACS cannot be reached", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as { port: number }).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const readiness = createReadiness({
      acsEndpoint: `http://127.0.0.1:${port}/`,
      cacheReady: async () => true,
    });
    expect(await readiness.report()).toMatchObject({
      ready: false,
      status: "unavailable",
      checks: { upstream: "unreachable" },
    });
  });

  it("tells a refused key from a working one at start, by ACS's answer for a foreign identity", async () => {
    const acs = scriptedAcs();
    acs.answer(
      new UpstreamError("not_owned", "ACS answered 401 IdentityNotOwned", { status: 401 }),
    );
    expect(await checkAcsCredentials(acs.identity)).toBe("ok");
    acs.answer(new UpstreamError("unauthorized", "ACS answered 401 Denied", { status: 401 }));
    expect(await checkAcsCredentials(acs.identity)).toBe("rejected");
    acs.answer(new UpstreamError("unavailable", "ACS could not be reached"));
    expect(await checkAcsCredentials(acs.identity)).toBe("unreachable");
  });
});
