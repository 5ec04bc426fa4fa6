import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { createPostgresDb, migrate } from "../../src/directory/index.js";
import { MAPPING_SCHEMA } from "../../src/identity/mapping-schema.js";
import {
  createProvisioner,
  type Provisioner,
  type ProvisionerOptions,
} from "../../src/identity/provisioning.js";
import { createSqlUserMappingStore } from "../../src/identity/sql-user-mapping-store.js";
import type { UserMappingStore } from "../../src/identity/user-mapping-store.js";
import { createLogger } from "../../src/logger.js";
import { startPostgres, type PostgresServer } from "../helpers/postgres.js";

/**
 * The reservation lease (provisioning.ts): a creator that died blocks its caller for `leaseMs` (the
 * gateway passes HTTP_REQUEST_TIMEOUT_MS; test/identity/crash.test.ts shows that wiring), no
 * longer; a live creator is never taken over however long its ACS call takes; and one that lost
 * its lease all the same (its renewals could not reach the store, or it was frozen past it) never
 * records over the call that took over. On PostgreSQL, the gateway's store, with the
 * provisioner's clock injected: the tests move time, they never wait for it.
 */

const silent = createLogger({ level: "silent" });
const LEASE_MS = 4000;

let postgres: PostgresServer;
let pool: pg.Pool;
let store: UserMappingStore;
const provisioners: Provisioner[] = [];

beforeAll(async () => {
  postgres = await startPostgres();
  // No idle timeout: the pool sets no timers of its own, so a test on fake timers counts only
  // the provisioner's.
  pool = new pg.Pool({
    connectionString: await postgres.newDatabase(),
    max: 4,
    idleTimeoutMillis: 0,
  });
  pool.on("error", () => {});
  const db = createPostgresDb(pool);
  await migrate(db, MAPPING_SCHEMA, silent);
  store = createSqlUserMappingStore({ db, resource: "lease" });
}, 60_000);
afterEach(() => {
  provisioners.splice(0).forEach((p) => p.close());
  vi.useRealTimers();
});
afterAll(async () => {
  await pool?.end();
  await postgres?.stop();
});

/** The reservation row the store wrote for `subjectKey`, if it is still a reservation. */
async function reservation(
  subjectKey: string,
): Promise<{ reservationId: string; leaseUntil: number } | undefined> {
  const { rows } = await pool.query<{ reservation_id: string; lease_until: string }>(
    `SELECT reservation_id, lease_until FROM acsgw_identity_mapping
      WHERE resource = 'lease' AND subject_key = $1 AND state = 'reserved'`,
    [subjectKey],
  );
  const row = rows[0];
  return row && { reservationId: row.reservation_id, leaseUntil: Number(row.lease_until) };
}

/** ACS as far as the provisioner sees it: ids handed out in order, deletes remembered. */
function fakeAcs() {
  let next = 0;
  const deleted: string[] = [];
  return {
    deleted,
    createUser: () => Promise.resolve(`8:acs:lease-${++next}`),
    deleteUser: (userId: string) => {
      deleted.push(userId);
      return Promise.resolve();
    },
  };
}

function provisioner(options: Omit<ProvisionerOptions, "store" | "logger">): Provisioner {
  const made = createProvisioner({ store, logger: silent, leaseMs: LEASE_MS, ...options });
  provisioners.push(made);
  return made;
}

/** A promise and its resolve, for an ACS call the test answers when it chooses. */
function deferred<T>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

describe("the reservation lease", () => {
  it("a creator that dies right after reserving blocks its caller for the lease, no longer", async () => {
    const clock = { now: 1_800_000_000_000 };
    const reservedAt = clock.now;
    const acs = fakeAcs();
    // The creator "dies" right after its reservation: the hook never returns, so nothing of this
    // call runs again (no ACS call, no release, no renewal), as after a crash.
    let died!: () => void;
    const dead = new Promise<void>((resolve) => (died = resolve));
    const creator = provisioner({
      identity: acs,
      now: () => clock.now,
      afterStep: (step) => {
        if (step === "reserved") {
          died();
          return new Promise<void>(() => {});
        }
      },
    });
    void creator.identityOf("ana");
    await dead;

    // The lease written is the reservation's time plus leaseMs, exactly (the clock is the test's).
    const left = await reservation("ana");
    expect(left?.leaseUntil).toBe(reservedAt + LEASE_MS);

    // The caller's next call, on another instance, waits for the lease and takes it over the
    // moment it ends: its waits move the clock, so the time it was blocked is measured exactly.
    const next = provisioner({
      identity: acs,
      now: () => clock.now,
      sleep: async (ms) => {
        clock.now += ms;
      },
    });
    const userId = await next.identityOf("ana");
    expect(clock.now - reservedAt).toBe(LEASE_MS);
    expect(userId).toBe("8:acs:lease-1");
    expect(await store.find("ana")).toEqual({ userId, confirmed: true });
    expect(acs.deleted).toEqual([]);
  });

  it("a live creator whose ACS call outlasts the lease renews it: a call after the first lease's end waits, and both get the one identity", async () => {
    // Fake timers and Date: the renewals are timers, the leases Date.now; advancing one moves both.
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
    const reservedAt = Date.now();
    const answer = deferred<string>();
    const acs = fakeAcs();
    const reserved = deferred<void>();
    // The renewals' store (the provisioner's `cleanupStore`), telling the test when each landed:
    // a renewal is a real statement, which fake timers do not wait for.
    let renewals = 0;
    let landed = deferred<void>();
    const creator = provisioner({
      identity: acs,
      cleanupStore: {
        ...store,
        reserve: async (...args) => {
          const outcome = await store.reserve(...args);
          renewals++;
          landed.resolve();
          return outcome;
        },
      },
      afterStep: (step) => (step === "reserved" ? reserved.resolve() : undefined),
    });
    const creating = creator.identityOf("ben", () => answer.promise);
    await reserved.promise;
    expect((await reservation("ben"))?.leaseUntil).toBe(reservedAt + LEASE_MS);

    // Two and a half leases pass with the ACS call still in flight: a renewal each half lease.
    for (let half = 1; half <= 5; half++) {
      await vi.advanceTimersByTimeAsync(LEASE_MS / 2);
      await landed.promise;
      landed = deferred<void>();
      expect(renewals).toBe(half);
      // Renewed: it runs one lease from now (its first lease ended at the second half).
      expect((await reservation("ben"))?.leaseUntil).toBe(Date.now() + LEASE_MS);
    }
    expect(Date.now() - reservedAt).toBe(LEASE_MS * 2.5);
    // Another instance's call for the same caller is told to wait, not given the reservation.
    expect(await store.reserve("ben", "another", Date.now(), Date.now())).toEqual({
      kind: "busy",
      leaseUntil: Date.now() + LEASE_MS,
    });

    answer.resolve("8:acs:ben");
    expect(await creating).toBe("8:acs:ben");
    expect(await store.find("ben")).toEqual({ userId: "8:acs:ben", confirmed: true });
    expect(acs.deleted).toEqual([]);
    // No renewal left behind, and none after the record.
    expect(vi.getTimerCount()).toBe(0);
    expect(renewals).toBe(5);
  });

  it("a creator whose lease ran out all the same (its renewals could not reach the store) never records over the call that took over: it deletes its identity and answers the other's", async () => {
    const clock = { now: 1_800_000_000_000 };
    const acs = fakeAcs();
    let takenOver: Promise<string> | undefined;
    const cutOff = provisioner({
      identity: acs,
      now: () => clock.now,
      // Its renewals cannot reach the store (whenever their timer runs), its other calls can: the
      // lease runs out as it would for a process frozen past it.
      cleanupStore: { ...store, reserve: () => Promise.reject(new Error("connection reset")) },
    });
    // The ACS call answers only after the lease ran out and another instance took the
    // reservation over meanwhile (its waits, if any, move the clock).
    const slowCreate = async () => {
      const own = await acs.createUser();
      clock.now += LEASE_MS + 1;
      takenOver = provisioner({
        identity: acs,
        now: () => clock.now,
        sleep: async (ms) => {
          clock.now += ms;
        },
      }).identityOf("cy");
      await takenOver;
      return own;
    };
    const answered = await cutOff.identityOf("cy", slowCreate);

    const other = await takenOver!;
    expect(other).toBe("8:acs:lease-2");
    expect(answered).toBe(other);
    // The first creator's record did not land on the other call's reservation: its identity was
    // deleted, and the caller's row holds the other call's.
    expect(acs.deleted).toEqual(["8:acs:lease-1"]);
    expect(await store.find("cy")).toEqual({ userId: other, confirmed: true });
    const { rows } = await pool.query<{ n: string }>(
      `SELECT count(*) AS n FROM acsgw_identity_mapping
        WHERE resource = 'lease' AND subject_key = 'cy' AND state <> 'replaced'`,
    );
    expect(Number(rows[0]!.n)).toBe(1);
  });
});
