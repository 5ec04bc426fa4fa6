import { execFile } from "node:child_process";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import type { Emulator } from "@acs-identity-gateway/emulator";
import { createLogger } from "../../src/logger.js";
import { startTestEmulator } from "../helpers/emulator.js";
import { startGateway } from "../helpers/gateway.js";
import { startTestIssuer, type TestIssuer } from "../helpers/jwks.js";

/**
 * What an operator relies on (issue 11): an access log line per request carrying the request id
 * the response echoes, audit events for identity changes, per-operation metrics, a wrong ACS key
 * refused at start, and `_service { sdl }` for a router holding only the router secret.
 */
let emulator: Emulator;
let app: App;
let url: string;
let lines: Record<string, any>[] = [];

beforeAll(async () => {
  // Some ACS latency, so that concurrent requests overlap a mint (singleflight waits).
  emulator = await startTestEmulator({ latencyMs: 50 });
  const logger = createLogger(
    { level: "info" },
    new Writable({
      write(chunk, _encoding, done) {
        lines.push(
          ...chunk
            .toString()
            .trim()
            .split("\n")
            .map((line: string) => JSON.parse(line)),
        );
        done();
      },
    }),
  );
  app = await startGateway(
    { HOST: "127.0.0.1", COMMUNICATION_SERVICES_CONNECTION_STRING: emulator.connectionString },
    { logger },
  );
  url = await app.listen(0);
});

afterAll(async () => {
  await app?.close();
  await emulator?.close();
});

async function post(query: string, variables = {}, headers: Record<string, string> = {}) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ query, variables }),
  });
  return { response, body: (await response.json()) as any };
}

describe("request ids and the access log", () => {
  it("echoes the caller's x-request-id and writes one access line per request with it", async () => {
    lines = [];
    const { response, body } = await post(
      "mutation Onboard { createUser { id } }",
      {},
      { "x-request-id": "trace-me-42" },
    );
    expect(response.headers.get("x-request-id")).toBe("trace-me-42");
    const userId = body.data.createUser.id;

    const access = lines.filter((line) => line.msg === "graphql request");
    expect(access).toHaveLength(1);
    expect(access[0]).toMatchObject({
      reqId: "trace-me-42",
      operation: "Onboard",
      type: "mutation",
      fields: ["createUser"],
      outcome: "ok",
      upstreamCalls: 1,
      caller: { iss: "none" },
    });
    expect(typeof access[0]!.ms).toBe("number");
    const audit = lines.filter((line) => line.audit === "identity.created");
    expect(audit).toEqual([
      expect.objectContaining({ userId, via: "admin", actor: expect.any(Object) }),
    ]);

    // A cache hit: no upstream call, one hit.
    const issue = "mutation ($u: ID!) { issueToken(userId: $u, scopes: [VOIP]) { expiresOn } }";
    await post(issue, { u: userId });
    lines = [];
    await post(issue, { u: userId }, { "x-request-id": "second" });
    expect(lines.find((line) => line.msg === "graphql request")).toMatchObject({
      reqId: "second",
      cache: { hits: 1, misses: 0 },
      upstreamCalls: 0,
    });
  });

  it("makes a fresh id when none or a malformed one is sent, and never logs the token", async () => {
    lines = [];
    const { response, body } = await post(
      "mutation { issueToken(scopes: [CHAT]) { token } }",
      {},
      { "x-request-id": "bad id with spaces" },
    );
    const id = response.headers.get("x-request-id");
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    const text = JSON.stringify(lines);
    expect(text).toContain(id);
    expect(text).not.toContain(body.data.issueToken.token);
    expect(lines.find((line) => line.msg === "graphql request")?.outcome).toBe("ok");
  });

  it("counts the misses that waited for another request's mint instead of calling ACS", async () => {
    const userId = (await post("mutation { createUser { id } }")).body.data.createUser.id;
    // Started together in process, all 20 look the entry up before the first mint can answer
    // (it needs a round trip to ACS), so 19 of them must join its flight.
    const admin = { key: "ops", isAdmin: true };
    const grants = await Promise.all(
      Array.from({ length: 20 }, () =>
        app.tokens.issueToken(admin, { userId, scopes: ["chat.join"] }),
      ),
    );
    expect(new Set(grants.map((grant) => grant.token)).size).toBe(1);
    const metrics = await (await fetch(new URL("/metrics", url))).text();
    const waits = Number(
      /acsgw_token_cache_waits_total\{scope="process"\} (\d+)/.exec(metrics)?.[1],
    );
    const misses = Number(
      /acsgw_token_cache_requests_total\{result="miss"\} (\d+)/.exec(metrics)?.[1],
    );
    expect(waits).toBe(19);
    expect(misses).toBeGreaterThanOrEqual(waits);
    expect(metrics).toContain("acsgw_token_cache_ready 1");
  });

  it("counts requests by root field and outcome, and identity changes by event", async () => {
    await post('mutation { revokeTokens(userId: "not-an-id") { revokedAt } }');
    const metrics = await (await fetch(new URL("/metrics", url))).text();
    expect(metrics).toMatch(
      /acsgw_graphql_requests_total\{field="revokeTokens",type="mutation",outcome="BAD_USER_INPUT"\} 1/,
    );
    expect(metrics).toMatch(
      /acsgw_graphql_request_duration_seconds_bucket\{[^}]*field="createUser"/,
    );
    expect(metrics).toMatch(/acsgw_audit_events_total\{event="identity.created"\} [1-9]/);
  });
});

describe("start-up", () => {
  it("refuses to start with an access key ACS does not accept, naming the problem", async () => {
    const wrongKey = Buffer.alloc(32, 9).toString("base64");
    const result = await new Promise<{ code: number | null; stderr: string; stdout: string }>(
      (resolve) => {
        execFile(
          process.execPath,
          ["--import", "tsx", "src/main.ts"],
          {
            env: {
              PATH: process.env.PATH,
              PORT: "0",
              HOST: "127.0.0.1",
              // Not the repository's .data/directory, which other test processes may open too.
              DIRECTORY_DATA_DIR: "memory",
              COMMUNICATION_SERVICES_CONNECTION_STRING: `endpoint=${emulator.endpoint};accesskey=${wrongKey}`,
            },
            timeout: 60_000,
          },
          (error, stdout, stderr) =>
            resolve({ code: error ? (error.code as number | null) : 0, stdout, stderr }),
        );
      },
    );
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("refused the gateway's credentials");
    expect(result.stderr + result.stdout).not.toContain(wrongKey);
  });
});

describe("behind a router", () => {
  let issuer: TestIssuer;
  let routed: App;
  let routedUrl: string;
  const SECRET = "router-secret-0123456789";

  beforeAll(async () => {
    issuer = await startTestIssuer();
    routed = await startGateway({
      HOST: "127.0.0.1",
      NODE_ENV: "production",
      AUTH_MODE: "jwt",
      AUTH_JWKS_URL: issuer.jwksUrl,
      AUTH_ISSUER: issuer.issuer,
      AUTH_AUDIENCE: issuer.audience,
      ROUTER_SECRET: SECRET,
      COMMUNICATION_SERVICES_CONNECTION_STRING: emulator.connectionString,
    });
    routedUrl = await routed.listen(0);
  });
  afterAll(async () => {
    await routed?.close();
    await issuer?.close();
  });

  async function ask(query: string, headers: Record<string, string>) {
    const response = await fetch(routedUrl, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify({ query }),
    });
    return { status: response.status, body: (await response.json()) as any };
  }

  it("lets the router read _service { sdl } with the router secret alone, and nothing else", async () => {
    const sdl = await ask("{ _service { sdl } }", { "router-authorization": SECRET });
    expect(sdl.body.errors).toBeUndefined();
    expect(sdl.body.data._service.sdl).toContain("type CommunicationUser");
    const me = await ask("{ me { subject } }", { "router-authorization": SECRET });
    expect(me.body.errors[0].extensions.code).toBe("UNAUTHENTICATED");
    const noSecret = await ask("{ _service { sdl } }", {});
    expect(noSecret.status).toBe(401);
  });

  it("gives the SDL to the router whatever end user's token it forwards", async () => {
    const user = await issuer.sign({}, { subject: "someone" });
    const admin = await issuer.sign({ roles: ["acs.admin"] }, { subject: "ops" });
    const headers = (token: string) => ({
      "router-authorization": SECRET,
      authorization: `Bearer ${token}`,
    });
    // With the router secret the SDL is readable whoever the end user is: the router asked.
    expect((await ask("{ _service { sdl } }", headers(user))).body.errors).toBeUndefined();
    expect((await ask("{ _service { sdl } }", headers(admin))).body.errors).toBeUndefined();
  });
});
