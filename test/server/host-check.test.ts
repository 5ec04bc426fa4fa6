import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import { isAllowedHost, MISDIRECTED_MESSAGE } from "../../src/server/plugins/host-check.js";
import { CREATE, startGateway } from "../helpers/gateway.js";

/**
 * DNS rebinding against a development gateway (AUTH_MODE=none, every caller an admin): a web page
 * whose own name was made to resolve to 127.0.0.1 calls the gateway as same-origin, so its `Host`
 * is its own name. Such requests get 421 before anything runs; loopback names and IP literals pass.
 */
describe("isAllowedHost", () => {
  it.each([
    ["localhost", "127.0.0.1"],
    ["localhost:4000", "127.0.0.1"],
    ["LocalHost:4000", "127.0.0.1"],
    ["127.0.0.1:4000", "127.0.0.1"],
    ["127.0.0.1", "0.0.0.0"],
    ["[::1]:4000", "127.0.0.1"],
    ["[::1]", "::"],
    ["192.168.1.20:4000", "0.0.0.0"],
    ["[fd00::20]:4000", "::"],
    ["devbox.internal:4000", "devbox.internal"],
    ["DEVBOX.internal", "devbox.Internal"],
  ])("accepts %s (HOST=%s)", (host, configured) => {
    expect(isAllowedHost(host, configured)).toBe(true);
  });

  it.each([
    ["evil.example:4000", "127.0.0.1"],
    ["evil.example", "0.0.0.0"],
    ["localhost.evil.example:4000", "127.0.0.1"],
    ["127.0.0.1.nip.io:4000", "127.0.0.1"],
    ["localhost.:4000", "127.0.0.1"],
    ["x", "127.0.0.1"],
    ["other.internal:4000", "devbox.internal"],
    ["0.0.0.0.evil.example", "0.0.0.0"],
    ["localhost:4000:4000", "127.0.0.1"],
    ["localhost:port", "127.0.0.1"],
    ["user@localhost:4000", "127.0.0.1"],
    ["[::1", "127.0.0.1"],
    ["[evil.example]:4000", "127.0.0.1"],
    ["", "127.0.0.1"],
    [undefined, "127.0.0.1"],
  ])("refuses %s (HOST=%s)", (host, configured) => {
    expect(isAllowedHost(host, configured)).toBe(false);
  });
});

const FOREIGN = "evil.example:4000";

describe("a development gateway (AUTH_MODE=none)", () => {
  let app: App;
  const created = () => app.emulator!.counters.createIdentity;
  const createUser = (host: string) =>
    app.server.fastify.inject({
      method: "POST",
      url: "/graphql",
      headers: { host, "content-type": "application/json" },
      payload: { query: CREATE },
    });

  beforeAll(async () => {
    app = await startGateway();
  });
  afterAll(async () => {
    await app?.close();
  });

  it("answers 421 to a foreign Host on every route, and nothing runs", async () => {
    const before = created();
    const requests = [
      { method: "POST" as const, url: "/graphql", payload: { query: CREATE } },
      { method: "GET" as const, url: `/graphql?query=${encodeURIComponent(CREATE)}` },
      { method: "GET" as const, url: "/graphql", headers: { accept: "text/html" } },
      { method: "GET" as const, url: "/" },
      { method: "GET" as const, url: "/explorer/explorer.js" },
      { method: "GET" as const, url: "/sandbox" },
      { method: "GET" as const, url: "/healthz" },
      { method: "GET" as const, url: "/metrics" },
    ];
    for (const host of [FOREIGN, "evil.example", "localhost.evil.example:4000"]) {
      for (const { headers, ...request } of requests) {
        const answer = await app.server.fastify.inject({
          ...request,
          headers: { ...headers, host, "apollo-require-preflight": "1" },
        });
        expect(answer.statusCode, `${host} ${request.method} ${request.url}`).toBe(421);
        expect(answer.headers["content-type"]).toBe("text/plain; charset=utf-8");
        expect(answer.body).toBe(MISDIRECTED_MESSAGE);
        expect(answer.body.trimEnd()).not.toContain("\n");
      }
    }
    expect(created()).toBe(before);
  });

  it("serves localhost, 127.0.0.1, [::1] and IP literals on any port, and still refuses a foreign name", async () => {
    const before = created();
    for (const host of ["localhost:4000", "127.0.0.1:51234", "[::1]:4000", "10.0.0.7:4000"]) {
      const answer = await createUser(host);
      expect(answer.statusCode, host).toBe(200);
      expect(answer.json().data.createUser.id).toMatch(/^8:acs:/);
    }
    expect(created()).toBe(before + 4);
    expect((await createUser(FOREIGN)).statusCode).toBe(421);
    expect(created()).toBe(before + 4);
  });
});

describe("HOST set to a name", () => {
  let app: App;

  beforeAll(async () => {
    app = await startGateway({ HOST: "devbox.internal" });
  });
  afterAll(async () => {
    await app?.close();
  });

  it("serves that name besides loopback, and refuses other names", async () => {
    const ask = (host: string) =>
      app.server.fastify.inject({
        method: "POST",
        url: "/graphql",
        headers: { host, "content-type": "application/json" },
        payload: { query: "{ __typename }" },
      });
    expect((await ask("devbox.internal:4000")).statusCode).toBe(200);
    expect((await ask("localhost:4000")).statusCode).toBe(200);
    expect((await ask("other.internal:4000")).statusCode).toBe(421);
    expect((await ask(FOREIGN)).statusCode).toBe(421);
  });
});

describe("AUTH_MODE=jwt", () => {
  let jwt: App;
  let none: App;

  beforeAll(async () => {
    jwt = await startGateway({
      AUTH_MODE: "jwt",
      AUTH_JWKS_URL: "https://login.example.com/keys",
      AUTH_ISSUER: "https://login.example.com/",
      AUTH_AUDIENCE: "api://gateway",
    });
    none = await startGateway();
  });
  afterAll(async () => {
    await jwt?.close();
    await none?.close();
  });

  it("leaves a foreign Host to normal authentication (401 without a token), where AUTH_MODE=none answers 421", async () => {
    const request = {
      method: "POST" as const,
      url: "/graphql",
      headers: { host: FOREIGN, "content-type": "application/json" },
      payload: { query: CREATE },
    };
    const answer = await jwt.server.fastify.inject(request);
    expect(answer.statusCode).toBe(401);
    expect(answer.json().errors[0].extensions.code).toBe("UNAUTHENTICATED");
    expect(
      (await jwt.server.fastify.inject({ ...request, method: "GET", url: "/" })).statusCode,
    ).toBe(200);
    expect(jwt.emulator!.counters.createIdentity).toBe(0);
    expect((await none.server.fastify.inject(request)).statusCode).toBe(421);
  });
});
