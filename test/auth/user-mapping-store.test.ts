import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRedisClient, type RedisClient } from "../../src/cache/redis-client.js";
import type { Config } from "../../src/config.js";
import {
  UserMappingConflictError,
  UserMappingStoreFullError,
  createMemoryUserMappingStore,
  createRedisUserMappingStore,
  type UserMappingStore,
} from "../../src/identity/user-mapping-store.js";
import { createLogger } from "../../src/logger.js";
import { startRedisCluster, type RedisClusterProcess } from "../helpers/redis-cluster.js";
import { startRedis, type RedisProcess } from "../helpers/redis.js";

const silent = createLogger({ level: "silent" });

async function ready(client: RedisClient): Promise<RedisClient> {
  await new Promise((r) => (client.status === "ready" ? r(null) : client.once("ready", r)));
  return client;
}

let redis: RedisProcess;
let cluster: RedisClusterProcess;
const clients: RedisClient[] = [];
async function connect(config: Exclude<Config["redis"], { mode: "memory" }>) {
  const client = createRedisClient(config, silent);
  clients.push(client);
  return ready(client);
}

beforeAll(async () => {
  [redis, cluster] = await Promise.all([startRedis(), startRedisCluster(3)]);
});
afterAll(async () => {
  clients.forEach((c) => c.disconnect());
  await Promise.all([redis.stop(), cluster.stop()]);
});

let prefixes = 0;
/** Two "instances": two stores over two connections, one key prefix. */
type Backend = () => Promise<[UserMappingStore, UserMappingStore]>;
const backends: [string, Backend][] = [
  [
    "memory",
    async () => {
      const store = createMemoryUserMappingStore();
      return [store, store];
    },
  ],
  [
    "Redis",
    async () => {
      const keyPrefix = `m${++prefixes}:`;
      const config = { mode: "single", url: redis.url } as const;
      return [
        createRedisUserMappingStore({ redis: await connect(config), keyPrefix }),
        createRedisUserMappingStore({ redis: await connect(config), keyPrefix }),
      ];
    },
  ],
  [
    "Redis Cluster",
    async () => {
      const keyPrefix = `m${++prefixes}:`;
      const config = { mode: "cluster", nodes: cluster.hosts } as const;
      return [
        createRedisUserMappingStore({ redis: await connect(config), keyPrefix }),
        createRedisUserMappingStore({ redis: await connect(config), keyPrefix }),
      ];
    },
  ],
];

describe.each(backends)("the self-service mapping store (%s)", (_name, create) => {
  it("lets exactly one of 20 concurrent first claims win, on two instances, and tells everyone the winner", async () => {
    const [one, two] = await create();
    expect(await one.get("subject")).toBeUndefined();
    const claims = await Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 ? one : two).claim("subject", `user-${i}`)),
    );
    expect(claims.filter((c) => c.won)).toHaveLength(1);
    const winner = claims.find((c) => c.won)!.userId;
    expect(new Set(claims.map((c) => c.userId))).toEqual(new Set([winner]));
    expect(await one.get("subject")).toBe(winner);
    expect(await two.subjectOf(winner)).toBe("subject");
    // The losers left no index entries behind.
    for (let i = 0; i < 20; i++) {
      if (`user-${i}` !== winner) {
        expect(await one.subjectOf(`user-${i}`)).toBeUndefined();
        expect(await one.removeByUserId(`user-${i}`)).toBeUndefined();
      }
    }
    expect(await one.get("subject")).toBe(winner);
  });

  it("treats claiming the mapping that already holds as a win (a retry never deletes its identity)", async () => {
    const [store] = await create();
    expect(await store.claim("s", "u")).toEqual({ userId: "u", won: true });
    expect(await store.claim("s", "u")).toEqual({ userId: "u", won: true });
    expect(await store.claim("s", "v")).toEqual({ userId: "u", won: false });
  });

  it("never maps one identity to two callers", async () => {
    const [store] = await create();
    await store.claim("alice", "shared");
    await expect(store.claim("bob", "shared")).rejects.toBeInstanceOf(UserMappingConflictError);
    expect(await store.get("bob")).toBeUndefined();
    expect(await store.subjectOf("shared")).toBe("alice");
  });

  it("forgets both directions on removal, and never removes a newer mapping", async () => {
    const [one, two] = await create();
    await one.claim("s", "old");
    expect(await two.subjectOf("old")).toBe("s");
    expect(await two.removeByUserId("old")).toBe("s");
    expect(await one.get("s")).toBeUndefined();
    expect(await one.subjectOf("old")).toBeUndefined();
    expect((await one.claim("s", "new")).won).toBe(true);
    expect(await two.removeByUserId("old")).toBeUndefined();
    expect(await one.get("s")).toBe("new");
    expect(await one.subjectOf("new")).toBe("s");
    expect(await one.removeByUserId("unknown")).toBeUndefined();
  });
});

describe("the in-memory mapping store's bound", () => {
  it("refuses new callers when full instead of evicting a mapping, and keeps serving existing ones", async () => {
    const store = createMemoryUserMappingStore({ maxEntries: 2 });
    await store.claim("a", "ua");
    await store.claim("b", "ub");
    await expect(store.claim("c", "uc")).rejects.toBeInstanceOf(UserMappingStoreFullError);
    expect(await store.get("a")).toBe("ua");
    expect(await store.claim("a", "other")).toEqual({ userId: "ua", won: false });
    await store.removeByUserId("ua");
    expect((await store.claim("c", "uc")).won).toBe(true);
  });
});

describe("the Redis mapping store's keys", () => {
  it("have no TTL, and a stray index entry (a crash between steps) is ignored and then cleared", async () => {
    const client = await connect({ mode: "single", url: redis.url });
    const store = createRedisUserMappingStore({ redis: client, keyPrefix: "k:" });
    await store.claim("s", "u");
    const keys = (await redis.client().keys("k:*")).sort();
    expect(keys).toEqual(["k:s:{s}", "k:u:{u}"]);
    for (const key of keys) {
      expect(await redis.client().ttl(key)).toBe(-1);
    }
    // A claim that wrote its index entry and then died: no mapping points back at it.
    await redis.client().set("k:u:{stray}", "s");
    expect(await store.subjectOf("stray")).toBeUndefined();
    expect(await store.removeByUserId("stray")).toBeUndefined();
    expect(await redis.client().exists("k:u:{stray}")).toBe(0);
    expect(await store.get("s")).toBe("u");
    // The same crash for a caller with no mapping yet does not block their claim.
    await redis.client().set("k:u:{half}", "t");
    expect(await store.claim("t", "half")).toEqual({ userId: "half", won: true });
  });
});

describe("the Redis mapping store when Redis is down", () => {
  it("fails instead of answering 'no mapping' (which would mint a second identity)", async () => {
    const client = await connect({ mode: "single", url: redis.url });
    const store = createRedisUserMappingStore({ redis: client, keyPrefix: "down:" });
    await store.claim("s", "u");
    await redis.kill();
    await expect(store.get("s")).rejects.toThrow();
    await expect(store.claim("s2", "u2")).rejects.toThrow();
    await expect(store.subjectOf("u")).rejects.toThrow();
    await expect(store.removeByUserId("u")).rejects.toThrow();
    await redis.restart();
  });
});
