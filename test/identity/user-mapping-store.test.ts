import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRedisClient, type RedisClient } from "../../src/redis/index.js";
import type { Config } from "../../src/config.js";
import pg from "pg";
import { migrate } from "../../src/identity/migrations/index.js";
import { createPgUserMappingStore } from "../../src/identity/pg-user-mapping-store.js";
import {
  UserMappingConflictError,
  UserMappingStoreFullError,
  claimMapping,
  createMemoryUserMappingStore,
  createRedisUserMappingStore,
  type UserMappingStore,
} from "../../src/identity/user-mapping-store.js";
import { createLogger } from "../../src/logger.js";
import { startRedisCluster, type RedisClusterProcess } from "../helpers/redis-cluster.js";
import { startPostgres, type PostgresServer } from "../helpers/postgres.js";
import { startRedis, type RedisProcess } from "../helpers/redis.js";

const silent = createLogger({ level: "silent" });

async function ready(client: RedisClient): Promise<RedisClient> {
  await new Promise((r) => (client.status === "ready" ? r(null) : client.once("ready", r)));
  return client;
}

let redis: RedisProcess;
let cluster: RedisClusterProcess;
let postgres: PostgresServer;
const clients: RedisClient[] = [];
const pools: pg.Pool[] = [];
async function connect(config: Exclude<Config["redis"], { mode: "memory" }>) {
  const client = createRedisClient(config, silent);
  clients.push(client);
  return ready(client);
}

beforeAll(async () => {
  [redis, cluster, postgres] = await Promise.all([
    startRedis(),
    startRedisCluster(3),
    startPostgres(),
  ]);
}, 60_000);
afterAll(async () => {
  clients.forEach((c) => c.disconnect());
  await Promise.all(pools.map((p) => p.end()));
  await Promise.all([redis.stop(), cluster.stop(), postgres.stop()]);
});

/** A fresh migrated database and a pool on it. */
async function database(): Promise<pg.Pool> {
  const pool = new pg.Pool({ connectionString: await postgres.newDatabase(), max: 20 });
  // The server stopping at the end of the file may reach a connection still closing.
  pool.on("error", () => {});
  pools.push(pool);
  await migrate(pool, silent);
  return pool;
}

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
  [
    "PostgreSQL",
    async () => {
      const pool = await database();
      // Two pools on one database: two instances.
      const other = new pg.Pool({ connectionString: pool.options.connectionString, max: 20 });
      other.on("error", () => {});
      pools.push(other);
      return [
        createPgUserMappingStore({ pool, resource: "r1" }),
        createPgUserMappingStore({ pool: other, resource: "r1" }),
      ];
    },
  ],
];

const T0 = 1_800_000_000_000;
const LEASE = 60_000;

describe.each(backends)("the self-service mapping store (%s)", (_name, create) => {
  it("grants exactly one of 20 concurrent reservations, on two instances; the others see it busy", async () => {
    const [one, two] = await create();
    expect(await one.get("subject")).toBeUndefined();
    const outcomes = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        (i % 2 ? one : two).reserve("subject", `res-${i}`, T0 + LEASE, T0),
      ),
    );
    expect(outcomes.filter((o) => o.kind === "reserved")).toHaveLength(1);
    expect(outcomes.filter((o) => o.kind === "busy")).toEqual(
      Array.from({ length: 19 }, () => ({ kind: "busy", leaseUntil: T0 + LEASE })),
    );
    const winner = outcomes.findIndex((o) => o.kind === "reserved");
    // A loser cannot record on someone else's reservation.
    const loser = winner === 0 ? 1 : 0;
    expect(await two.record("subject", `res-${loser}`, "user-loser")).toBe(false);
    expect(await one.ownsOrOwned("subject", "user-loser")).toBe(false);

    expect(await two.record("subject", `res-${winner}`, "user-1")).toBe(true);
    // Recorded is the subject's identity already (its token may be out), though not confirmed;
    // every later reservation learns it too.
    expect(await one.get("subject")).toBe("user-1");
    expect(await one.find("subject")).toEqual({ userId: "user-1", confirmed: false });
    expect(await two.subjectOf("user-1")).toBe("subject");
    expect(await one.reserve("subject", "late", T0 + 2 * LEASE, T0 + LEASE + 1)).toEqual({
      kind: "pending",
      userId: "user-1",
    });
    expect(await one.pending(10)).toEqual([{ subjectKey: "subject", userId: "user-1" }]);
    expect(await one.confirm("subject", "user-1")).toBe(true);
    expect(await two.confirm("subject", "user-1")).toBe(true);
    expect(await one.confirm("subject", "someone-else")).toBe(false);
    expect(await two.get("subject")).toBe("user-1");
    expect(await two.find("subject")).toEqual({ userId: "user-1", confirmed: true });
    expect(await two.pending(10)).toEqual([]);
    expect(await one.subjectOf("user-1")).toBe("subject");
    expect(await one.reserve("subject", "later", T0 + LEASE, T0)).toEqual({
      kind: "mapped",
      userId: "user-1",
    });
  });

  it("lets a reservation whose lease ran out be taken over, and its first owner's record then fails", async () => {
    const [one, two] = await create();
    expect(await one.reserve("s", "first", T0 + LEASE, T0)).toEqual({ kind: "reserved" });
    expect(await two.reserve("s", "second", T0 + LEASE + 10, T0 + LEASE - 1)).toEqual({
      kind: "busy",
      leaseUntil: T0 + LEASE,
    });
    expect(await two.reserve("s", "second", T0 + 2 * LEASE, T0 + LEASE)).toEqual({
      kind: "reserved",
    });
    expect(await one.record("s", "first", "u-first")).toBe(false);
    expect(await two.record("s", "second", "u-second")).toBe(true);
    expect(await one.confirm("s", "u-second")).toBe(true);
    expect(await one.get("s")).toBe("u-second");
  });

  it("drops a released reservation (creation failed) but never a recorded identity", async () => {
    const [store] = await create();
    await store.reserve("s", "r", T0 + LEASE, T0);
    await store.release("s", "r");
    expect(await store.reserve("s", "r2", T0 + LEASE, T0)).toEqual({ kind: "reserved" });
    await store.record("s", "r2", "u");
    await store.release("s", "r2");
    expect(await store.reserve("s", "r3", T0 + LEASE, T0)).toEqual({
      kind: "pending",
      userId: "u",
    });
  });

  it("treats claiming the mapping that already holds as a win", async () => {
    const [store] = await create();
    expect(await claimMapping(store, "s", "u", T0)).toEqual({ userId: "u", won: true });
    expect(await claimMapping(store, "s", "u", T0)).toEqual({ userId: "u", won: true });
    expect(await claimMapping(store, "s", "v", T0)).toEqual({ userId: "u", won: false });
  });

  it("never maps one identity to two callers", async () => {
    const [store] = await create();
    await claimMapping(store, "alice", "shared", T0);
    await expect(claimMapping(store, "bob", "shared", T0)).rejects.toBeInstanceOf(
      UserMappingConflictError,
    );
    expect(await store.get("bob")).toBeUndefined();
    // Bob's reservation was released, so his own identity can still be made.
    expect(await claimMapping(store, "bob", "bobs", T0)).toEqual({ userId: "bobs", won: true });
    expect(await store.subjectOf("shared")).toBe("alice");
  });

  it("forgets the mapping on removal, never a newer one, and keeps who owned the identity", async () => {
    const [one, two] = await create();
    await claimMapping(one, "s", "old", T0);
    expect(await two.subjectOf("old")).toBe("s");
    expect(await two.removeByUserId("old")).toBe("s");
    expect(await one.get("s")).toBeUndefined();
    expect(await one.subjectOf("old")).toBeUndefined();
    expect((await claimMapping(one, "s", "new", T0)).won).toBe(true);
    expect(await two.removeByUserId("old")).toBeUndefined();
    expect(await one.get("s")).toBe("new");
    expect(await one.subjectOf("new")).toBe("s");
    expect(await one.removeByUserId("unknown")).toBeUndefined();
    // The former owner still owns "old" for revocation; nobody else does.
    expect(await one.ownsOrOwned("s", "old")).toBe(true);
    expect(await one.ownsOrOwned("s", "new")).toBe(true);
    expect(await one.ownsOrOwned("other", "old")).toBe(false);
    // A replaced identity can never be recorded for another caller.
    await one.reserve("other", "r", T0 + LEASE, T0);
    await expect(one.record("other", "r", "old")).rejects.toBeInstanceOf(UserMappingConflictError);
  });
});

describe("the in-memory mapping store's bound", () => {
  it("refuses new callers when full instead of evicting a mapping, and keeps serving existing ones", async () => {
    const store = createMemoryUserMappingStore({ maxEntries: 2 });
    await claimMapping(store, "a", "ua");
    await claimMapping(store, "b", "ub");
    await expect(claimMapping(store, "c", "uc")).rejects.toBeInstanceOf(UserMappingStoreFullError);
    expect(await store.get("a")).toBe("ua");
    expect(await claimMapping(store, "a", "other")).toEqual({ userId: "ua", won: false });
  });
});

describe("the Redis mapping store's keys", () => {
  it("have no TTL, keep mappings of earlier versions (a bare user id) valid, and survive a stray owner key", async () => {
    const client = await connect({ mode: "single", url: redis.url });
    const store = createRedisUserMappingStore({ redis: client, keyPrefix: "k:" });
    await claimMapping(store, "s", "u");
    const keys = (await redis.client().keys("k:*")).sort();
    expect(keys).toEqual(["k:s:{s}", "k:u:{u}"]);
    for (const key of keys) {
      expect(await redis.client().ttl(key)).toBe(-1);
    }
    // Written by the previous version: a bare id under the subject key.
    await redis.client().set("k:s:{legacy}", "8:acs:r_legacy");
    expect(await store.get("legacy")).toBe("8:acs:r_legacy");
    // A record that wrote its owner key and then died: no mapping points back at it.
    await redis.client().set("k:u:{stray}", "t");
    expect(await store.subjectOf("stray")).toBeUndefined();
    expect(await store.removeByUserId("stray")).toBeUndefined();
    expect(await claimMapping(store, "t", "half")).toEqual({ userId: "half", won: true });
  });
});

describe("the PostgreSQL mapping store's schema", () => {
  it("is migrated once even when instances start together, and records its version", async () => {
    const pool = await database();
    // `database()` migrated already; five more concurrent starts apply nothing.
    const results = await Promise.all(Array.from({ length: 5 }, () => migrate(pool, silent)));
    expect(results.map((r) => r.applied)).toEqual([[], [], [], [], []]);
    const { rows } = await pool.query("SELECT version FROM acsgw_schema_migrations");
    expect(rows).toEqual([{ version: 1 }]);
  });

  it("keeps one caller's mappings per ACS resource apart", async () => {
    const pool = await database();
    const a = createPgUserMappingStore({ pool, resource: "a" });
    const b = createPgUserMappingStore({ pool, resource: "b" });
    await claimMapping(a, "s", "ua");
    expect(await b.get("s")).toBeUndefined();
    await claimMapping(b, "s", "ub");
    expect(await a.get("s")).toBe("ua");
    expect(await b.get("s")).toBe("ub");
  });
});

describe("switching to PostgreSQL from Redis", () => {
  it("imports a caller's Redis mapping on first sight, once, and never brings back a replaced one", async () => {
    const client = await connect({ mode: "single", url: redis.url });
    const earlier = createRedisUserMappingStore({ redis: client, keyPrefix: "import:" });
    await claimMapping(earlier, "alice", "u-alice");
    const store = createPgUserMappingStore({
      pool: await database(),
      resource: "r",
      importFrom: earlier,
    });
    expect(await store.get("alice")).toBeUndefined();
    expect(await store.reserve("alice", "r1", T0 + LEASE, T0)).toEqual({
      kind: "mapped",
      userId: "u-alice",
    });
    expect(await store.get("alice")).toBe("u-alice");
    expect(await store.ownsOrOwned("alice", "u-alice")).toBe(true);
    // A caller Redis does not know gets a plain reservation.
    expect(await store.reserve("bob", "r2", T0 + LEASE, T0)).toEqual({ kind: "reserved" });
    // Alice's identity deleted: her next reservation is fresh, not the stale Redis mapping.
    expect(await store.removeByUserId("u-alice")).toBe("alice");
    expect(await earlier.get("alice")).toBe("u-alice");
    expect(await store.reserve("alice", "r3", T0 + LEASE, T0)).toEqual({ kind: "reserved" });
  });

  it("treats the caller as new, and says so, while the earlier store cannot answer: Redis is only a cache", async () => {
    const earlier = createMemoryUserMappingStore();
    const broken = {
      ...earlier,
      get: async () => {
        throw new Error("redis down");
      },
      ownsOrOwned: async () => {
        throw new Error("redis down");
      },
    };
    const pool = await database();
    const skipped: unknown[] = [];
    const store = createPgUserMappingStore({
      pool,
      resource: "r",
      importFrom: broken,
      onImportSkipped: (error) => skipped.push(error),
    });
    expect(await store.reserve("carol", "r1", T0 + LEASE, T0)).toEqual({ kind: "reserved" });
    expect(await store.ownsOrOwned("carol", "u-unknown")).toBe(false);
    expect(skipped.map((e) => (e as Error).message)).toEqual(["redis down", "redis down"]);
    // PostgreSQL holds the reservation: it arbitrates from here on.
    const plain = createPgUserMappingStore({ pool, resource: "r" });
    expect(await plain.reserve("carol", "r2", T0 + LEASE, T0)).toMatchObject({ kind: "busy" });
  });
});

describe("the mapping stores when their server is down", () => {
  it("fail instead of answering 'no mapping' (which would mint a second identity): Redis", async () => {
    const client = await connect({ mode: "single", url: redis.url });
    const store = createRedisUserMappingStore({ redis: client, keyPrefix: "down:" });
    await claimMapping(store, "s", "u");
    await redis.kill();
    await expect(store.get("s")).rejects.toThrow();
    await expect(store.reserve("s2", "r", T0 + LEASE, T0)).rejects.toThrow();
    await expect(store.subjectOf("u")).rejects.toThrow();
    await expect(store.removeByUserId("u")).rejects.toThrow();
    await redis.restart();
  });

  it("fail instead of answering 'no mapping': PostgreSQL", async () => {
    const pool = new pg.Pool({
      connectionString: "postgres://postgres@127.0.0.1:1/none",
      connectionTimeoutMillis: 2000,
    });
    pools.push(pool);
    const store = createPgUserMappingStore({ pool, resource: "r" });
    await expect(store.get("s")).rejects.toThrow();
    await expect(store.reserve("s", "r", T0 + LEASE, T0)).rejects.toThrow();
  });
});
