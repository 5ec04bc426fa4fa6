import { Registry } from "prom-client";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { createDirectory, type Db } from "../../src/directory/index.js";
import { createDirectoryRecords, TOUCH_BATCH_MS } from "../../src/identity/directory-records.js";
import { createLogger } from "../../src/logger.js";
import { pgliteBackend, waitFor } from "../directory/support.js";

/**
 * The directory's background writes (a revoke's, a delete's, a mint's), which follow a change ACS
 * already made: a database that is away for a while delays them and loses none; one that stays
 * away past the retry window, or a shutdown, gives them up with the user id logged and counted.
 * A real directory on the embedded PGlite, reached through a switch that makes every statement
 * fail while the "database" is down.
 */
const backend = pgliteBackend();
const ADMIN = { key: "admin", isAdmin: true, subject: "ops" };

beforeAll(() => backend.setup(), 60_000);
afterEach(() => {
  vi.useRealTimers();
});
afterAll(() => backend.teardown());

/** `db`, failing every statement while `state.down`. */
function switchable(db: Db, state: { down: boolean }): Db {
  const check = () => {
    if (state.down) {
      throw new Error("connect ECONNREFUSED (the test's database is down)");
    }
  };
  return {
    ...db,
    query: async (sql, params) => {
      check();
      return db.query(sql, params);
    },
    transaction: async (fn) => {
      check();
      return db.transaction(fn);
    },
  };
}

async function records(state: { down: boolean }) {
  const { a } = await backend.fresh();
  const lines: { level: number; msg: string; userId?: string }[] = [];
  const logger = createLogger(
    { level: "info" },
    { write: (line: string) => void lines.push(JSON.parse(line) as (typeof lines)[number]) },
  );
  const registry = new Registry();
  const directory = createDirectory({ db: switchable(a, state), logger });
  const writes = createDirectoryRecords({ directory, logger, registry });
  const failures = async () =>
    (await registry.getSingleMetric("acsgw_directory_write_failures_total")!.get()).values.reduce(
      (sum, value) => sum + value.value,
      0,
    );
  const events = async (userId: string) =>
    (
      await a.query<{ type: string }>(
        "SELECT type FROM acsgw_directory_event WHERE user_id = $1 ORDER BY seq",
        [userId],
      )
    ).rows.map((row) => row.type);
  return { writes, lines, failures, events };
}

describe("a background write while the database is away", () => {
  it("answers its caller after the first attempt, then lands once the database is back", async () => {
    const state = { down: false };
    const { writes, lines, failures, events } = await records(state);
    await writes.created({ id: "8:acs:r_1", origin: "admin", actor: ADMIN });
    state.down = true;
    // The first attempt failed: the caller goes on; the retry waits.
    await writes.revoked("8:acs:r_1", ADMIN);
    expect(lines.filter((l) => l.msg.includes("retrying in the background"))).toMatchObject([
      { level: 40, userId: "8:acs:r_1" },
    ]);
    state.down = false;
    await writes.settled();
    expect(await events("8:acs:r_1")).toEqual(["identity.created", "tokens.revoked"]);
    expect(await failures()).toBe(0);
  });

  it("is given up after 15 minutes of retries, logged at error with the user id and counted", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    const state = { down: true };
    const { writes, lines, failures } = await records(state);
    await writes.deleted("8:acs:r_2", ADMIN);
    const settled = writes.settled();
    await vi.advanceTimersByTimeAsync(14 * 60_000);
    expect(await failures()).toBe(0);
    await vi.advanceTimersByTimeAsync(2 * 60_000);
    await settled;
    expect(await failures()).toBe(1);
    expect(lines.at(-1)).toMatchObject({ level: 50, userId: "8:acs:r_2" });
    expect(vi.getTimerCount()).toBe(0);
  });

  it("is given up at shutdown (stop), logged and counted, without waiting for its pause", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const state = { down: true };
    const { writes, lines, failures } = await records(state);
    // A mint's write waits for its batch's second (below), then fails and waits to retry.
    const minted = writes.tokenMinted("8:acs:r_3", "admin");
    await vi.advanceTimersByTimeAsync(TOUCH_BATCH_MS);
    await minted;
    expect(await failures()).toBe(0);
    writes.stop();
    await writes.settled();
    expect(await failures()).toBe(1);
    expect(lines.at(-1)).toMatchObject({ level: 50, userId: "8:acs:r_3" });
    // After stop, a new failure is not retried at all.
    await writes.revoked("8:acs:r_3", ADMIN);
    await waitFor(async () => (await failures()) === 2);
  });
});

/** Records on a fresh directory whose statements (a transaction as its BEGIN) are listed. */
async function watched() {
  const { a } = await backend.fresh();
  const statements: string[] = [];
  const db: Db = {
    ...a,
    query: (sql, params) => {
      statements.push(sql);
      return a.query(sql, params);
    },
    transaction: (fn) => {
      statements.push("BEGIN");
      return a.transaction(fn);
    },
  };
  const logger = createLogger({ level: "silent" });
  const directory = createDirectory({ db, logger });
  const writes = createDirectoryRecords({ directory, logger });
  const touches = () => statements.filter((sql) => sql.includes("last_token_issued_at =")).length;
  return { writes, directory, statements, touches };
}

describe("a background write and the answer it follows", () => {
  it("runs its statement after the caller's own work of that turn, not in between", async () => {
    const { writes, statements } = await watched();
    // A resolver goes on after asking for the write (`issueToken` without a user answers the new
    // identity's token in the microtasks that follow). The embedded database runs a statement on
    // this thread, so one begun at once would delay that answer by the statement's time.
    void writes.createdInBackground({ id: "8:acs:r_0", origin: "admin", actor: ADMIN });
    for (let turn = 0; turn < 100; turn++) {
      await Promise.resolve();
    }
    expect(statements).toEqual([]);
    await writes.settled();
    expect(statements.length).toBeGreaterThan(0);
  });
});

describe("the last-token times of many mints", () => {
  it("are written together, one statement, once their second is up", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const { writes, directory, touches } = await watched();
    for (const id of ["8:acs:m_1", "8:acs:m_2", "8:acs:m_3"]) {
      await directory.recordCreated({ id, origin: "admin", actor: null });
    }
    const written = Promise.all([
      writes.tokenMinted("8:acs:m_1", "admin"),
      writes.tokenMinted("8:acs:m_2", "admin"),
      writes.tokenMinted("8:acs:m_1", "admin"),
      writes.tokenMinted("8:acs:m_3", "self-service"),
    ]);
    await vi.advanceTimersByTimeAsync(TOUCH_BATCH_MS - 1);
    expect(touches()).toBe(0);
    await vi.advanceTimersByTimeAsync(1);
    await written;
    expect(touches()).toBe(1);
    for (const id of ["8:acs:m_1", "8:acs:m_2", "8:acs:m_3"]) {
      expect((await directory.get(id))?.lastTokenIssuedAt).toBeInstanceOf(Date);
    }
    // The next mint starts a new batch.
    void writes.tokenMinted("8:acs:m_2", "admin");
    await writes.settled();
    expect(touches()).toBe(2);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("are written at once when 500 wait, and each unknown identity is recorded", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const { writes, directory, touches } = await watched();
    const ids = Array.from({ length: 501 }, (_, i) => `8:acs:n_${i}`);
    const written = ids.map((id) => writes.tokenMinted(id, "admin"));
    // The first 500 went without waiting for the timer; the 501st waits for its second.
    await Promise.all(written.slice(0, 500));
    expect(touches()).toBe(1);
    expect(await directory.get("8:acs:n_499")).toMatchObject({ origin: "admin", deletedAt: null });
    expect(await directory.get("8:acs:n_500")).toBeUndefined();
    await vi.advanceTimersByTimeAsync(TOUCH_BATCH_MS);
    await written[500];
    expect(touches()).toBe(2);
    expect((await directory.get("8:acs:n_500"))?.lastTokenIssuedAt).toBeInstanceOf(Date);
  });
});

describe("an identity the directory first sees when a token is minted for it", () => {
  it("is recorded without an event; its creation, recorded later or again, writes identity.created once", async () => {
    const state = { down: false };
    const { writes, events } = await records(state);
    // Made before the directory existed (or its record has not landed yet): ACS just minted.
    void writes.tokenMinted("8:acs:r_old", "admin");
    await writes.settled();
    const seen = await writes.get("8:acs:r_old");
    expect(seen).toMatchObject({ id: "8:acs:r_old", origin: "admin", deletedAt: null });
    expect(seen?.lastTokenIssuedAt).toBeInstanceOf(Date);
    expect(await events("8:acs:r_old")).toEqual([]);

    // A create whose record lands after the mint's: the event is still written, once.
    void writes.tokenMinted("8:acs:r_new", "self-service");
    await writes.settled();
    await writes.created({ id: "8:acs:r_new", origin: "self-service", actor: ADMIN });
    await writes.created({ id: "8:acs:r_new", origin: "self-service", actor: ADMIN });
    expect(await events("8:acs:r_new")).toEqual(["identity.created"]);
  });
});
