import { randomUUID } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  DirectoryBusyError,
  DirectoryConflictError,
  DirectoryInputError,
  createDirectory,
  likePrefix,
  MAX_TOUCHES,
  type Db,
  type DirectoryIdentity,
  type LifecycleEventBody,
} from "../../src/directory/index.js";
import { FakeClock, backends, failingOn, type Instances } from "./support.js";

const acsId = () => `8:acs:00000000-0000-0000-0000-000000000001_${randomUUID()}`;

async function events(db: Db): Promise<LifecycleEventBody[]> {
  const { rows } = await db.query<{ body: string }>(
    "SELECT body FROM acsgw_directory_event ORDER BY seq",
  );
  return rows.map((row) => JSON.parse(row.body) as LifecycleEventBody);
}

/** Bytewise, as COLLATE "C" orders ids. */
const byKey = (x: DirectoryIdentity, y: DirectoryIdentity) =>
  x.createdAt.getTime() - y.createdAt.getTime() || (x.id < y.id ? -1 : x.id > y.id ? 1 : 0);

describe.each(backends())("directory on $name", (backend) => {
  let db: Instances;

  beforeAll(() => backend.setup(), 60_000);
  afterAll(() => backend.teardown());
  afterEach(() => backend.cleanup());

  const fresh = async () => (db = await backend.fresh());

  it("20 concurrent creates on two instances call ACS once and all get one identity", async () => {
    await fresh();
    const one = createDirectory({ db: db.a });
    const two = createDirectory({ db: db.b });
    let creates = 0;
    const create = async () => {
      creates++;
      // ACS's latency, so that the other callers arrive while the create is in progress.
      await new Promise((resolve) => setTimeout(resolve, 50));
      return acsId();
    };
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        (i % 2 ? one : two).createOnce(
          { externalId: "person-1", displayName: "Ada", origin: "self-service", actor: "self" },
          create,
        ),
      ),
    );
    expect(creates).toBe(1);
    expect(new Set(results.map((r) => r.identity.id)).size).toBe(1);
    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect(results[0]!.identity).toMatchObject({
      externalId: "person-1",
      displayName: "Ada",
      origin: "self-service",
      deletedAt: null,
    });
    expect((await events(db.a)).map((e) => e.type)).toEqual(["identity.created"]);
    const reservations = await db.a.query("SELECT 1 FROM acsgw_directory_reservation");
    expect(reservations.rowCount).toBe(0);
    // Later calls are one read: no create, no event.
    await one.createOnce({ externalId: "person-1", origin: "self-service" }, create);
    expect(creates).toBe(1);
  });

  it("a crashed creator's reservation is taken over after its lease; its late result loses", async () => {
    await fresh();
    const clock = new FakeClock();
    const crashed = createDirectory({ db: db.a, clock, reservationLeaseMs: 30_000 });
    const other = createDirectory({ db: db.b, clock, reservationLeaseMs: 30_000, waitMs: 0 });
    const held = await crashed.reserve("person-2");
    expect(held.kind).toBe("reserved");

    let creates = 0;
    const create = async () => {
      creates++;
      return acsId();
    };
    // While the lease holds, others wait (here: not at all, waitMs 0) and then give up, retryable.
    await expect(
      other.createOnce({ externalId: "person-2", origin: "admin" }, create),
    ).rejects.toThrow(DirectoryBusyError);
    expect(creates).toBe(0);

    clock.advance(30_000);
    const taken = await other.createOnce({ externalId: "person-2", origin: "admin" }, create);
    expect(taken.created).toBe(true);
    expect(creates).toBe(1);

    // The "crashed" creator comes back with an identity ACS made for it: it loses, to be discarded.
    const late = await crashed.complete(
      held as Extract<typeof held, { kind: "reserved" }>,
      acsId(),
      {
        origin: "admin",
      },
    );
    expect(late).toEqual({ identity: taken.identity, won: false });
    expect((await events(db.a)).map((e) => e.type)).toEqual(["identity.created"]);

    // createOnce hands such a loser to `discard` (for deletion at ACS).
    const slow = createDirectory({ db: db.a, clock, reservationLeaseMs: 1_000 });
    const discarded: string[] = [];
    const racing = slow.createOnce(
      { externalId: "person-3", origin: "admin" },
      async () => {
        // While this create is "slow", its lease expires and another caller completes first.
        clock.advance(1_000);
        await other.createOnce({ externalId: "person-3", origin: "admin" }, async () => acsId());
        return "8:acs:loser";
      },
      { discard: async (id) => void discarded.push(id) },
    );
    const outcome = await racing;
    expect(outcome.created).toBe(false);
    expect(outcome.identity.id).not.toBe("8:acs:loser");
    expect(discarded).toEqual(["8:acs:loser"]);
  });

  it("a create that fails (or whose outcome is unknown) releases the reservation at once", async () => {
    await fresh();
    const directory = createDirectory({ db: db.a });
    const timeout = Object.assign(new Error("socket hang up"), { outcomeUnknown: true });
    await expect(
      directory.createOnce({ externalId: "p", origin: "self-service" }, () =>
        Promise.reject(timeout),
      ),
    ).rejects.toBe(timeout);
    const next = await directory.createOnce({ externalId: "p", origin: "self-service" }, async () =>
      acsId(),
    );
    expect(next.created).toBe(true);
    expect(await directory.getByExternalId("p")).toEqual(next.identity);
    expect(await directory.get(next.identity.id)).toEqual(next.identity);
  });

  it("pages 120 identities by 50: each once, in (createdAt, id) order, opaque cursors", async () => {
    await fresh();
    const directory = createDirectory({ db: db.a });
    const base = Date.parse("2024-05-01T00:00:00.000Z");
    // 40 instants with 3 identities each: ties on createdAt are broken by id.
    const records = Array.from({ length: 120 }, (_, i) => ({
      id: acsId(),
      externalId: `user-${i}`,
      displayName: `User ${i}`,
      origin: "admin" as const,
      createdAt: new Date(base + (i % 40) * 1000),
    }));
    expect(await directory.import(records)).toEqual({ inserted: 120, skipped: 0 });
    expect(await directory.import(records.slice(0, 5))).toEqual({ inserted: 0, skipped: 5 });

    const seen: DirectoryIdentity[] = [];
    const pages: number[] = [];
    let after: string | null = null;
    for (;;) {
      const page = await directory.list({ first: 50, after });
      pages.push(page.edges.length);
      for (const edge of page.edges) {
        expect(edge.cursor).toMatch(/^[A-Za-z0-9_-]+$/);
        expect(edge.cursor).not.toContain(edge.node.id);
        expect(edge.cursor).not.toContain("8:acs");
        seen.push(edge.node);
      }
      expect(page.pageInfo.endCursor).toBe(page.edges.at(-1)?.cursor ?? null);
      if (!page.pageInfo.hasNextPage) {
        break;
      }
      after = page.pageInfo.endCursor;
    }
    expect(pages).toEqual([50, 50, 20]);
    expect(new Set(seen.map((n) => n.id)).size).toBe(120);
    const expected = records
      .map((r) => ({ ...r, lastTokenIssuedAt: null, deletedAt: null }))
      .sort(byKey);
    expect(seen.map((n) => n.id)).toEqual(expected.map((r) => r.id));
    expect(seen[0]).toEqual(expected[0]);
  });

  it("refuses bad page sizes and malformed cursors with clear errors", async () => {
    await fresh();
    const directory = createDirectory({ db: db.a });
    for (const first of [0, 101, 2.5, -1]) {
      await expect(directory.list({ first })).rejects.toMatchObject({
        name: "DirectoryInputError",
        code: "BAD_PAGE_SIZE",
      });
    }
    const wrongShape = Buffer.from(JSON.stringify({ id: "x" })).toString("base64url");
    const badDate = Buffer.from(JSON.stringify([1, "yesterday", "8:acs:x"])).toString("base64url");
    for (const after of ["not a cursor!", "%%%", wrongShape, badDate, "e30", ""]) {
      const failure = directory.list({ first: 10, after });
      await expect(failure).rejects.toThrow(DirectoryInputError);
      await expect(failure).rejects.toMatchObject({ code: "BAD_CURSOR" });
    }
    expect((await directory.list({ first: 100 })).edges).toEqual([]);
  });

  it("filters by a literal external-id prefix, and lists deleted ones only on request", async () => {
    await fresh();
    const clock = new FakeClock(Date.parse("2024-05-01T00:00:00.000Z"));
    const directory = createDirectory({ db: db.a, clock });
    const ids: Record<string, string> = {};
    for (const externalId of [
      "team_a/1",
      "team_a/2",
      "teamXa/3",
      "team%/4",
      "team\\a/5",
      "other/6",
    ]) {
      clock.advance(1);
      ids[externalId] = (
        await directory.recordCreated({ id: acsId(), externalId, origin: "admin" })
      ).identity.id;
    }
    await directory.recordCreated({ id: acsId(), origin: "admin" });
    const listed = async (prefix: string | null, includeDeleted = false) =>
      (await directory.list({ first: 100, externalIdPrefix: prefix, includeDeleted })).edges.map(
        (e) => e.node.externalId,
      );

    expect(likePrefix("a_b%c\\")).toBe("a\\_b\\%c\\\\%");
    expect(await listed("team_a")).toEqual(["team_a/1", "team_a/2"]);
    expect(await listed("team%")).toEqual(["team%/4"]);
    expect(await listed("team\\")).toEqual(["team\\a/5"]);
    expect(await listed("team")).toHaveLength(5);
    expect(await listed(null)).toHaveLength(7);

    const deleted = await directory.markDeleted(ids["team_a/1"]!, "admin:ops");
    expect(deleted?.deletedAt).toEqual(new Date(clock.now()));
    expect(await listed("team_a")).toEqual(["team_a/2"]);
    expect(await listed("team_a", true)).toEqual(["team_a/1", "team_a/2"]);
    expect(await directory.getByExternalId("team_a/1")).toBeUndefined();
    expect((await directory.get(ids["team_a/1"]!))?.deletedAt).not.toBeNull();

    // A deleted identity frees its external id: the person gets a new identity next time.
    const again = await directory.createOnce(
      { externalId: "team_a/1", origin: "self-service" },
      async () => acsId(),
    );
    expect(again.created).toBe(true);
    expect(again.identity.id).not.toBe(ids["team_a/1"]);
  });

  it("writes each event in the transaction of its change: a failing transaction writes neither", async () => {
    await fresh();
    const clock = new FakeClock(Date.parse("2024-05-01T00:00:00.000Z"));
    const directory = createDirectory({ db: db.a, clock });
    // On the system clock: createOnce's record retries wait on it.
    const broken = createDirectory({ db: failingOn(db.a, /INSERT INTO acsgw_directory_event/) });

    const id = acsId();
    await expect(broken.recordCreated({ id, externalId: "e1", origin: "admin" })).rejects.toThrow(
      /injected failure/,
    );
    expect(await directory.get(id)).toBeUndefined();
    await expect(
      broken.createOnce({ externalId: "e2", origin: "self-service" }, async () => acsId()),
    ).rejects.toThrow(/could not be recorded/);
    expect(await directory.getByExternalId("e2")).toBeUndefined();

    await directory.recordCreated({
      id,
      externalId: "e1",
      displayName: "Before",
      origin: "admin",
      actor: "admin:ops",
    });
    await expect(broken.updateDisplayName(id, "After", "admin:ops")).rejects.toThrow(/injected/);
    expect((await directory.get(id))?.displayName).toBe("Before");
    await expect(broken.markDeleted(id)).rejects.toThrow(/injected/);
    expect((await directory.get(id))?.deletedAt).toBeNull();
    await expect(broken.recordRevocation(id, "admin:ops")).rejects.toThrow(/injected/);
    expect((await events(db.a)).map((e) => e.type)).toEqual(["identity.created"]);

    // The same changes on a working database: one event each, with exactly the documented body.
    clock.advance(1000);
    expect((await directory.updateDisplayName(id, "After", "admin:ops"))?.displayName).toBe(
      "After",
    );
    expect(await directory.updateDisplayName(id, "After", "admin:ops")).toMatchObject({
      displayName: "After",
    }); // unchanged: no second event
    await directory.recordRevocation(id, "self");
    await directory.recordRevocation("8:acs:unknown", null);
    // Many identities in one call; the ids it does not hold come back (the caller imports them).
    expect(
      await directory.touchLastTokenIssuedAt([
        { id, at: clock.now() - 1000 },
        { id: "8:acs:unknown", at: clock.now() },
        { id, at: clock.now() }, // the same id twice: the later time wins
      ]),
    ).toEqual(["8:acs:unknown"]);
    // A time only moves forward.
    expect(await directory.touchLastTokenIssuedAt([{ id, at: clock.now() - 5000 }])).toEqual([]);
    expect((await directory.get(id))?.lastTokenIssuedAt).toEqual(new Date(clock.now()));
    expect(await directory.get("8:acs:unknown")).toBeUndefined();
    await expect(
      directory.touchLastTokenIssuedAt(
        Array.from({ length: MAX_TOUCHES + 1 }, (_, i) => ({ id: `8:acs:t_${i}`, at: 0 })),
      ),
    ).rejects.toThrow(/at most 500/);
    await directory.markDeleted(id, "admin:ops");
    expect(await directory.markDeleted(id, "admin:ops")).toMatchObject({ id }); // once
    expect(await directory.updateDisplayName(id, "Gone")).toBeUndefined();
    expect(await directory.markDeleted("8:acs:unknown")).toBeUndefined();

    const written = await events(db.a);
    expect(written.map((e) => e.type)).toEqual([
      "identity.created",
      "identity.updated",
      "tokens.revoked",
      "tokens.revoked",
      "identity.deleted",
    ]);
    const data = { userId: id, externalId: "e1", origin: "admin" };
    expect(written[0]).toEqual({
      type: "identity.created",
      timestamp: "2024-05-01T00:00:00.000Z",
      data: { ...data, actor: "admin:ops" },
    });
    expect(written[1]).toEqual({
      type: "identity.updated",
      timestamp: "2024-05-01T00:00:01.000Z",
      data: { ...data, actor: "admin:ops" },
    });
    expect(written[2]!.data).toEqual({ ...data, actor: "self" });
    expect(written[3]!.data).toEqual({
      userId: "8:acs:unknown",
      externalId: null,
      origin: null,
      actor: null,
    });
    for (const event of written) {
      expect(Object.keys(event).sort()).toEqual(["data", "timestamp", "type"]);
      expect(Object.keys(event.data).sort()).toEqual(["actor", "externalId", "origin", "userId"]);
    }
    // Imports and token bookkeeping write no events.
    await directory.import([{ id: acsId(), origin: "self-service" }]);
    expect(await events(db.a)).toHaveLength(5);
  });

  it("validates input and reports a taken external id", async () => {
    await fresh();
    const directory = createDirectory({ db: db.a });
    await directory.recordCreated({ id: "8:acs:one", externalId: "dup", origin: "admin" });
    // Recording the same identity again is a no-op (a retried call), another one a conflict.
    expect(
      (await directory.recordCreated({ id: "8:acs:one", externalId: "dup", origin: "admin" }))
        .created,
    ).toBe(false);
    await expect(
      directory.recordCreated({ id: "8:acs:two", externalId: "dup", origin: "admin" }),
    ).rejects.toThrow(DirectoryConflictError);
    await expect(
      directory.recordCreated({ id: "8:acs:three", origin: "robot" as "admin" }),
    ).rejects.toMatchObject({ code: "BAD_INPUT" });
    await expect(
      directory.createOnce({ externalId: "", origin: "admin" }, async () => acsId()),
    ).rejects.toMatchObject({ code: "BAD_INPUT" });
    await expect(directory.list({ externalIdPrefix: "x".repeat(300) })).rejects.toMatchObject({
      code: "BAD_INPUT",
    });
  });
});
