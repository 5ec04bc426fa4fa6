import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import { introspect } from "../helpers/introspect.js";
import {
  ACS_ID,
  CREATE,
  DELETE,
  errorCode,
  ISSUE,
  ok,
  REVOKE,
  run,
  startGateway,
  upstreamAttempts,
} from "../helpers/gateway.js";
import { MAX_ENTITY_REPRESENTATIONS } from "../../src/graphql/apply-rights.js";

/**
 * The four mutations and `me` end to end, in process (executeOperation), against the embedded
 * emulator through the real Azure SDK. Upstream calls are counted by the emulator itself.
 */
let app: App;
const upstreamCalls = () => upstreamAttempts(app);

beforeAll(async () => {
  app = await startGateway();
});
afterAll(async () => {
  await app?.close();
});

async function newUser(): Promise<string> {
  const data = await ok<{ createUser: { id: string } }>(app, CREATE);
  return data.createUser.id;
}

describe("the gateway's GraphQL API", () => {
  it("creates a user with an ACS communication user id", async () => {
    const before = app.emulator!.counters.createIdentity;
    const id = await newUser();
    expect(id).toMatch(ACS_ID);
    expect(app.emulator!.counters.createIdentity).toBe(before + 1);
  });

  it("issues a voip token for a user that expires in 24 hours by default", async () => {
    const userId = await newUser();
    const started = Date.now();
    const { issueToken } = await ok(app, ISSUE, { userId, scopes: ["VOIP"] });
    expect(issueToken.user.id).toBe(userId);
    expect(issueToken.scopes).toEqual(["VOIP"]);
    const expiresOn = Date.parse(issueToken.expiresOn);
    expect(expiresOn - started).toBeGreaterThan(1440 * 60_000 - 60_000);
    expect(expiresOn - started).toBeLessThanOrEqual(1440 * 60_000 + 60_000);
    const state = await introspect(app.acs, issueToken.token);
    expect(state.active).toBe(true);
    expect(state.claims?.skypeid).toBe(userId.slice(2));
  });

  it("honours a custom lifetime and returns the scopes normalised", async () => {
    const userId = await newUser();
    const started = Date.now();
    const { issueToken } = await ok(app, ISSUE, {
      userId,
      scopes: ["VOIP", "CHAT", "VOIP"],
      expiresInMinutes: 60,
    });
    expect(issueToken.scopes).toEqual(["CHAT", "VOIP"]);
    expect(Math.abs(Date.parse(issueToken.expiresOn) - (started + 3_600_000))).toBeLessThan(60_000);
  });

  it("creates a new user with its token in one upstream call when no user is given", async () => {
    const before = { ...app.emulator!.counters };
    const { issueToken } = await ok(app, ISSUE, { scopes: ["CHAT"] });
    expect(issueToken.user.id).toMatch(ACS_ID);
    expect(app.emulator!.counters.createIdentity).toBe(before.createIdentity + 1);
    expect(app.emulator!.counters.issueAccessToken).toBe(before.issueAccessToken);
    expect((await introspect(app.acs, issueToken.token)).active).toBe(true);
  });

  it("revokes every token of a user, whatever the scopes", async () => {
    const userId = await newUser();
    const voip = (await ok(app, ISSUE, { userId, scopes: ["VOIP"] })).issueToken.token;
    const chat = (await ok(app, ISSUE, { userId, scopes: ["CHAT"], expiresInMinutes: 60 }))
      .issueToken.token;
    const { revokeTokens } = await ok(app, REVOKE, { userId });
    expect(revokeTokens.user.id).toBe(userId);
    expect(Number.isNaN(Date.parse(revokeTokens.revokedAt))).toBe(false);
    expect(await introspect(app.acs, voip)).toMatchObject({ active: false, reason: "revoked" });
    expect(await introspect(app.acs, chat)).toMatchObject({ active: false, reason: "revoked" });
    const fresh = (await ok(app, ISSUE, { userId, scopes: ["VOIP"] })).issueToken.token;
    expect(fresh).not.toBe(voip);
    expect((await introspect(app.acs, fresh)).active).toBe(true);
  });

  it("deletes a user; afterwards the user is NOT_FOUND without asking ACS", async () => {
    const userId = await newUser();
    const token = (await ok(app, ISSUE, { userId, scopes: ["VOIP"] })).issueToken.token;
    const { deleteUser } = await ok(app, DELETE, { userId });
    expect(deleteUser.userId).toBe(userId);
    expect(await introspect(app.acs, token)).toMatchObject({ active: false, reason: "deleted" });
    const calls = await upstreamCalls();
    expect((await errorCode(app, ISSUE, { userId, scopes: ["VOIP"] })).code).toBe("NOT_FOUND");
    expect((await errorCode(app, REVOKE, { userId })).code).toBe("NOT_FOUND");
    expect((await errorCode(app, DELETE, { userId })).code).toBe("NOT_FOUND");
    expect(await upstreamCalls()).toBe(calls);
  });

  it("answers NOT_FOUND for a well-formed id ACS does not know, and for another resource's id", async () => {
    const resource = app.emulator!.resourceId;
    const unknown = `8:acs:${resource}_00000000-0000-0000-0000-000000000000`;
    expect((await errorCode(app, ISSUE, { userId: unknown, scopes: ["CHAT"] })).code).toBe(
      "NOT_FOUND",
    );
    const foreign =
      "8:acs:11111111-2222-3333-4444-555555555555_00000005-14a2-493b-8a72-5a3a0d000081";
    expect((await errorCode(app, ISSUE, { userId: foreign, scopes: ["CHAT"] })).code).toBe(
      "NOT_FOUND",
    );
    expect((await errorCode(app, REVOKE, { userId: foreign })).code).toBe("NOT_FOUND");
  });

  it("rejects bad input with BAD_USER_INPUT before any upstream call", async () => {
    const userId = await newUser();
    const calls = await upstreamCalls();
    const cases: Record<string, unknown>[] = [
      { userId, scopes: [] },
      { userId: "not-an-acs-id", scopes: ["VOIP"] },
      { userId: "8:acs:nope", scopes: ["VOIP"] },
      { userId, scopes: ["VOIP"], expiresInMinutes: 59 },
      { userId, scopes: ["VOIP"], expiresInMinutes: 1441 },
      { userId, scopes: ["VOIP"], expiresInMinutes: 0 },
      { userId, scopes: ["TEAMS"] },
    ];
    for (const variables of cases) {
      const { code, error } = await errorCode(app, ISSUE, variables);
      expect(code, JSON.stringify(variables)).toBe("BAD_USER_INPUT");
      expect(error.message.length).toBeGreaterThan(0);
    }
    expect((await errorCode(app, REVOKE, { userId: "bogus" })).code).toBe("BAD_USER_INPUT");
    expect((await errorCode(app, DELETE, { userId: "bogus" })).code).toBe("BAD_USER_INPUT");
    expect(await upstreamCalls()).toBe(calls);
  });

  it("shows the anonymous admin in development, with an identity after issueMyToken", async () => {
    const before = await ok(app, "{ me { subject communicationUser { id } } }");
    expect(before.me.subject).toBe("anonymous");
    const mine = await ok(app, "mutation { issueMyToken(scopes: [CHAT]) { token user { id } } }");
    const after = await ok(app, "{ me { subject communicationUser { id } } }");
    expect(after.me.communicationUser.id).toBe(mine.issueMyToken.user.id);
    const again = await ok(app, "mutation { issueMyToken(scopes: [CHAT]) { token user { id } } }");
    expect(again.issueMyToken.user.id).toBe(mine.issueMyToken.user.id);
  });
});

describe("the federation subgraph", () => {
  it("publishes its SDL with the @key on CommunicationUser", async () => {
    const data = await ok(app, "{ _service { sdl } }");
    expect(data._service.sdl).toMatch(/type CommunicationUser\s+@key\(fields: "id"\)/);
    expect(data._service.sdl).toContain("specs.apollo.dev/federation/v2");
  });

  const ENTITIES =
    "query ($r: [_Any!]!) { _entities(representations: $r) { ... on CommunicationUser { id } } }";

  it("resolves CommunicationUser entities: null for a deleted id, BAD_USER_INPUT for a malformed one", async () => {
    const alive = await newUser();
    const gone = await newUser();
    await ok(app, DELETE, { userId: gone });
    const result = await run(app, ENTITIES, {
      r: [
        { __typename: "CommunicationUser", id: alive },
        { __typename: "CommunicationUser", id: gone },
        { __typename: "CommunicationUser", id: "garbage" },
      ],
    });
    expect(result.data?._entities).toEqual([{ id: alive }, null, null]);
    expect(result.errors).toHaveLength(1);
    expect(result.errors?.[0]).toMatchObject({
      path: ["_entities", 2],
      extensions: { code: "BAD_USER_INPUT" },
    });
  });

  it("refuses foreign entity types and oversized batches with one quiet BAD_USER_INPUT", async () => {
    const viewers = Array.from({ length: 990 }, () => ({ __typename: "Viewer" }));
    const foreign = await run(app, ENTITIES, { r: viewers });
    expect(foreign.errors).toHaveLength(1);
    expect(foreign.errors?.[0]?.extensions?.code).toBe("BAD_USER_INPUT");
    const id = await newUser();
    const many = Array.from({ length: MAX_ENTITY_REPRESENTATIONS + 1 }, () => ({
      __typename: "CommunicationUser",
      id,
    }));
    const oversized = await run(app, ENTITIES, { r: many });
    expect(oversized.errors).toHaveLength(1);
    expect(oversized.errors?.[0]?.extensions?.code).toBe("BAD_USER_INPUT");
    const fine = await ok(app, ENTITIES, { r: many.slice(1) });
    expect(fine._entities).toHaveLength(MAX_ENTITY_REPRESENTATIONS);
  });
});

describe("upstream failures", () => {
  it("maps ACS throttling to UPSTREAM_THROTTLED with retryAfterSeconds", async () => {
    // The emulator's clock stands still, so its 30-second window cannot roll over mid-test, and
    // its issue limit is 5 instead of the published 1,000.
    const now = Date.now();
    const throttled = await startGateway(
      {},
      { emulator: { throttle: { limits: { issueAccessToken: 5 } }, now: () => now } },
    );
    try {
      const userId = (await ok<{ createUser: { id: string } }>(throttled, CREATE)).createUser.id;
      // Distinct lifetimes, so the cache can't absorb the calls.
      for (let minutes = 60; minutes < 65; minutes++) {
        await ok(throttled, ISSUE, { userId, scopes: ["CHAT"], expiresInMinutes: minutes });
      }
      const { code, error } = await errorCode(throttled, ISSUE, { userId, scopes: ["VOIP"] });
      expect(code).toBe("UPSTREAM_THROTTLED");
      expect(error.extensions?.retryAfterSeconds).toBeGreaterThan(0);
      expect(error.extensions?.retryAfterSeconds).toBeLessThanOrEqual(30);
    } finally {
      await throttled.close();
    }
  });

  it("maps an unreachable ACS to UPSTREAM_UNAVAILABLE and says nothing about the key", async () => {
    const key = Buffer.alloc(32, 3).toString("base64");
    const down = await startGateway({
      // Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
      COMMUNICATION_SERVICES_CONNECTION_STRING: `endpoint=http://127.0.0.1:9/;accesskey=${key}`,
    });
    try {
      const { code, error } = await errorCode(down, CREATE);
      expect(code).toBe("UPSTREAM_UNAVAILABLE");
      expect(JSON.stringify(error)).not.toContain(key);
      const userId =
        "8:acs:2dee53b4-368b-45b4-ab52-8493fb117652_00000005-14a2-493b-8a72-5a3a0d000081";
      expect((await errorCode(down, ISSUE, { userId, scopes: ["VOIP"] })).code).toBe(
        "UPSTREAM_UNAVAILABLE",
      );
    } finally {
      await down.close();
    }
  });
});
