import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createRedisClient, type RedisClient } from "../../src/redis/index.js";
import type { Config } from "../../src/config.js";
import { createPostgresDb, migrate, type Db } from "../../src/directory/index.js";
import { createLegacyRedisMappings } from "../../src/identity/legacy-redis-mappings.js";
import { MAPPING_SCHEMA } from "../../src/identity/mapping-schema.js";
import { createSqlUserMappingStore } from "../../src/identity/sql-user-mapping-store.js";
import {
  UserMappingConflictError,
  UserMappingStoreFullError,
  claimMapping,
  createMemoryUserMappingStore,
  type UserMappingStore,
} from "../../src/identity/user-mapping-store.js";
import { createLogger } from "../../src/logger.js";
import { startRedisCluster, type RedisClusterProcess } from "../helpers/redis-cluster.js";
import { startRedis, type RedisProcess } from "../helpers/redis.js";
import pg from "pg";
import { pgliteBackend, postgresBackend } from "../directory/support.js";

/**
 * The self-service mapping store's contract, on every store the gateway uses: the SQL store on a
 * real PostgreSQL this file starts and on the embedded PGlite (one schema, one set of statements),
 * and the memory store of a gateway without a database. Then the mappings earlier versions kept in
 * Redis, which the SQL store imports.
 */
const silent = createLogger({ level: "silent" });

async function ready(client: RedisClient): Promise<RedisClient> {
  await new Promise((r) => (client.status === "ready" ? r(null) : client.once("ready", r)));
  return client;
}

let redis: RedisProcess;
let cluster: RedisClusterProcess;
const postgres = postgresBackend();
const pglite = pgliteBackend();
const clients: RedisClient[] = [];
/**
 * A client as the gateway's legacy-mapping connection has one (app/redis-connections.ts), with a
 * command timeout a busy machine's 2,400 writes of a test cannot exceed: these tests are about
 * what is read, not about timeouts.
 */
async function connect(config: Exclude<Config["redis"], { mode: "memory" }>) {
  const client = createRedisClient(config, silent, { commandTimeoutMs: 10_000 });
  clients.push(client);
  return ready(client);
}

beforeAll(async () => {
  [redis, cluster] = await Promise.all([
    startRedis(),
    startRedisCluster(3),
    postgres.setup(),
    pglite.setup(),
  ]);
}, 60_000);
afterEach(async () => {
  await Promise.all([postgres.cleanup(), pglite.cleanup()]);
});
afterAll(async () => {
  clients.forEach((c) => c.disconnect());
  await Promise.all([redis.stop(), cluster.stop(), postgres.teardown(), pglite.teardown()]);
});

/** A fresh database with the mapping schema, as two instances (two pools on PostgreSQL). */
async function sql(backend: typeof postgres): Promise<[Db, Db]> {
  const { a, b } = await backend.fresh();
  await migrate(a, MAPPING_SCHEMA, silent);
  return [a, b];
}

/** Two "instances": two stores over two connections to one database. */
type Backend = () => Promise<[UserMappingStore, UserMappingStore]>;
const sqlBackend =
  (backend: typeof postgres): Backend =>
  async () => {
    const [a, b] = await sql(backend);
    return [
      createSqlUserMappingStore({ db: a, resource: "r1" }),
      createSqlUserMappingStore({ db: b, resource: "r1" }),
    ];
  };
const backends: [string, Backend][] = [
  [
    "memory",
    async () => {
      const store = createMemoryUserMappingStore();
      return [store, store];
    },
  ],
  ["PostgreSQL", sqlBackend(postgres)],
  ["PGlite", sqlBackend(pglite)],
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

describe("the SQL mapping store's schema", () => {
  it("is migrated once even when instances start together, and records its version", async () => {
    const [db] = await sql(postgres);
    // `sql()` migrated already; five more concurrent starts apply nothing.
    const results = await Promise.all(
      Array.from({ length: 5 }, () => migrate(db, MAPPING_SCHEMA, silent)),
    );
    expect(results.map((r) => r.applied)).toEqual([[], [], [], [], []]);
    const { rows } = await db.query("SELECT version FROM acsgw_schema_migrations");
    expect(rows).toEqual([{ version: 1 }]);
  });

  it.each([
    ["PostgreSQL", postgres],
    ["PGlite", pglite],
  ])("keeps one caller's mappings per ACS resource apart (%s)", async (_name, backend) => {
    const [db] = await sql(backend);
    const a = createSqlUserMappingStore({ db, resource: "a" });
    const b = createSqlUserMappingStore({ db, resource: "b" });
    await claimMapping(a, "s", "ua");
    expect(await b.get("s")).toBeUndefined();
    await claimMapping(b, "s", "ub");
    expect(await a.get("s")).toBe("ua");
    expect(await b.get("s")).toBe("ub");
    expect(await collect(a.listUserIds())).toEqual(["ua"]);
  });
});

/** The keys an earlier version wrote for a confirmed mapping (bare id) and its owner. */
async function writeLegacy(
  client: Pick<RedisClient, "set">,
  prefix: string,
  subject: string,
  value: string,
  userId = value,
) {
  await client.set(`${prefix}s:{${subject}}`, value);
  await client.set(`${prefix}u:{${userId}}`, subject);
}

async function collect(items: AsyncIterable<string>): Promise<string[]> {
  const all: string[] = [];
  for await (const item of items) {
    all.push(item);
  }
  return all.sort();
}

describe("the mappings earlier versions kept in Redis", () => {
  it("are read as they were written: confirmed, pending, a bare reservation naming no one", async () => {
    const client = await connect({ mode: "single", url: redis.url });
    const legacy = createLegacyRedisMappings({ redis: client, keyPrefix: "k:" });
    await writeLegacy(client, "k:", "alice", "8:acs:r_alice");
    await writeLegacy(client, "k:", "bob", "~p|res-1|8:acs:r_bob", "8:acs:r_bob");
    await client.set("k:s:{carol}", `~r|res-2|${T0}`);
    expect(await legacy.get("alice")).toBe("8:acs:r_alice");
    expect(await legacy.get("bob")).toBe("8:acs:r_bob");
    expect(await legacy.get("carol")).toBeUndefined();
    expect(await legacy.subjectOf("8:acs:r_bob")).toBe("bob");
    expect(await legacy.ownsOrOwned("alice", "8:acs:r_alice")).toBe(true);
    expect(await legacy.ownsOrOwned("bob", "8:acs:r_alice")).toBe(false);
    expect(await collect(legacy.listUserIds())).toEqual(["8:acs:r_alice", "8:acs:r_bob"]);
  });

  it("are listed from every primary of a Redis Cluster, past one SCAN page", async () => {
    const client = await connect({ mode: "cluster", nodes: cluster.hosts });
    const prefix = `list${Date.now()}:`;
    const ids = Array.from({ length: 1200 }, (_, i) => `8:acs:r_${i}`);
    await Promise.all(ids.map((id, i) => writeLegacy(client, prefix, `subject-${i}`, id)));
    const legacy = createLegacyRedisMappings({ redis: client, keyPrefix: prefix });
    expect(await collect(legacy.listUserIds())).toEqual([...ids].sort());
  });

  it.each([
    ["PostgreSQL", postgres],
    ["PGlite", pglite],
  ])(
    "are imported by the SQL store on a caller's first sight, once, and a deleted one never comes back (%s)",
    async (_name, backend) => {
      const client = await connect({ mode: "single", url: redis.url });
      const prefix = `import${Date.now()}:`;
      await writeLegacy(client, prefix, "alice", "u-alice");
      await writeLegacy(client, prefix, "dave", "u-dave");
      const legacy = createLegacyRedisMappings({ redis: client, keyPrefix: prefix });
      const [db] = await sql(backend);
      const store = createSqlUserMappingStore({ db, resource: "r", importFrom: legacy });
      expect(await store.get("alice")).toBeUndefined();
      expect(await store.reserve("alice", "r1", T0 + LEASE, T0)).toEqual({
        kind: "mapped",
        userId: "u-alice",
      });
      expect(await store.get("alice")).toBe("u-alice");
      expect(await store.ownsOrOwned("alice", "u-alice")).toBe(true);
      // Listed for the directory: the database's own, and those only Redis knows.
      expect(await collect(store.listUserIds())).toEqual(["u-alice", "u-alice", "u-dave"]);
      // A caller Redis does not know gets a plain reservation.
      expect(await store.reserve("bob", "r2", T0 + LEASE, T0)).toEqual({ kind: "reserved" });
      // Alice's identity deleted: her next reservation is fresh, not the stale Redis mapping.
      expect(await store.removeByUserId("u-alice")).toBe("alice");
      expect(await legacy.get("alice")).toBe("u-alice");
      expect(await store.reserve("alice", "r3", T0 + LEASE, T0)).toEqual({ kind: "reserved" });
      // Dave's identity deleted before he was ever seen: the same, and he still owned it.
      expect(await store.removeByUserId("u-dave")).toBe("dave");
      expect(await store.reserve("dave", "r4", T0 + LEASE, T0)).toEqual({ kind: "reserved" });
      expect(await store.ownsOrOwned("dave", "u-dave")).toBe(true);
      // Redis itself is never written.
      expect(await client.get(`${prefix}s:{alice}`)).toBe("u-alice");
    },
  );

  it("treat the caller as new, and say so, while Redis cannot answer: it is only a cache", async () => {
    const down = () => Promise.reject(new Error("redis down"));
    const broken = {
      get: down,
      subjectOf: down,
      ownsOrOwned: down,
      // eslint-disable-next-line require-yield
      async *listUserIds(): AsyncIterable<string> {
        throw new Error("redis down");
      },
    };
    const [db] = await sql(pglite);
    const skipped: unknown[] = [];
    const store = createSqlUserMappingStore({
      db,
      resource: "r",
      importFrom: broken,
      onImportSkipped: (error) => skipped.push(error),
    });
    expect(await store.reserve("carol", "r1", T0 + LEASE, T0)).toEqual({ kind: "reserved" });
    expect(await store.ownsOrOwned("carol", "u-unknown")).toBe(false);
    expect(await collect(store.listUserIds())).toEqual([]);
    expect(skipped.map((e) => (e as Error).message)).toEqual([
      "redis down",
      "redis down",
      "redis down",
    ]);
    // The database holds the reservation: it arbitrates from here on.
    const plain = createSqlUserMappingStore({ db, resource: "r" });
    expect(await plain.reserve("carol", "r2", T0 + LEASE, T0)).toMatchObject({ kind: "busy" });
  });
});

describe("the SQL mapping store when its database is down", () => {
  it("fails instead of answering 'no mapping' (which would mint a second identity)", async () => {
    const pool = new pg.Pool({
      connectionString: "postgres://postgres@127.0.0.1:1/none",
      connectionTimeoutMillis: 2000,
    });
    const store = createSqlUserMappingStore({ db: createPostgresDb(pool), resource: "r" });
    try {
      await expect(store.get("s")).rejects.toThrow();
      await expect(store.reserve("s", "r", T0 + LEASE, T0)).rejects.toThrow();
      await expect(store.subjectOf("u")).rejects.toThrow();
      await expect(store.removeByUserId("u")).rejects.toThrow();
    } finally {
      await pool.end();
    }
  });
});
