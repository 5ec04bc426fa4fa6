import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Webhook } from "standardwebhooks";
import type { Emulator } from "@acs-identity-gateway/emulator";
import type { App } from "../../src/app.js";
import { createPostgresDb } from "../../src/directory/index.js";
import { DomainError } from "../../src/errors.js";
import { createLogger } from "../../src/logger.js";
import { startTestEmulator } from "../helpers/emulator.js";
import { databaseOpen, identityProviderFor, startGateway } from "../helpers/gateway.js";
import { freePort } from "../helpers/ports.js";
import { startPostgres, type PostgresServer } from "../helpers/postgres.js";
import { startReceiver, waitFor, type Receiver } from "./support.js";

/**
 * The gateway's database (the directory and the self-service mappings, DATABASE_URL) paused with
 * SIGSTOP and crashed then restarted, under a gateway with webhooks: what needs the database is
 * refused without creating anything at ACS, cache hits go on, and every change ACS made while the
 * database was away is recorded and its event delivered once it is back. Identities are counted at
 * the emulator; events are verified with the `standardwebhooks` package.
 */
const ADMIN = { key: "admin", isAdmin: true, subject: "ops" };
const actor = (key: string) => ({ key, isAdmin: false });
const SECRET = `whsec_${Buffer.alloc(32, 9).toString("base64")}`;

let emulator: Emulator;
let postgres: PostgresServer;
let receiver: Receiver;
const apps: App[] = [];

beforeAll(async () => {
  [emulator, postgres, receiver] = await Promise.all([
    startTestEmulator(),
    startPostgres(),
    startReceiver(() => 204),
  ]);
}, 60_000);
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});
afterAll(async () => {
  await Promise.all([emulator.close(), postgres.stop(), receiver.close()]);
});

/** Its warnings and errors are kept in `lines` when given. */
async function gateway(databaseUrl: string, lines?: Record<string, unknown>[]): Promise<App> {
  const app = await startGateway(
    {
      COMMUNICATION_SERVICES_CONNECTION_STRING: emulator.connectionString,
      DATABASE_URL: databaseUrl,
      WEBHOOK_URLS: receiver.url(),
      WEBHOOK_SECRET: SECRET,
    },
    lines && {
      logger: createLogger(
        { level: "warn" },
        { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) },
      ),
    },
  );
  apps.push(app);
  await databaseOpen(app);
  return app;
}

/**
 * The events received so far for `userId`, verified, once per webhook-id as a receiver keeps them:
 * delivery is at least once, and one delivered as the database paused (its outcome unrecorded)
 * comes again once its claim expires.
 */
function eventsOf(userId: string): { id: string; type: string }[] {
  const webhook = new Webhook(SECRET);
  const byId = new Map<string, string>();
  for (const { headers, body } of receiver.requests) {
    const event = webhook.verify(body, headers) as { type: string; data: { userId: string } };
    if (event.data.userId === userId) {
      byId.set(headers["webhook-id"]!, event.type);
    }
  }
  return [...byId].map(([id, type]) => ({ id, type }));
}

const upstreamUnavailable = (error: unknown) =>
  error instanceof DomainError && error.kind === "upstream-unavailable";

/** Retried on UPSTREAM_UNAVAILABLE as a client would, while the database settles after an outage. */
async function eventually<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      if (!upstreamUnavailable(error) || attempt >= 30) {
        throw error;
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}

describe("the gateway's PostgreSQL paused (SIGSTOP)", () => {
  it("refuses what needs it with UPSTREAM_UNAVAILABLE and creates nothing at ACS; serves cache hits; once resumed, one identity each and every event delivered", async () => {
    const app = await gateway(await postgres.newDatabase());
    const user = await app.tokens.createUser(ADMIN, { externalId: "paused-1" });
    const grant = await app.tokens.issueToken(ADMIN, { userId: user.id, scopes: ["chat"] });
    await app.directoryRecords.settled();

    await postgres.pause!();
    let during: PromiseSettledResult<unknown>[];
    const createdBefore = emulator.counters.createIdentity;
    try {
      // A cache hit writes nothing to the directory.
      const hit = await app.tokens.issueToken(ADMIN, { userId: user.id, scopes: ["chat"] });
      expect(hit.token).toBe(grant.token);
      during = await Promise.allSettled([
        app.tokens.createUser(ADMIN, { externalId: "paused-2" }),
        app.selfService.issueMyToken(actor("pat"), ["chat"]),
        app.directory.list({ first: 10 }),
      ]);
      expect(emulator.counters.createIdentity).toBe(createdBefore);
    } finally {
      await postgres.resume!();
    }
    expect(during.map((outcome) => outcome.status)).toEqual(["rejected", "rejected", "rejected"]);
    for (const outcome of during) {
      expect(upstreamUnavailable((outcome as PromiseRejectedResult).reason)).toBe(true);
    }

    // Back: each call makes its one identity, and a repeat gets the same one.
    const second = await eventually(() => app.tokens.createUser(ADMIN, { externalId: "paused-2" }));
    const pat = await eventually(() => app.selfService.issueMyToken(actor("pat"), ["chat"]));
    expect((await app.tokens.createUser(ADMIN, { externalId: "paused-2" })).id).toBe(second.id);
    expect((await app.selfService.issueMyToken(actor("pat"), ["chat"])).userId).toBe(pat.userId);
    expect(emulator.counters.createIdentity - createdBefore).toBe(2);

    // A bound, not a measure: on a busy machine the pool's reconnection and the dispatcher's next
    // poll after the outage take seconds.
    await waitFor(() => eventsOf(second.id).length === 1 && eventsOf(user.id).length === 1, {
      timeoutMs: 60_000,
    });
    expect(eventsOf(user.id).map((e) => e.type)).toEqual(["identity.created"]);
    expect(eventsOf(second.id).map((e) => e.type)).toEqual(["identity.created"]);
  }, 120_000);
});

describe("a transaction whose PostgreSQL stops answering", () => {
  it("gives its connection up at the timeout, without a ROLLBACK waiting behind the hung statement", async () => {
    // The gateway's pool has query_timeout 6 s; a short one here, the rule is the same.
    const pool = new pg.Pool({
      connectionString: await postgres.newDatabase(),
      query_timeout: 500,
    });
    const sent: string[] = [];
    const watched = new WeakSet<object>();
    pool.on("acquire", (client) => {
      if (watched.has(client)) {
        return;
      }
      watched.add(client);
      const query = client.query.bind(client) as (...args: unknown[]) => unknown;
      (client as { query: unknown }).query = (...args: unknown[]) => {
        sent.push(String(args[0]));
        return query(...args);
      };
    });
    const db = createPostgresDb(pool, { ownsPool: true });
    try {
      await db.transaction((tx) => tx.query("SELECT 1"));
      expect(sent).toEqual(["BEGIN", "SELECT 1", "COMMIT"]);
      sent.length = 0;

      await postgres.pause!();
      try {
        await expect(db.transaction((tx) => tx.query("SELECT 1"))).rejects.toThrow(
          "Query read timeout",
        );
      } finally {
        await postgres.resume!();
      }
      // Nothing more was asked of the hung connection, and the pool dropped it.
      expect(sent).toEqual(["BEGIN"]);
      expect(pool.totalCount).toBe(0);
      // The next transaction gets a new connection and works.
      await db.transaction((tx) => tx.query("SELECT 1"));
    } finally {
      await db.close?.();
    }
  }, 60_000);
});

describe("the gateway's PostgreSQL crashed, then restarted", () => {
  it("records the revoke and delete ACS made while it was down, once it is back, and delivers their events once each", async (context) => {
    if (!postgres.crash) {
      context.skip("an external DATABASE_URL cannot be crashed by the test");
    }
    const lines: Record<string, unknown>[] = [];
    const app = await gateway(await postgres.newDatabase(), lines);
    const kept = await app.tokens.createUser(ADMIN, { externalId: "crashed-1" });
    const gone = await app.tokens.createUser(ADMIN, { externalId: "crashed-2" });
    await app.directoryRecords.settled();

    await postgres.crash!();
    let minted: { expiresOn: number } | undefined;
    try {
      // A cache miss is answered; the directory's record of the mint (written with the other
      // mints of its second) fails and waits for the database.
      minted = await app.tokens.issueToken(ADMIN, { userId: kept.id, scopes: ["voip"] });
      await waitFor(() =>
        lines.some((line) => line.operation === "touch" && line.userId === kept.id),
      );
      // ACS takes the changes; their records wait for the database.
      await app.tokens.revokeTokens(ADMIN, kept.id);
      // Deleted at ACS; the answer says the mapping store could not drop a self-service mapping
      // to it (docs/operations.md), and the directory's record waits like the revoke's.
      await expect(app.tokens.deleteUser(ADMIN, gone.id)).rejects.toSatisfy(upstreamUnavailable);
    } finally {
      await postgres.restart!();
    }
    await app.directoryRecords.settled();

    await waitFor(() => eventsOf(kept.id).length === 2 && eventsOf(gone.id).length === 2, {
      timeoutMs: 60_000,
    });
    expect(eventsOf(kept.id).map((e) => e.type)).toEqual(["identity.created", "tokens.revoked"]);
    expect(eventsOf(gone.id).map((e) => e.type)).toEqual(["identity.created", "identity.deleted"]);
    const ids = receiver.requests.map((r) => r.headers["webhook-id"]);
    expect(new Set(ids).size).toBe(ids.length);
    expect((await app.directory.get(gone.id))?.deletedAt).not.toBeNull();
    expect(minted?.expiresOn).toBeGreaterThan(Date.now());
    expect((await app.directory.get(kept.id))?.lastTokenIssuedAt).toBeInstanceOf(Date);
    // The same external id after the restart: the same identity, no second ACS create.
    const createdBefore = emulator.counters.createIdentity;
    expect((await app.tokens.createUser(ADMIN, { externalId: "crashed-1" })).id).toBe(kept.id);
    expect(emulator.counters.createIdentity).toBe(createdBefore);
  }, 120_000);
});

describe("a gateway whose database cannot be opened", () => {
  it("starts, serves admins, refuses self-service at once with nothing created, and /readyz says degraded: database unavailable", async () => {
    const nobody = await freePort();
    const app = await startGateway({
      COMMUNICATION_SERVICES_CONNECTION_STRING: emulator.connectionString,
      DATABASE_URL: `postgres://postgres@127.0.0.1:${nobody}/none`,
    });
    apps.push(app);
    await waitFor(async () => (await app.readiness()).checks.database === "unavailable");
    expect(await app.readiness()).toEqual({
      ready: true,
      status: "degraded",
      checks: { upstream: "ok", cache: "ok", database: "unavailable" },
    });
    const created = emulator.counters.createIdentity;
    await expect(app.selfService.issueMyToken(actor("quinn"), ["chat"])).rejects.toSatisfy(
      upstreamUnavailable,
    );
    expect(emulator.counters.createIdentity).toBe(created);
    // An admin's token for a known identity needs no database.
    const userId = await identityProviderFor(emulator).createUser();
    const grant = await app.tokens.issueToken(ADMIN, { userId, scopes: ["voip"] });
    expect(grant.token.split(".")).toHaveLength(3);
  });
});
