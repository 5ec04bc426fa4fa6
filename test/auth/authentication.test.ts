import { spawnSync } from "node:child_process";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import { createLogger } from "../../src/logger.js";
import { startRedis, type RedisProcess } from "../helpers/redis.js";
import { startPostgres, type PostgresServer } from "../helpers/postgres.js";
import {
  CREATE,
  DELETE,
  ISSUE,
  REVOKE,
  startGateway,
  upstreamAttempts,
} from "../helpers/gateway.js";
import { identityClient } from "../helpers/emulator.js";
import { startTestIssuer, type TestIssuer } from "../helpers/jwks.js";

/**
 * Issue 5 at the gateway's edge: who may mint whose tokens, self-service identities, limits, and
 * the router secret, over real HTTP with tokens from a local JWKS issuer.
 */
let issuer: TestIssuer;
let redis: RedisProcess;
let app: App;
let url: string;
let logs = "";
let postgres: PostgresServer;
let databaseUrl: string;

const ROUTER_SECRET = "router-secret-0123456789";

function jwtEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    HOST: "127.0.0.1",
    AUTH_MODE: "jwt",
    AUTH_JWKS_URL: issuer.jwksUrl,
    AUTH_ISSUER: issuer.issuer,
    AUTH_AUDIENCE: issuer.audience,
    REDIS_URL: redis.url,
    // Every gateway of this file is an instance of one deployment: one Redis, one database.
    DATABASE_URL: databaseUrl,
    ...extra,
  };
}

interface Gql {
  status: number;
  data?: any;
  errors?: { message: string; extensions?: Record<string, any> }[];
}

async function gql(
  target: string,
  query: string,
  variables: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): Promise<Gql> {
  const response = await fetch(target, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ query, variables }),
  });
  return { status: response.status, ...((await response.json()) as object) };
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const codeOf = (result: Gql) => result.errors?.[0]?.extensions?.code;

beforeAll(async () => {
  [issuer, redis, postgres] = await Promise.all([startTestIssuer(), startRedis(), startPostgres()]);
  databaseUrl = await postgres.newDatabase();
  const capture = new Writable({
    write(chunk, _encoding, done) {
      logs += chunk.toString();
      done();
    },
  });
  app = await startGateway(jwtEnv({ LOG_LEVEL: "trace" }), {
    logger: createLogger({ level: "trace" }, capture),
  });
  url = await app.listen(0);
});

afterAll(async () => {
  await app?.close();
  await redis?.stop();
  await postgres?.stop();
  await issuer?.close();
});

describe("signed-in callers", () => {
  it("refuses requests without a valid bearer token with UNAUTHENTICATED and HTTP 401", async () => {
    const cases: [string, Record<string, string>][] = [
      ["no header", {}],
      ["not a bearer", { authorization: "Basic dXNlcjpwYXNz" }],
      ["garbage", bearer("not.a.jwt")],
      [
        "expired",
        bearer(await issuer.sign({}, { expiresIn: Math.floor(Date.now() / 1000) - 600 })),
      ],
      ["wrong audience", bearer(await issuer.sign({}, { audience: "api://other" }))],
      ["wrong issuer", bearer(await issuer.sign({}, { issuer: "https://evil.test/" }))],
      ["foreign key", bearer(await issuer.sign({}, { key: "foreign" }))],
      [
        "alg none",
        bearer(
          `${Buffer.from('{"alg":"none","typ":"JWT"}').toString("base64url")}.${Buffer.from(
            JSON.stringify({
              sub: "x",
              iss: issuer.issuer,
              aud: issuer.audience,
              roles: ["acs.admin"],
              exp: 9999999999,
            }),
          ).toString("base64url")}.`,
        ),
      ],
    ];
    const before = await upstreamAttempts(app);
    for (const [name, headers] of cases) {
      const result = await gql(url, "{ me { subject } }", {}, headers);
      expect(result.status, name).toBe(401);
      expect(codeOf(result), name).toBe("UNAUTHENTICATED");
    }
    expect(await upstreamAttempts(app)).toBe(before);
  });

  it("lets an end user mint only their own identity's tokens, created on first use", async () => {
    const alice = bearer(await issuer.sign({}, { subject: "alice" }));
    const me0 = await gql(url, "{ me { subject communicationUser { id } } }", {}, alice);
    expect(me0.data.me).toEqual({ subject: "alice", communicationUser: null });

    const first = await gql(
      url,
      "mutation { issueMyToken(scopes: [VOIP]) { token user { id } } }",
      {},
      alice,
    );
    expect(first.errors).toBeUndefined();
    const own = first.data.issueMyToken.user.id as string;
    const me1 = await gql(url, "{ me { communicationUser { id } } }", {}, alice);
    expect(me1.data.me.communicationUser.id).toBe(own);

    const mine = await gql(url, ISSUE, { userId: own, scopes: ["CHAT"] }, alice);
    expect(mine.errors).toBeUndefined();
    const revoked = await gql(url, REVOKE, { userId: own }, alice);
    expect(revoked.errors).toBeUndefined();
  });

  it("forbids an end user everything that touches another user, before any upstream call", async () => {
    const admin = bearer(await issuer.sign({ roles: ["acs.admin"] }, { subject: "ops" }));
    const victim = (await gql(url, CREATE, {}, admin)).data.createUser.id as string;
    const mallory = bearer(await issuer.sign({ roles: ["reader"] }, { subject: "mallory" }));
    await gql(url, "mutation { issueMyToken(scopes: [CHAT]) { token } }", {}, mallory);

    const before = await upstreamAttempts(app);
    const attempts: [string, string, Record<string, unknown>][] = [
      ["createUser", CREATE, {}],
      ["deleteUser", DELETE, { userId: victim }],
      ["issueToken for another", ISSUE, { userId: victim, scopes: ["VOIP"] }],
      ["issueToken without user", ISSUE, { scopes: ["VOIP"] }],
      ["revokeTokens for another", REVOKE, { userId: victim }],
      [
        "_entities for another",
        "query ($r: [_Any!]!) { _entities(representations: $r) { ... on CommunicationUser { id } } }",
        { r: [{ __typename: "CommunicationUser", id: victim }] },
      ],
    ];
    for (const [name, query, variables] of attempts) {
      const result = await gql(url, query, variables, mallory);
      expect(codeOf(result), name).toBe("FORBIDDEN");
      expect(JSON.stringify(result.data ?? null), name).not.toContain('token":"');
    }
    expect(await upstreamAttempts(app)).toBe(before);
  });

  it("lets an admin act on any user", async () => {
    const admin = bearer(await issuer.sign({ roles: ["acs.admin"] }, { subject: "ops" }));
    const userId = (await gql(url, CREATE, {}, admin)).data.createUser.id as string;
    expect((await gql(url, ISSUE, { userId, scopes: ["VOIP"] }, admin)).errors).toBeUndefined();
    expect((await gql(url, ISSUE, { scopes: ["VOIP"] }, admin)).errors).toBeUndefined();
    expect((await gql(url, REVOKE, { userId }, admin)).errors).toBeUndefined();
    const entities = await gql(
      url,
      "query ($r: [_Any!]!) { _entities(representations: $r) { ... on CommunicationUser { id } } }",
      { r: [{ __typename: "CommunicationUser", id: userId }] },
      admin,
    );
    expect(entities.data._entities).toEqual([{ id: userId }]);
    expect((await gql(url, DELETE, { userId }, admin)).errors).toBeUndefined();
  });

  it("deleting a self-service user removes the mapping; the next issueMyToken gets a new identity", async () => {
    const bob = bearer(await issuer.sign({}, { subject: "bob" }));
    const admin = bearer(await issuer.sign({ roles: ["acs.admin"] }, { subject: "ops" }));
    const firstId = (
      await gql(url, "mutation { issueMyToken(scopes: [CHAT]) { user { id } } }", {}, bob)
    ).data.issueMyToken.user.id;
    expect((await gql(url, DELETE, { userId: firstId }, admin)).errors).toBeUndefined();
    expect(
      (await gql(url, "{ me { communicationUser { id } } }", {}, bob)).data.me.communicationUser,
    ).toBeNull();
    const secondId = (
      await gql(url, "mutation { issueMyToken(scopes: [CHAT]) { user { id } } }", {}, bob)
    ).data.issueMyToken.user.id;
    expect(secondId).not.toBe(firstId);
  });
});

describe("self-service healing", () => {
  it("gives a caller a new identity when theirs was deleted outside the gateway", async () => {
    const frank = bearer(await issuer.sign({}, { subject: "frank" }));
    const mine = "mutation { issueMyToken(scopes: [CHAT]) { user { id } } }";
    const firstId = (await gql(url, mine, {}, frank)).data.issueMyToken.user.id as string;
    // Another tool deletes the identity straight at ACS; the gateway's mapping outlives it.
    await identityClient(app.emulator!).deleteUser({ communicationUserId: firstId });
    const again = await gql(
      url,
      "mutation { issueMyToken(scopes: [VOIP]) { user { id } } }",
      {},
      frank,
    );
    expect(again.errors).toBeUndefined();
    expect(again.data.issueMyToken.user.id).not.toBe(firstId);
    const me = await gql(url, "{ me { communicationUser { id } } }", {}, frank);
    expect(me.data.me.communicationUser.id).toBe(again.data.issueMyToken.user.id);
  });
});

describe("several ACS resources on one Redis and one database", () => {
  it("keeps each resource's self-service mappings apart", async () => {
    // Same Redis and key prefix, another ACS endpoint (its own embedded emulator).
    const elsewhere = await startGateway(jwtEnv());
    try {
      const elsewhereUrl = await elsewhere.listen(0);
      const grace = bearer(await issuer.sign({}, { subject: "grace" }));
      const mine = "mutation { issueMyToken(scopes: [CHAT]) { user { id } } }";
      const here = (await gql(url, mine, {}, grace)).data.issueMyToken.user.id as string;
      const there = (await gql(elsewhereUrl, mine, {}, grace)).data.issueMyToken.user.id as string;
      expect(there).not.toBe(here);
      const meHere = await gql(url, "{ me { communicationUser { id } } }", {}, grace);
      expect(meHere.data.me.communicationUser.id).toBe(here);
    } finally {
      await elsewhere.close();
    }
  });
});

describe("concurrent first use", () => {
  it("maps one subject to one ACS identity when two instances race on its first issueMyToken", async () => {
    const other = await startGateway(
      jwtEnv({
        COMMUNICATION_SERVICES_CONNECTION_STRING: `endpoint=${app.acs.endpoint};accesskey=${app.acs.accessKey}`,
      }),
    );
    try {
      const otherUrl = await other.listen(0);
      const carol = bearer(await issuer.sign({}, { subject: "carol" }));
      const counters = app.emulator!.counters;
      const createdBefore = counters.createIdentity;
      const deletedBefore = counters.deleteIdentity;
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          gql(
            i % 2 ? otherUrl : url,
            "mutation { issueMyToken(scopes: [VOIP]) { user { id } } }",
            {},
            carol,
          ),
        ),
      );
      const ids = new Set(results.map((r) => r.data?.issueMyToken.user.id));
      expect(ids.size).toBe(1);
      // Losers of the mapping race delete their identity in the background: wait for it.
      for (
        let i = 0;
        i < 50 &&
        counters.createIdentity - createdBefore - (counters.deleteIdentity - deletedBefore) !== 1;
        i++
      ) {
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(
        counters.createIdentity - createdBefore - (counters.deleteIdentity - deletedBefore),
      ).toBe(1);
    } finally {
      await other.close();
    }
  });
});

describe("limits", () => {
  it("rejects 50 aliased issueToken fields before any upstream call", async () => {
    const admin = bearer(await issuer.sign({ roles: ["acs.admin"] }, { subject: "ops" }));
    const fields = Array.from(
      { length: 50 },
      (_, i) => `t${i}: issueToken(scopes: [VOIP]) { token }`,
    ).join("\n");
    const before = await upstreamAttempts(app);
    const result = await gql(url, `mutation { ${fields} }`, {}, admin);
    expect(codeOf(result)).toBe("GRAPHQL_VALIDATION_FAILED");
    expect(result.data).toBeUndefined();
    expect(await upstreamAttempts(app)).toBe(before);
  });

  /** A gateway on the shared emulator and Redis with the limits' DEFAULTS unless `extra` says. */
  async function gatewayWithLimits(extra: Record<string, string> = {}) {
    const gateway = await startGateway(
      jwtEnv({
        RATE_LIMIT_ACS_CALLS_PER_MINUTE: undefined as unknown as string,
        REDIS_KEY_PREFIX: `rl-${Math.random().toString(36).slice(2)}:`,
        COMMUNICATION_SERVICES_CONNECTION_STRING: `endpoint=${app.acs.endpoint};accesskey=${app.acs.accessKey}`,
        ...extra,
      }),
    );
    return { gateway, url: await gateway.listen(0) };
  }

  it("charges an end user's ACS calls, not requests: cache hits and invalid calls are free", async () => {
    const { gateway, url: limitedUrl } = await gatewayWithLimits({
      RATE_LIMIT_ACS_CALLS_PER_MINUTE: "3",
    });
    try {
      const dave = bearer(await issuer.sign({}, { subject: "dave" }));
      const erin = bearer(await issuer.sign({}, { subject: "erin" }));
      const invalid =
        "mutation { issueMyToken(scopes: [CHAT], expiresInMinutes: 5) { expiresOn } }";
      for (let i = 0; i < 5; i++) {
        expect(codeOf(await gql(limitedUrl, invalid, {}, dave))).toBe("BAD_USER_INPUT");
      }
      // First call: the identity's creation and the mint are two ACS calls.
      const mint = "mutation { issueMyToken(scopes: [CHAT]) { token } }";
      const first = await gql(limitedUrl, mint, {}, dave);
      expect(first.errors).toBeUndefined();
      for (let i = 0; i < 20; i++) {
        const hit = await gql(limitedUrl, mint, {}, dave);
        expect(hit.data?.issueMyToken.token).toBe(first.data.issueMyToken.token);
      }
      const revoke = "mutation { revokeMyTokens { revokedAt } }";
      expect((await gql(limitedUrl, revoke, {}, dave)).errors).toBeUndefined();
      const refused = await gql(limitedUrl, revoke, {}, dave);
      expect(codeOf(refused)).toBe("RATE_LIMITED");
      expect(refused.errors?.[0]?.extensions?.retryAfterSeconds).toBeGreaterThan(0);
      expect(refused.errors?.[0]?.extensions?.retryAfterSeconds).toBeLessThanOrEqual(60);
      // Another caller has a budget of its own.
      expect((await gql(limitedUrl, mint, {}, erin)).errors).toBeUndefined();
    } finally {
      await gateway.close();
    }
  });

  it("stops one end user's revoke flood at their budget while an admin's revoke still reaches ACS", async () => {
    const { gateway, url: limitedUrl } = await gatewayWithLimits();
    try {
      // A subject no other test of this file used: every gateway here shares one database, and
      // an identity provisioned earlier would leave this one's first call a single ACS call.
      const mallory = bearer(await issuer.sign({}, { subject: "revoke-flooder" }));
      const ops = bearer(await issuer.sign({ roles: ["acs.admin"] }, { subject: "ops" }));
      const mine = await gql(
        limitedUrl,
        "mutation { issueMyToken(scopes: [VOIP]) { user { id } } }",
        {},
        mallory,
      );
      const userId = mine.data.issueMyToken.user.id as string;
      const codes: unknown[] = [];
      for (let i = 0; i < 70; i++) {
        codes.push(
          codeOf(await gql(limitedUrl, "mutation { revokeMyTokens { revokedAt } }", {}, mallory)),
        );
      }
      // 30 ACS calls a minute by default, two of them spent on creating and minting above. The
      // windows are fixed minutes, so the flood may straddle two: at most 28 + 30 get through.
      expect(codes.slice(0, 28)).toEqual(Array.from({ length: 28 }, () => undefined));
      expect(codes.filter((code) => code === undefined).length).toBeLessThanOrEqual(58);
      expect(codes).toContain("RATE_LIMITED");
      expect(codes.every((code) => code === undefined || code === "RATE_LIMITED")).toBe(true);
      const before = await upstreamAttempts(gateway);
      const adminRevoke = await gql(limitedUrl, REVOKE, { userId }, ops);
      expect(adminRevoke.errors).toBeUndefined();
      expect(await upstreamAttempts(gateway)).toBe(before + 1);
    } finally {
      await gateway.close();
    }
  });

  it("with the defaults, never limits an admin minting for 300 users nor 100 concurrent cache hits", async () => {
    const { gateway, url: limitedUrl } = await gatewayWithLimits();
    try {
      const backend = bearer(await issuer.sign({ roles: ["acs.admin"] }, { subject: "backend" }));
      const minted = [];
      for (let batch = 0; batch < 300; batch += 50) {
        minted.push(
          ...(await Promise.all(
            Array.from({ length: 50 }, () => gql(limitedUrl, ISSUE, { scopes: ["VOIP"] }, backend)),
          )),
        );
      }
      expect(minted.map(codeOf).filter((code) => code !== undefined)).toEqual([]);
      const frank = bearer(await issuer.sign({}, { subject: "frank" }));
      const mint = "mutation { issueMyToken(scopes: [CHAT, VOIP]) { token } }";
      await gql(limitedUrl, mint, {}, frank);
      const hits = await Promise.all(
        Array.from({ length: 100 }, () => gql(limitedUrl, mint, {}, frank)),
      );
      expect(hits.map(codeOf).filter((code) => code !== undefined)).toEqual([]);
    } finally {
      await gateway.close();
    }
  });
});

describe("behind a router", () => {
  it("requires the router secret on every request when ROUTER_SECRET is set", async () => {
    const routed = await startGateway(
      jwtEnv({
        ROUTER_SECRET,
        COMMUNICATION_SERVICES_CONNECTION_STRING: `endpoint=${app.acs.endpoint};accesskey=${app.acs.accessKey}`,
      }),
    );
    try {
      const routedUrl = await routed.listen(0);
      const admin = bearer(await issuer.sign({ roles: ["acs.admin"] }, { subject: "ops" }));
      const missing = await gql(routedUrl, "{ me { subject } }", {}, admin);
      expect(missing.status).toBe(401);
      expect(codeOf(missing)).toBe("UNAUTHENTICATED");
      const wrong = await gql(
        routedUrl,
        "{ me { subject } }",
        {},
        { ...admin, "router-authorization": "guess" },
      );
      expect(codeOf(wrong)).toBe("UNAUTHENTICATED");
      const right = await gql(
        routedUrl,
        "{ me { subject } }",
        {},
        { ...admin, "router-authorization": ROUTER_SECRET },
      );
      expect(right.data.me.subject).toBe("ops");
    } finally {
      await routed.close();
    }
  });
});

describe("secrets in output", () => {
  it("never writes a token, a bearer credential or the access key to the logs", async () => {
    const admin = await issuer.sign({ roles: ["acs.admin"] }, { subject: "ops" });
    const issued = await gql(url, ISSUE, { scopes: ["VOIP"] }, bearer(admin));
    const token = issued.data.issueToken.token as string;
    await gql(url, "{ me { subject } }", {}, bearer(`${admin}x`)); // a failing credential
    await gql(url, ISSUE, { userId: "bogus", scopes: ["VOIP"] }, bearer(admin));
    expect(logs.length).toBeGreaterThan(0);
    for (const secret of [
      token,
      admin,
      app.acs.accessKey,
      token.split(".")[2]!,
      admin.split(".")[2]!,
    ]) {
      expect(logs).not.toContain(secret);
    }
  });
});

describe("production", () => {
  it("refuses to start with AUTH_MODE=none, listing every problem, with a non-zero exit", () => {
    const result = spawnSync(process.execPath, ["--import", "tsx", "src/main.ts"], {
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        NODE_ENV: "production",
        AUTH_MODE: "none",
      },
      encoding: "utf8",
      timeout: 30_000,
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("AUTH_MODE");
    expect(result.stderr).toContain("COMMUNICATION_SERVICES_CONNECTION_STRING");
  });
});
