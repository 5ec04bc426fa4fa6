import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { App, AppDeps } from "../../src/app.js";
import type { Emulator } from "@acs-identity-gateway/emulator";
import { DomainError } from "../../src/errors.js";
import { createProvisioner, type Provisioner } from "../../src/identity/provisioning.js";
import {
  createMemoryUserMappingStore,
  type UserMappingStore,
} from "../../src/identity/user-mapping-store.js";
import { createPostgresDb, migrate, openDirectoryDb } from "../../src/directory/index.js";
import { MAPPING_SCHEMA } from "../../src/identity/mapping-schema.js";
import { mappingResourceOf } from "../../src/app/mapping-store.js";
import { createSqlUserMappingStore } from "../../src/identity/sql-user-mapping-store.js";
import { createLogger } from "../../src/logger.js";
import pg from "pg";
import { startTestEmulator } from "../helpers/emulator.js";
import { introspect } from "../helpers/introspect.js";
import { databaseOpen, identityProviderFor, run, startGateway } from "../helpers/gateway.js";
import { freePort } from "../helpers/ports.js";
import { startPostgres, type PostgresServer } from "../helpers/postgres.js";
import { commandCounts, startRedis, type RedisProcess } from "../helpers/redis.js";

const silent = createLogger({ level: "silent" });
/** The token service acts for a caller: an end user by key, or an admin. */
const actor = (key: string) => ({ key, isAdmin: false });
const ADMIN = { key: "admin", isAdmin: true };

let emulator: Emulator;
let redis: RedisProcess;
let postgres: PostgresServer;
/** One assertion client (the helper adds a listener per `client()` call). */
let admin: ReturnType<RedisProcess["client"]>;
const apps: App[] = [];
const pools: pg.Pool[] = [];

beforeAll(async () => {
  [emulator, redis, postgres] = await Promise.all([
    startTestEmulator(),
    startRedis(),
    startPostgres(),
  ]);
  admin = redis.client();
}, 60_000);
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
  await admin.config("SET", "maxmemory", "0");
  await admin.flushall();
});
afterAll(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.end().catch(() => {})));
  await Promise.all([emulator.close(), redis.stop(), postgres.stop()]);
});

/** Identities that exist at the emulator now, counted from its successful creates and deletes. */
function liveIdentities(): number {
  return emulator.counters.createIdentity - emulator.counters.deleteIdentity;
}
/** Counts from here on. */
function counting(): { created(): number; live(): number } {
  const created = emulator.counters.createIdentity;
  const live = liveIdentities();
  return {
    created: () => emulator.counters.createIdentity - created,
    live: () => liveIdentities() - live,
  };
}

async function gateway(env: Record<string, string>, deps: AppDeps = {}): Promise<App> {
  const app = await startGateway(
    {
      COMMUNICATION_SERVICES_CONNECTION_STRING: emulator.connectionString,
      ...env,
    },
    deps,
  );
  apps.push(app);
  return app;
}

/** A pool on `url` for the test's own statements (ended after the file). */
function poolOn(url: string): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  pool.on("error", () => {});
  pools.push(pool);
  return pool;
}

/**
 * Makes the mappings table refuse every insert and update (a real PostgreSQL error raised by a
 * trigger), or accept them again. Reads and deletes still work, so a failed call can still release
 * its reservation: the store is up but takes no new data.
 */
async function refuseMappingWrites(pool: pg.Pool, refuse: boolean): Promise<void> {
  if (refuse) {
    await pool.query(`CREATE OR REPLACE FUNCTION acsgw_test_refuse() RETURNS trigger AS $$
      BEGIN RAISE EXCEPTION 'writes refused by the test'; END $$ LANGUAGE plpgsql`);
    await pool.query(`CREATE TRIGGER acsgw_test_refuse BEFORE INSERT OR UPDATE
      ON acsgw_identity_mapping FOR EACH ROW EXECUTE FUNCTION acsgw_test_refuse()`);
  } else {
    await pool.query("DROP TRIGGER acsgw_test_refuse ON acsgw_identity_mapping");
  }
}

/**
 * A caller's issueMyToken, retried on UPSTREAM_UNAVAILABLE as a client would: on a loaded machine
 * a store command may time out (the gateway's Redis timeout is 250 ms), and such an attempt must
 * fail without leaving an identity behind; the identity counts below check exactly that.
 */
async function issueMine(app: App, subjectKey: string): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    try {
      return (await app.selfService.issueMyToken(actor(subjectKey), ["chat"])).userId;
    } catch (error) {
      if (
        !(error instanceof DomainError && error.kind === "upstream-unavailable") ||
        attempt >= 10
      ) {
        throw error;
      }
    }
  }
}

const ISSUE_MY = `mutation { issueMyToken(scopes: [CHAT]) { user { id } } }`;
const users = (n: number, tag: string) => Array.from({ length: n }, (_, i) => `${tag}|user-${i}`);

describe("the mapping database refusing writes", () => {
  it("fails issueMyToken as UPSTREAM_UNAVAILABLE and creates no identity at ACS", async () => {
    const url = await postgres.newDatabase();
    const app = await gateway({ DATABASE_URL: url });
    const pool = poolOn(url);
    await databaseOpen(app);
    await refuseMappingWrites(pool, true);
    const count = counting();

    const { errors } = await run(app, ISSUE_MY);
    expect(errors?.[0]?.extensions?.code).toBe("UPSTREAM_UNAVAILABLE");
    const outcomes = await Promise.allSettled(
      users(100, "refused").map((u) => app.selfService.issueMyToken(actor(u), ["chat"])),
    );
    expect(outcomes.every((o) => o.status === "rejected")).toBe(true);
    expect(
      outcomes
        .map((o) => (o as PromiseRejectedResult).reason)
        .every((e) => e instanceof DomainError && e.kind === "upstream-unavailable"),
    ).toBe(true);
    expect(count.created()).toBe(0);
    expect(count.live()).toBe(0);

    // Once the database takes writes again, each caller gets exactly one identity.
    await refuseMappingWrites(pool, false);
    const ids = await Promise.all(users(10, "refused").map((u) => issueMine(app, u)));
    expect(new Set(ids).size).toBe(10);
    expect(count.live()).toBe(10);
  }, 120_000);
});

describe("the store failing between the steps", () => {
  function provisionerOver(store: UserMappingStore, clock: { now: number }, hooks = {}) {
    return createProvisioner({
      store,
      identity: identityProviderFor(emulator),
      logger: silent,
      now: () => clock.now,
      leaseMs: 60_000,
      maxWaitMs: 10_000,
      // A fake clock: waiting for another call's lease advances it instead of sleeping.
      sleep: async (ms) => {
        clock.now += ms;
      },
      ...hooks,
    });
  }

  it("the database starting to refuse writes after the reservation: the created identity is deleted, and the caller's next call makes their one identity", async () => {
    const pool = poolOn(await postgres.newDatabase());
    const db = createPostgresDb(pool);
    await migrate(db, MAPPING_SCHEMA, silent);
    const store = createSqlUserMappingStore({ db, resource: "between" });
    const clock = { now: 1_800_000_000_000 };
    const provisioner = provisionerOver(store, clock, {
      afterStep: async (step: string) => {
        if (step === "reserved") {
          await refuseMappingWrites(pool, true);
        }
      },
    });
    const count = counting();
    await expect(provisioner.identityOf("alice")).rejects.toThrow();
    expect(count.created()).toBe(1);
    expect(count.live()).toBe(0);

    await refuseMappingWrites(pool, false);
    // The next call makes the caller's one identity. The fake clock runs through any wait.
    const plain = provisionerOver(store, clock);
    const userId = await plain.identityOf("alice");
    expect(count.live()).toBe(1);
    expect(await store.get("alice")).toBe(userId);
  });

  it("a record that times out: the identity is deleted before the call fails", async () => {
    const memory = createMemoryUserMappingStore();
    const store: UserMappingStore = {
      ...memory,
      record: async () => {
        throw new Error("timed out");
      },
    };
    const count = counting();
    await expect(provisionerOver(store, { now: 0 }).identityOf("bob")).rejects.toThrow("timed out");
    expect(count.created()).toBe(1);
    expect(count.live()).toBe(0);
    // The reservation was released: nothing blocks the next call.
    expect(await memory.reserve("bob", "next", 1, 0)).toEqual({ kind: "reserved" });
  });

  it("a confirm that fails: the identity stays recorded and the next call confirms the same one", async () => {
    const memory = createMemoryUserMappingStore();
    let failConfirm = true;
    const store: UserMappingStore = {
      ...memory,
      confirm: async (subjectKey, userId) => {
        if (failConfirm) {
          throw new Error("connection reset");
        }
        return memory.confirm(subjectKey, userId);
      },
    };
    const provisioner = provisionerOver(store, { now: 0 });
    const count = counting();
    const first = await provisioner.identityOf("carol");
    // Recorded, not confirmed, and the caller's all the same.
    expect(await memory.find("carol")).toEqual({ userId: first, confirmed: false });
    failConfirm = false;
    expect(await provisioner.identityOf("carol")).toBe(first);
    expect(await memory.find("carol")).toEqual({ userId: first, confirmed: true });
    expect(count.live()).toBe(1);
  });

  it("a call whose lease ran out during the ACS call deletes its identity and uses the one that took over", async () => {
    const store = createMemoryUserMappingStore();
    const clock = { now: 0 };
    let other: Promise<string> | undefined;
    const slow = provisionerOver(store, clock, {
      afterStep: async (step: string) => {
        if (step === "reserved") {
          // This call stalls past its lease; another call takes the reservation over meanwhile.
          clock.now += 60_001;
          other = provisionerOver(store, clock).identityOf("dave");
          await other;
        }
      },
    });
    const count = counting();
    const userId = await slow.identityOf("dave");
    expect(userId).toBe(await other);
    expect(count.created()).toBe(2);
    expect(count.live()).toBe(1);
  });

  it("start-up recovery confirms identities a crash left recorded", async () => {
    const store = createMemoryUserMappingStore();
    await store.reserve("erin", "r", 10, 0);
    await store.record("erin", "r", "8:acs:x_erin");
    const provisioner = provisionerOver(store, { now: 0 });
    expect(await provisioner.recover()).toBe(1);
    expect(await store.get("erin")).toBe("8:acs:x_erin");
    expect(await provisioner.recover()).toBe(0);
  });
});

describe("background clean-ups after failed calls", () => {
  /** ACS is never reached here: every call fails at its reservation. */
  const noAcs = {
    createUser: () => Promise.reject(new Error("not reached")),
    deleteUser: () => Promise.resolve(),
  };
  const opened: Provisioner[] = [];
  afterEach(() => {
    opened.splice(0).forEach((p) => p.close());
    vi.useRealTimers();
  });

  /** A logger whose lines (pino JSON) the test reads. */
  function capturing() {
    const lines: { level: number; msg: string }[] = [];
    const logger = createLogger(
      { level: "info" },
      {
        write: (line: string) =>
          void lines.push(JSON.parse(line) as { level: number; msg: string }),
      },
    );
    return { logger, lines };
  }

  function provisioner(options: Omit<Parameters<typeof createProvisioner>[0], "identity">) {
    const made = createProvisioner({ identity: noAcs, ...options });
    opened.push(made);
    return made;
  }

  /** A store whose reservations and releases fail while `down` (a command timing out). */
  function failing(memory: UserMappingStore, state: { down: boolean; releases: number }) {
    return {
      ...memory,
      reserve: () => Promise.reject(new Error("Command timed out")),
      release: async (subjectKey: string, reservationId: string) => {
        state.releases++;
        if (state.down) {
          throw new Error("Command timed out");
        }
        return memory.release(subjectKey, reservationId);
      },
    } satisfies UserMappingStore;
  }

  it("200 failed calls of one caller leave one background release, which frees the reservation the store wrote after all, and logs twice", async () => {
    // The pauses between tries are fake timers: the test moves time on, it never waits for it.
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    const memory = createMemoryUserMappingStore();
    const state = { down: true, releases: 0 };
    let calls = 0;
    const store: UserMappingStore = {
      ...failing(memory, state),
      // Each call's reservation times out; call 137's was written all the same.
      reserve: async (subjectKey, reservationId, leaseUntil, now) => {
        if (++calls === 137) {
          await memory.reserve(subjectKey, reservationId, leaseUntil, now);
        }
        throw new Error("Command timed out");
      },
    };
    const { logger, lines } = capturing();
    const outage = provisioner({ store, logger, now: () => 0, cleanupBackoffMs: [1000] });

    for (let i = 0; i < 200; i++) {
      await expect(outage.identityOf("ann")).rejects.toThrow("Command timed out");
    }
    // The first call tried its release; the 199 others joined its background clean-up.
    expect(state.releases).toBe(1);
    expect(await memory.reserve("ann", "other", 1, 0)).toMatchObject({ kind: "busy" });

    // One clean-up, and a try stops at the first release the store refuses: one store call per
    // pause (200 clean-ups would make 200). Counted in store calls, not in pending timers: the
    // fake clock also holds whatever else of this worker set a timer meanwhile.
    await vi.advanceTimersByTimeAsync(1000);
    expect(state.releases).toBe(2);
    await vi.advanceTimersByTimeAsync(1000);
    expect(state.releases).toBe(3);

    state.down = false;
    await vi.advanceTimersByTimeAsync(1000);
    // Every id the caller's calls used is released (a release that is not ours does nothing).
    expect(state.releases).toBe(3 + 200);
    // And the clean-up is over: no try after it.
    await vi.advanceTimersByTimeAsync(60_000);
    expect(state.releases).toBe(3 + 200);
    expect(await memory.reserve("ann", "next", 1, 0)).toEqual({ kind: "reserved" });
    // Once as it started waiting, once as it ended: no line per try.
    expect(lines.map((line) => line.msg)).toEqual([
      expect.stringContaining("retrying in the background"),
      expect.stringContaining("the mapping store is back: released"),
    ]);
  });

  it("a background release ends with its reservation's lease: the next call takes it over anyway", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    const state = { down: true, releases: 0 };
    const clock = { now: 0 };
    const { logger, lines } = capturing();
    const outage = provisioner({
      store: failing(createMemoryUserMappingStore(), state),
      logger,
      now: () => clock.now,
      leaseMs: 15_000,
      cleanupBackoffMs: [1000],
    });
    await expect(outage.identityOf("bea")).rejects.toThrow("Command timed out");
    await vi.advanceTimersByTimeAsync(1000);
    expect(state.releases).toBe(2);

    clock.now = 15_000;
    await vi.advanceTimersByTimeAsync(1000);
    expect(state.releases).toBe(2);
    expect(vi.getTimerCount()).toBe(0);
    expect(lines.at(-1)?.msg).toContain("reached the end of their leases");
  });

  it("at most maxCleanups clean-ups wait for the store; beyond it one warn line, and the lease", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    const state = { down: true, releases: 0 };
    const { logger, lines } = capturing();
    const outage = provisioner({
      store: failing(createMemoryUserMappingStore(), state),
      logger,
      now: () => 0,
      maxCleanups: 3,
      cleanupBackoffMs: [1000],
    });
    for (const subject of ["a", "b", "c", "d", "e", "f"]) {
      await expect(outage.identityOf(subject)).rejects.toThrow("Command timed out");
    }
    expect(vi.getTimerCount()).toBe(3);
    expect(lines.filter((line) => line.msg.includes("too many clean-ups"))).toMatchObject([
      { level: 40 },
    ]);
    outage.close();
    expect(vi.getTimerCount()).toBe(0);
  });

  it("a reservation on a database that never opened was never sent: nothing to release", async () => {
    const nobody = await freePort();
    const db = openDirectoryDb({
      logger: silent,
      databaseUrl: `postgres://postgres@127.0.0.1:${nobody}/none`,
      schemas: [MAPPING_SCHEMA],
    });
    const sqlStore = createSqlUserMappingStore({ db, resource: "unreachable" });
    let releases = 0;
    const store: UserMappingStore = {
      ...sqlStore,
      release: (subjectKey, reservationId) => {
        releases++;
        return sqlStore.release(subjectKey, reservationId);
      },
    };
    const outage = provisioner({ store, logger: silent, cleanupBackoffMs: [1000] });
    try {
      await expect(outage.identityOf("cy")).rejects.toThrow("the database is not open");
      expect(releases).toBe(0);
    } finally {
      await db.close();
    }
  });
});

describe("with PostgreSQL (DATABASE_URL) holding the mappings", () => {
  it("Redis flushed: every one of 50 users keeps the same identity and none gets a second", async () => {
    const app = await gateway({ REDIS_URL: redis.url, DATABASE_URL: await postgres.newDatabase() });
    const count = counting();
    const before = await Promise.all(users(50, "flush").map((u) => issueMine(app, u)));
    expect(new Set(before).size).toBe(50);
    await admin.flushall();
    const after = await Promise.all(users(50, "flush").map((u) => issueMine(app, u)));
    expect(after).toEqual(before);
    expect(count.created()).toBe(50);
    expect(count.live()).toBe(50);
  });

  it("upgrading a deployment whose mappings an earlier version kept in Redis: every caller keeps their identity, and the directory lists them", async () => {
    // What the earlier version left in Redis: per caller, the subject key (the bare user id) and
    // the owner key, under REDIS_KEY_PREFIX + "map:" + the ACS resource's hash.
    const prefix = `switch:map:${mappingResourceOf(emulator.endpoint)}:`;
    const acs = identityProviderFor(emulator);
    const ids: string[] = [];
    for (const subject of users(20, "switch")) {
      const userId = await acs.createUser();
      ids.push(userId);
      await admin.set(`${prefix}s:{${subject}}`, userId);
      await admin.set(`${prefix}u:{${userId}}`, subject);
    }
    const count = counting();
    const after = await gateway({
      REDIS_URL: redis.url,
      REDIS_KEY_PREFIX: "switch:",
      DATABASE_URL: await postgres.newDatabase(),
    });
    expect(await Promise.all(users(20, "switch").map((u) => issueMine(after, u)))).toEqual(ids);
    expect(count.created()).toBe(0);
    // The directory's start-up import read them from Redis too.
    await after.directoryDb!.imported;
    const listed = await after.directoryDb!.directory.list({ first: 100 });
    expect(listed.edges.map((edge) => edge.node.id).sort()).toEqual([...ids].sort());
  });

  it("concurrent first calls on two instances: one identity per user", async () => {
    const url = await postgres.newDatabase();
    const [one, two] = [
      await gateway({ REDIS_URL: redis.url, DATABASE_URL: url }),
      await gateway({ DATABASE_URL: url }),
    ];
    const count = counting();
    const subjects = users(10, "race");
    const grants = await Promise.all(
      subjects.flatMap((u) =>
        [one, two, one, two].map(async (app) => ({ u, id: await issueMine(app, u) })),
      ),
    );
    for (const u of subjects) {
      expect(new Set(grants.filter((g) => g.u === u).map((g) => g.id)).size).toBe(1);
    }
    expect(count.created()).toBe(10);
    expect(count.live()).toBe(10);
  });

  it("a deleted identity stays its former owner's, for revoking its tokens", async () => {
    const app = await gateway({ DATABASE_URL: await postgres.newDatabase() });
    const first = (await app.selfService.issueMyToken(actor("frank"), ["chat"])).userId;
    await app.tokens.deleteUser(ADMIN, first);
    const second = (await app.selfService.issueMyToken(actor("frank"), ["chat"])).userId;
    expect(second).not.toBe(first);
    expect(await app.ownership.userIdOf("frank")).toBe(second);
    expect(await app.ownership.ownsOrOwned("frank", first)).toBe(true);
    expect(await app.ownership.ownsOrOwned("frank", second)).toBe(true);
    expect(await app.ownership.ownsOrOwned("grace", first)).toBe(false);
  });
});

describe("Redis without DATABASE_URL", () => {
  it("says at start that each instance's mappings and directory are its own", async () => {
    const lines: { level: number; msg: string }[] = [];
    const logger = createLogger(
      { level: "warn" },
      {
        write: (line: string) =>
          void lines.push(JSON.parse(line) as { level: number; msg: string }),
      },
    );
    // In memory: opened on first use only, so this start costs no PGlite.
    await gateway({ REDIS_URL: redis.url, DIRECTORY_DATA_DIR: "memory" }, { logger });
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: 40,
        msg: expect.stringMatching(
          /REDIS_URL without DATABASE_URL: the self-service mappings .* not shared.*a user served by two instances gets an identity on each/,
        ),
      }),
    );
  });
});

/** Redis commands served since `before` was read, by name (INFO itself left out). */
async function commandsSince(before: Map<string, number>): Promise<Map<string, number>> {
  const ran = new Map<string, number>();
  for (const [name, calls] of await commandCounts(admin)) {
    if (name !== "info" && calls > (before.get(name) ?? 0)) {
      ran.set(name, calls - (before.get(name) ?? 0));
    }
  }
  return ran;
}

describe("a cache-hit issueMyToken", () => {
  /** Two gateways sharing one Redis and one PostgreSQL database (the mappings). */
  async function twoInstancesOnOneDatabase(): Promise<[App, App]> {
    const url = await postgres.newDatabase();
    return [
      await gateway({ REDIS_URL: redis.url, DATABASE_URL: url }),
      await gateway({ REDIS_URL: redis.url, DATABASE_URL: url }),
    ];
  }

  it("is one Redis command, the token lookup: the caller's mapping is not read again", async () => {
    const app = await gateway({ REDIS_URL: redis.url });
    const first = await app.selfService.issueMyToken(actor("hana"), ["chat"]);
    const seen = await commandCounts(admin);
    for (let i = 0; i < 20; i++) {
      expect((await app.selfService.issueMyToken(actor("hana"), ["chat"])).token).toBe(first.token);
    }
    expect(await commandsSince(seen)).toEqual(new Map([["mget", 20]]));
  });

  it("after deleteMe on another instance and the token cache's data lost, ACS's answer heals it: one new identity, no token of the old one", async () => {
    const [one, two] = await twoInstancesOnOneDatabase();
    const old = await one.selfService.issueMyToken(actor("ines"), ["chat"]);
    await two.selfService.deleteMe(actor("ines"));
    // No tombstone, no entry: only ACS can tell `one` that the identity it remembers is gone.
    await admin.flushall();
    const count = counting();
    const fresh = await one.selfService.issueMyToken(actor("ines"), ["chat"]);
    expect(fresh.userId).not.toBe(old.userId);
    expect(fresh.token).not.toBe(old.token);
    expect(count.created()).toBe(1);
    expect(await two.ownership.userIdOf("ines")).toBe(fresh.userId);
    expect((await two.selfService.issueMyToken(actor("ines"), ["chat"])).userId).toBe(fresh.userId);
  });

  it("with Redis paused: a remembered caller is served from ACS, and after deleteMe elsewhere gets a new identity, never the deleted one's token", async () => {
    const [one, two] = await twoInstancesOnOneDatabase();
    const old = await one.selfService.issueMyToken(actor("jo"), ["chat"]);
    await redis.pause();
    try {
      const during = await one.selfService.issueMyToken(actor("jo"), ["chat"]);
      expect(during.userId).toBe(old.userId);
      expect((await introspect(emulator, during.token)).active).toBe(true);
      // The delete reaches ACS and PostgreSQL; Redis cannot record it (unconfirmed).
      await expect(two.selfService.deleteMe(actor("jo"))).rejects.toMatchObject({
        kind: "revocation-unconfirmed",
      });
      const count = counting();
      const fresh = await one.selfService.issueMyToken(actor("jo"), ["chat"]);
      expect(fresh.userId).not.toBe(old.userId);
      expect((await introspect(emulator, fresh.token)).active).toBe(true);
      expect(count.created()).toBe(1);
    } finally {
      await redis.resume();
    }
    expect(await one.ownership.userIdOf("jo")).not.toBe(old.userId);
  });
});
