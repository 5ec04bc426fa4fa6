import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRedisClient, type RedisClient } from "../../src/cache/redis-client.js";
import {
  createMemoryUserMappingStore,
  createRedisUserMappingStore,
  type UserMappingStore,
} from "../../src/identity/user-mapping-store.js";
import { createLogger } from "../../src/logger.js";
import { startRedis, type RedisProcess } from "../helpers/redis.js";

let redis: RedisProcess;
let client: RedisClient;
beforeAll(async () => {
  redis = await startRedis();
  client = createRedisClient({ mode: "single", url: redis.url }, createLogger({ level: "silent" }));
  await new Promise((r) => (client.status === "ready" ? r(null) : client.once("ready", r)));
});
afterAll(async () => {
  client.disconnect();
  await redis.stop();
});

const backends: [string, () => UserMappingStore][] = [
  ["memory", () => createMemoryUserMappingStore()],
  ["Redis", () => createRedisUserMappingStore({ redis: client, keyPrefix: `m${Math.random()}:` })],
];

describe.each(backends)("the self-service mapping store (%s)", (_name, create) => {
  it("lets exactly one of 20 concurrent first claims win, and tells everyone the winner", async () => {
    const store = create();
    expect(await store.get("subject")).toBeUndefined();
    const claims = await Promise.all(
      Array.from({ length: 20 }, (_, i) => store.claim("subject", `user-${i}`)),
    );
    expect(claims.filter((c) => c.won)).toHaveLength(1);
    const winner = claims.find((c) => c.won)!.userId;
    expect(new Set(claims.map((c) => c.userId))).toEqual(new Set([winner]));
    expect(await store.get("subject")).toBe(winner);
  });

  it("forgets both directions on removal, and never removes a newer mapping", async () => {
    const store = create();
    await store.claim("s", "old");
    expect(await store.removeByUserId("old")).toBe("s");
    expect(await store.get("s")).toBeUndefined();
    expect((await store.claim("s", "new")).won).toBe(true);
    expect(await store.removeByUserId("old")).toBeUndefined();
    expect(await store.get("s")).toBe("new");
  });
});

describe("the Redis mapping store when Redis is down", () => {
  it("fails instead of answering 'no mapping' (which would mint a second identity)", async () => {
    const store = createRedisUserMappingStore({ redis: client, keyPrefix: "down:" });
    await store.claim("s", "u");
    await redis.kill();
    await expect(store.get("s")).rejects.toThrow();
    await redis.restart();
  });
});
