import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import { CREATE, errorCode, ISSUE, ok, REVOKE, startGateway } from "../helpers/gateway.js";
import { introspect } from "../helpers/introspect.js";
import { startRedis, type RedisProcess } from "../helpers/redis.js";

/**
 * What a caller sees when a revoke cannot be confirmed: two gateways on one redis-server, which
 * is paused (SIGSTOP) for the revoke. ACS revokes the tokens either way; the answer says whether
 * every instance is known to have stopped serving the older ones.
 */
describe("a revoke the cache cannot confirm, through the GraphQL API", () => {
  let redis: RedisProcess;
  let a: App;
  let b: App;

  beforeAll(async () => {
    redis = await startRedis();
    a = await startGateway({ REDIS_URL: redis.url });
    b = await startGateway({
      REDIS_URL: redis.url,
      COMMUNICATION_SERVICES_CONNECTION_STRING: a.emulator!.connectionString,
    });
  });
  afterAll(async () => {
    await redis?.resume().catch(() => undefined);
    await b?.close();
    await a?.close();
    await redis?.stop();
  });

  const newUser = async () => (await ok<{ createUser: { id: string } }>(a, CREATE)).createUser.id;
  const token = async (app: App, userId: string) =>
    (await ok(app, ISSUE, { userId, scopes: ["CHAT"] })).issueToken.token as string;

  it("answers REVOCATION_UNCONFIRMED with revokedAt while Redis is paused, revokes at ACS anyway, and a retry once Redis answers is OK", async () => {
    const userId = await newUser();
    const old = await token(a, userId);
    expect(await token(b, userId)).toBe(old);

    await redis.pause();
    let unconfirmed;
    try {
      unconfirmed = await errorCode(a, REVOKE, { userId });
    } finally {
      await redis.resume();
    }
    expect(unconfirmed.code).toBe("REVOCATION_UNCONFIRMED");
    const revokedAt = unconfirmed.error.extensions?.revokedAt;
    expect(typeof revokedAt).toBe("string");
    expect(new Date(revokedAt as string).toISOString()).toBe(revokedAt);
    expect((await introspect(a.emulator!, old)).active).toBe(false);

    const retried = await ok(a, REVOKE, { userId });
    expect(retried.revokeTokens.user.id).toBe(userId);
    const fresh = await token(b, userId);
    expect(fresh).not.toBe(old);
    expect((await introspect(a.emulator!, fresh)).active).toBe(true);
  });
});
