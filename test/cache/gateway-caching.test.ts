import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { App } from "../../src/app.js";
import { introspect } from "../helpers/introspect.js";
import { CREATE, ISSUE, ok, REVOKE, run, startGateway } from "../helpers/gateway.js";
import { startRedis, type RedisProcess } from "../helpers/redis.js";

/**
 * Issue 4 through the GraphQL API: two gateway instances on one real redis-server and one
 * emulator, upstream calls counted by the emulator itself.
 */
let redis: RedisProcess;
let a: App;
let b: App;
let clockOffsetMs = 0;

beforeAll(async () => {
  redis = await startRedis();
  // A's embedded emulator is the upstream of both instances; its clock can be moved (near-expiry).
  a = await startGateway(
    { REDIS_URL: redis.url },
    { emulator: { now: () => Date.now() + clockOffsetMs } },
  );
  b = await startGateway({
    REDIS_URL: redis.url,
    COMMUNICATION_SERVICES_CONNECTION_STRING: a.emulator!.connectionString,
  });
});
afterAll(async () => {
  await b?.close();
  await a?.close();
  await redis?.stop();
});

const issues = () => a.emulator!.counters.issueAccessToken;
const newUser = async () => (await ok<{ createUser: { id: string } }>(a, CREATE)).createUser.id;
const token = async (app: App, variables: Record<string, unknown>) =>
  (await ok(app, ISSUE, variables)).issueToken.token as string;

describe("the token cache behind the GraphQL API", () => {
  it("serves repeated and reordered-scope requests from both instances with one ACS call", async () => {
    const userId = await newUser();
    const before = issues();
    const first = await token(a, { userId, scopes: ["VOIP", "CHAT"] });
    expect(await token(a, { userId, scopes: ["CHAT", "VOIP", "CHAT"] })).toBe(first);
    expect(await token(b, { userId, scopes: ["VOIP", "CHAT"] })).toBe(first);
    expect(issues() - before).toBe(1);
  });

  it("makes another call for another lifetime or scope set", async () => {
    const userId = await newUser();
    const before = issues();
    const day = await token(a, { userId, scopes: ["VOIP"] });
    const hour = await token(b, { userId, scopes: ["VOIP"], expiresInMinutes: 60 });
    const chat = await token(a, { userId, scopes: ["CHAT"] });
    expect(new Set([day, hour, chat]).size).toBe(3);
    expect(issues() - before).toBe(3);
  });

  it("after a revoke on one instance, both instances mint a new, active token", async () => {
    const userId = await newUser();
    const old = await token(a, { userId, scopes: ["VOIP"] });
    await ok(b, REVOKE, { userId });
    const before = issues();
    const fresh = await token(a, { userId, scopes: ["VOIP"] });
    expect(fresh).not.toBe(old);
    expect(issues() - before).toBe(1);
    expect(await token(b, { userId, scopes: ["VOIP"] })).toBe(fresh);
    expect(await introspect(a.acs, fresh)).toMatchObject({ active: true });
    expect(await introspect(a.acs, old)).toMatchObject({ active: false, reason: "revoked" });
  });

  it("turns 100 concurrent identical cold requests across two instances into one ACS call", async () => {
    const userId = await newUser();
    const before = issues();
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        token(i % 2 ? a : b, { userId, scopes: ["CHAT", "VOIP"] }),
      ),
    );
    expect(new Set(results).size).toBe(1);
    expect(issues() - before).toBe(1);
  });

  it("never serves a token minted before a revoke whose answer arrived after it", async () => {
    const userId = await newUser();
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let minted!: () => void;
    const mintedSignal = new Promise<void>((resolve) => (minted = resolve));
    a.emulator!.hooks.beforeRespond = async (operation) => {
      if (operation === "issueAccessToken") {
        a.emulator!.hooks.beforeRespond = undefined; // hold only this one answer
        minted();
        await held;
      }
    };
    // A asks for a token; ACS mints it, but the answer is held back...
    const late = run(a, ISSUE, { userId, scopes: ["VOIP"] });
    await mintedSignal;
    // ...while B revokes the user, and only then does A's answer arrive.
    await ok(b, REVOKE, { userId });
    release();
    const lateToken = ((await late).data as any).issueToken.token as string;
    expect(await introspect(a.acs, lateToken)).toMatchObject({ active: false, reason: "revoked" });

    // No later request, on either instance, is served the pre-revoke token.
    for (const app of [a, b, a, b]) {
      const served = await token(app, { userId, scopes: ["VOIP"] });
      expect(served).not.toBe(lateToken);
      expect((await introspect(a.acs, served)).active).toBe(true);
    }
  });

  it("does not serve a token with less than the minimum validity left; a fresh one is issued", async () => {
    const userId = await newUser();
    // ACS's clock runs 50 minutes behind: a 60-minute token has only 10 minutes left on arrival,
    // under the 15-minute minimum.
    clockOffsetMs = -50 * 60_000;
    try {
      const before = issues();
      // Both are minted (two ACS calls). Their text may be equal: the emulator signs
      // deterministically, and two mints in one second carry the same claims.
      await token(a, { userId, scopes: ["VOIP"], expiresInMinutes: 60 });
      await token(b, { userId, scopes: ["VOIP"], expiresInMinutes: 60 });
      await token(a, { userId, scopes: ["VOIP"], expiresInMinutes: 60 });
      expect(issues() - before).toBe(3);
    } finally {
      clockOffsetMs = 0;
    }
    // With a normal clock the same request is cached again.
    const before = issues();
    const three = await token(a, { userId, scopes: ["VOIP"], expiresInMinutes: 60 });
    expect(await token(b, { userId, scopes: ["VOIP"], expiresInMinutes: 60 })).toBe(three);
    expect(issues() - before).toBe(1);
  });

  it("keeps answering from ACS while Redis is down, and caches again once it is back", async () => {
    const userId = await newUser();
    await redis.kill();
    try {
      // Still ready: every instance shares this Redis, so failing readiness would take them all
      // out of the load balancer at once, while each can still serve straight from ACS.
      const url = await a.listen(0);
      const ready = await fetch(new URL("/readyz", url));
      expect(ready.status).toBe(200);
      expect(await ready.json()).toEqual({
        status: "degraded",
        checks: { upstream: "ok", cache: "unavailable" },
      });
      const before = issues();
      const one = await token(a, { userId, scopes: ["CHAT"] });
      const two = await token(b, { userId, scopes: ["CHAT"] });
      expect(one.length).toBeGreaterThan(0);
      expect(two.length).toBeGreaterThan(0);
      expect(issues() - before).toBeGreaterThanOrEqual(2);
    } finally {
      await redis.restart();
    }
    // Both clients reconnect on their own and their breakers close: wait for that condition (a
    // token one instance caches is served by the other without an ACS call), not for a time.
    let attempt = 0;
    await vi.waitFor(
      async () => {
        const minutes = 120 + attempt++;
        const first = await token(a, { userId, scopes: ["CHAT"], expiresInMinutes: minutes });
        const before = issues();
        expect(await token(b, { userId, scopes: ["CHAT"], expiresInMinutes: minutes })).toBe(first);
        expect(issues()).toBe(before);
      },
      { timeout: 15_000, interval: 100 },
    );
  });

  it("keeps no token in clear text anywhere in Redis", async () => {
    const userId = await newUser();
    const issued = await token(a, { userId, scopes: ["VOIP", "CHAT"] });
    const client = redis.client();
    const keys = await client.keys("*");
    expect(keys.length).toBeGreaterThan(0);
    for (const key of keys) {
      const type = await client.type(key);
      const values =
        type === "string"
          ? [await client.getBuffer(key)]
          : type === "set"
            ? await client.smembersBuffer(key)
            : [];
      for (const value of values) {
        const text = value?.toString("latin1") ?? "";
        expect(text).not.toContain(issued.split(".")[1]!);
        expect(text).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}/);
      }
    }
  });
});
