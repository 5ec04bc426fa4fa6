import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Emulator } from "@acs-identity-gateway/emulator";
import type { App } from "../../src/app.js";
import { DomainError } from "../../src/errors.js";
import { createProvisioner, type Provisioner } from "../../src/identity/provisioning.js";
import {
  createMemoryUserMappingStore,
  type UserMappingStore,
} from "../../src/identity/user-mapping-store.js";
import { createLogger } from "../../src/logger.js";
import { startTestEmulator } from "../helpers/emulator.js";
import { databaseOpen, identityProviderFor, startGateway } from "../helpers/gateway.js";
import { startPostgres, type PostgresServer } from "../helpers/postgres.js";
import { startRedis, type RedisProcess } from "../helpers/redis.js";

/**
 * Every state a caller's first identity can be left in by a failing store, and how each is left
 * (src/identity/provisioning.ts): a pending identity is the caller's, a record whose outcome is
 * unknown is settled before anything is deleted, a reservation never outlives its failed holder,
 * and with DATABASE_URL a Redis outage refuses no new caller.
 */
const silent = createLogger({ level: "silent" });
const actor = (key: string) => ({ key, isAdmin: false });

let emulator: Emulator;
let postgres: PostgresServer;
const apps: App[] = [];
const provisioners: Provisioner[] = [];

beforeAll(async () => {
  [emulator, postgres] = await Promise.all([startTestEmulator(), startPostgres()]);
}, 60_000);
afterEach(async () => {
  emulator.hooks.beforeRespond = undefined;
  provisioners.splice(0).forEach((p) => p.close());
  await Promise.all(apps.splice(0).map((app) => app.close()));
});
afterAll(async () => {
  await Promise.all([emulator.close(), postgres.stop()]);
});

/** Identities created and deleted at the emulator from here on. */
function counting() {
  const created = emulator.counters.createIdentity;
  const deleted = emulator.counters.deleteIdentity;
  return {
    created: () => emulator.counters.createIdentity - created,
    deleted: () => emulator.counters.deleteIdentity - deleted,
  };
}

async function gateway(env: Record<string, string>): Promise<App> {
  const app = await startGateway({
    COMMUNICATION_SERVICES_CONNECTION_STRING: emulator.connectionString,
    ...env,
  });
  apps.push(app);
  return app;
}

function provisionerOver(store: UserMappingStore): Provisioner {
  const provisioner = createProvisioner({
    store,
    identity: identityProviderFor(emulator),
    logger: silent,
    // The background clean-up's pauses, short: the tests wait for its effect, not for time.
    cleanupBackoffMs: [5],
  });
  provisioners.push(provisioner);
  return provisioner;
}

describe("a record whose outcome is unknown", () => {
  it("landed, though the store answered with an error: the call returns the identity, the caller's, never deleted", async () => {
    const memory = createMemoryUserMappingStore();
    // A statement that committed but whose answer timed out (a PostgreSQL pause).
    const store: UserMappingStore = {
      ...memory,
      record: async (subjectKey, reservationId, userId) => {
        await memory.record(subjectKey, reservationId, userId);
        throw new Error("query read timeout");
      },
    };
    const count = counting();
    // The settle found it recorded: the caller gets it, not UPSTREAM_UNAVAILABLE.
    const userId = await provisionerOver(store).identityOf("ann");
    expect(userId).toMatch(/^8:acs:/);
    expect(count.created()).toBe(1);
    expect(count.deleted()).toBe(0);
    expect(await memory.find("ann")).toEqual({ userId, confirmed: true });
    // And it is the one the caller gets from now on.
    expect(await provisionerOver(memory).identityOf("ann")).toBe(userId);
  });

  it("while the store is down: nothing is deleted until the store tells; then the reservation goes and the identity is deleted", async () => {
    const memory = createMemoryUserMappingStore();
    let down = true;
    const unlessDown =
      <A extends unknown[], R>(call: (...args: A) => Promise<R>) =>
      async (...args: A): Promise<R> => {
        if (down) {
          throw new Error("connection refused");
        }
        return call(...args);
      };
    let recordAttempted = false;
    const store: UserMappingStore = {
      ...memory,
      record: async () => {
        recordAttempted = true;
        down = true;
        throw new Error("connection refused");
      },
      release: unlessDown(memory.release),
      find: unlessDown(memory.find),
    };
    down = false;
    const count = counting();
    await expect(provisionerOver(store).identityOf("bea")).rejects.toThrow("connection refused");
    expect(recordAttempted).toBe(true);
    // The store could not say whether the record landed: the identity must not be deleted yet.
    expect(count.deleted()).toBe(0);
    expect(await memory.reserve("bea", "other", 1, 0)).toEqual({
      kind: "busy",
      leaseUntil: expect.any(Number),
    });

    down = false;
    await expect.poll(() => count.deleted(), { timeout: 15_000 }).toBe(1);
    expect(await memory.find("bea")).toBeUndefined();
    // The reservation went with it: the next call is not kept waiting.
    expect(await memory.reserve("bea", "next", 1, 0)).toEqual({ kind: "reserved" });
  });
});

describe("a process that stops while a failed record is unsettled", () => {
  it("logs the identity's id at warn when the settle starts waiting, and at error (possibly orphaned) when it stops first", async () => {
    const memory = createMemoryUserMappingStore();
    let down = false;
    const unlessDown =
      <A extends unknown[], R>(call: (...args: A) => Promise<R>) =>
      async (...args: A): Promise<R> => {
        if (down) {
          throw new Error("connection refused");
        }
        return call(...args);
      };
    const store: UserMappingStore = {
      ...memory,
      record: async () => {
        down = true;
        throw new Error("connection refused");
      },
      release: unlessDown(memory.release),
      find: unlessDown(memory.find),
    };
    const lines: { level: number; msg: string; userId?: string }[] = [];
    const logger = createLogger(
      { level: "info" },
      { write: (line: string) => void lines.push(JSON.parse(line) as (typeof lines)[number]) },
    );
    const provisioner = createProvisioner({
      store,
      identity: identityProviderFor(emulator),
      logger,
      // A pause the test never reaches: the process stops while the settle waits.
      cleanupBackoffMs: [600_000],
    });
    provisioners.push(provisioner);
    const count = counting();

    await expect(provisioner.identityOf("fay")).rejects.toThrow("connection refused");
    expect(count.created()).toBe(1);
    expect(count.deleted()).toBe(0);
    const waiting = lines.filter((line) => line.msg.includes("record outcome unknown"));
    expect(waiting).toEqual([
      expect.objectContaining({ level: 40, userId: expect.stringMatching(/^8:acs:/) }),
    ]);
    const userId = waiting[0]!.userId;
    expect(lines.filter((line) => line.level >= 50)).toEqual([]);

    provisioner.close();
    expect(lines.filter((line) => line.level >= 50)).toEqual([
      expect.objectContaining({
        level: 50,
        userId,
        msg: expect.stringMatching(
          /^possibly ORPHANED ACS identity.*delete it by its id unless a caller has it$/,
        ),
      }),
    ]);
  });
});

/** The fault, injected in the test's own database: confirming (pending -> mapped) fails. */
async function refuseConfirms(db: pg.Client): Promise<void> {
  await db.query(`
    CREATE FUNCTION test_refuse_confirm() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF OLD.state = 'pending' AND NEW.state = 'mapped' THEN
        RAISE EXCEPTION 'injected: confirm refused';
      END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER test_refuse_confirm BEFORE UPDATE ON acsgw_identity_mapping
      FOR EACH ROW EXECUTE FUNCTION test_refuse_confirm();`);
}

describe("with PostgreSQL (DATABASE_URL)", () => {
  it("a confirm that fails: me, revokeMyTokens and deleteMe act on the pending identity, never NOT_FOUND", async () => {
    const url = await postgres.newDatabase();
    const app = await gateway({ DATABASE_URL: url });
    await databaseOpen(app);
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    try {
      await refuseConfirms(db);

      const grant = await app.selfService.issueMyToken(actor("cleo"), ["voip"]);
      const { rows } = await db.query("SELECT state, user_id FROM acsgw_identity_mapping");
      expect(rows).toEqual([{ state: "pending", user_id: grant.userId }]);

      // `me` shows it, and the caller can revoke the token it holds.
      expect(await app.ownership.userIdOf("cleo")).toBe(grant.userId);
      expect((await app.selfService.revokeMyTokens(actor("cleo"))).userId).toBe(grant.userId);
      // An erasure request erases it.
      const count = counting();
      expect((await app.selfService.deleteMe(actor("cleo"))).userId).toBe(grant.userId);
      expect(count.deleted()).toBe(1);
      expect(await app.ownership.userIdOf("cleo")).toBeUndefined();
    } finally {
      await db.end();
    }
  });

  it("a pending identity is confirmed by the caller's next read once the database lets it", async () => {
    const url = await postgres.newDatabase();
    const app = await gateway({ DATABASE_URL: url });
    await databaseOpen(app);
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    try {
      await refuseConfirms(db);
      const { userId } = await app.selfService.issueMyToken(actor("dina"), ["chat"]);
      await db.query("DROP TRIGGER test_refuse_confirm ON acsgw_identity_mapping");
      expect((await app.selfService.revokeMyTokens(actor("dina"))).userId).toBe(userId);
      const { rows } = await db.query("SELECT state FROM acsgw_identity_mapping");
      expect(rows).toEqual([{ state: "mapped" }]);
    } finally {
      await db.end();
    }
  });

  it("PostgreSQL crashes during a first issueMyToken: once it is back, the caller is served at once and the unrecorded identity is deleted", async (context) => {
    if (!postgres.crash || !postgres.restart) {
      context.skip("an external DATABASE_URL cannot be crashed by the test");
    }
    const app = await gateway({ DATABASE_URL: await postgres.newDatabase() });
    const count = counting();
    let crashed = false;
    emulator.hooks.beforeRespond = async (operation) => {
      if (operation === "createIdentity" && !crashed) {
        crashed = true;
        // The reservation is written; the identity is being created: the database dies now.
        await postgres.crash!();
      }
    };
    const first = await app.selfService.issueMyToken(actor("edna"), ["chat"]).catch((e) => e);
    expect(first).toBeInstanceOf(DomainError);
    expect((first as DomainError).kind).toBe("upstream-unavailable");
    expect(count.created()).toBe(1);
    expect(count.deleted()).toBe(0);

    await postgres.restart!();
    // The failed call's clean-up runs once the database is back: its reservation released, its
    // unrecorded identity deleted at ACS.
    await expect.poll(() => count.deleted(), { timeout: 30_000 }).toBe(1);
    // The caller's next call is served at once: no "being created by another request".
    const next = await app.selfService.issueMyToken(actor("edna"), ["chat"]);
    expect(next.userId).toMatch(/^8:acs:/);
    expect(count.created()).toBe(2);
    expect(await app.ownership.userIdOf("edna")).toBe(next.userId);
  }, 90_000);
});

describe("Redis down, PostgreSQL up (DATABASE_URL)", () => {
  let redis: RedisProcess;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis.stop();
  });

  it("brand-new callers get their identity from PostgreSQL: Redis is only a cache", async () => {
    const app = await gateway({ REDIS_URL: redis.url, DATABASE_URL: await postgres.newDatabase() });
    await redis.kill();
    const count = counting();
    const callers = ["new-1", "new-2", "new-3", "new-4", "new-5"];
    const grants = await Promise.all(
      callers.map((key) => app.selfService.issueMyToken(actor(key), ["voip"])),
    );
    expect(new Set(grants.map((g) => g.userId)).size).toBe(5);
    expect(count.created()).toBe(5);
    // Each is recorded for good: the same identity again, Redis still down.
    for (const [i, key] of callers.entries()) {
      expect((await app.selfService.issueMyToken(actor(key), ["voip"])).userId).toBe(
        grants[i]!.userId,
      );
    }
    expect(count.created()).toBe(5);
    await redis.restart();
  });
});
