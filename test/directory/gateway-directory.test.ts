import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Emulator } from "@acs-identity-gateway/emulator";
import { Webhook } from "standardwebhooks";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import type { Actor } from "../../src/tokens/upstream-budget.js";
import { startTestEmulator } from "../helpers/emulator.js";
import { startGateway } from "../helpers/gateway.js";
import { startPostgres, type PostgresServer } from "../helpers/postgres.js";
import { startRedis, type RedisProcess } from "../helpers/redis.js";

/**
 * The directory wired into the gateway (docs/directory.md, "Wiring"): in-process gateways on the
 * embedded emulator's twin (one standalone emulator, so two gateways share one ACS and its
 * counters), a PostgreSQL and a Redis this file starts on free ports.
 */

let emulator: Emulator;
let postgres: PostgresServer;
let redis: RedisProcess;
const apps: App[] = [];

const ADMIN: Actor = { key: "admin-key", isAdmin: true, subject: "ops" };
const person = (externalId: string): Actor => ({
  key: `key-${externalId}`,
  isAdmin: false,
  subject: externalId,
  externalId,
});

beforeAll(async () => {
  [emulator, postgres, redis] = await Promise.all([
    startTestEmulator(),
    startPostgres(),
    startRedis(),
  ]);
}, 60_000);
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});
afterAll(async () => {
  await Promise.all([emulator.close(), postgres.stop(), redis.stop()]);
});

async function gateway(env: Record<string, string> = {}): Promise<App> {
  const app = await startGateway({
    COMMUNICATION_SERVICES_CONNECTION_STRING: emulator.connectionString,
    ...env,
  });
  apps.push(app);
  return app;
}

describe("idempotent createUser by externalId", () => {
  it("makes one ACS create for 20 concurrent calls on two instances sharing PostgreSQL", async () => {
    const DATABASE_URL = await postgres.newDatabase();
    const [a, b] = await Promise.all([gateway({ DATABASE_URL }), gateway({ DATABASE_URL })]);
    const before = emulator.counters.createIdentity;
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        (i % 2 === 0 ? a : b).tokens.createUser(ADMIN, {
          externalId: "person-20",
          displayName: "Twenty",
        }),
      ),
    );
    expect(emulator.counters.createIdentity - before).toBe(1);
    expect(new Set(results.map((r) => r.id)).size).toBe(1);
    expect(results[0]).toMatchObject({ externalId: "person-20", origin: "admin" });
    expect((await b.directory.getByExternalId("person-20"))?.id).toBe(results[0]!.id);
  });

  it("records a create without externalId (admin) and maps unknown users to NOT_FOUND", async () => {
    const app = await gateway({ DATABASE_URL: await postgres.newDatabase() });
    const created = await app.tokens.createUser(ADMIN, { displayName: "Plain" });
    expect(created).toMatchObject({ externalId: null, displayName: "Plain", origin: "admin" });
    expect(await app.directory.get(created.id)).toMatchObject({ id: created.id });
    await expect(
      app.directory.updateDisplayName(ADMIN, "8:acs:unknown", "x"),
    ).rejects.toMatchObject({ kind: "not-found" });
    await expect(app.directory.list({ first: 1000 })).rejects.toMatchObject({
      kind: "invalid-input",
      details: { reason: "BAD_PAGE_SIZE" },
    });
    await expect(app.directory.list({ after: "not a cursor" })).rejects.toMatchObject({
      kind: "invalid-input",
    });
  });
});

describe("durability", () => {
  it("loses nothing across an app restart and a FLUSHALL of Redis", async () => {
    const env = { DATABASE_URL: await postgres.newDatabase(), REDIS_URL: redis.url };
    const first = await gateway(env);
    const admin = await first.tokens.createUser(ADMIN, { externalId: "kept-1" });
    const own = await first.selfService.issueMyToken(person("kept-2"), ["chat"]);
    await first.directoryRecords.settled();
    await first.close();
    await redis.client().flushall();

    const second = await gateway(env);
    expect(await second.directory.getByExternalId("kept-1")).toMatchObject({ id: admin.id });
    expect(await second.directory.getByExternalId("kept-2")).toMatchObject({
      id: own.userId,
      origin: "self-service",
    });
    const before = emulator.counters.createIdentity;
    expect((await second.tokens.createUser(ADMIN, { externalId: "kept-1" })).id).toBe(admin.id);
    expect((await second.selfService.issueMyToken(person("kept-2"), ["chat"])).userId).toBe(
      own.userId,
    );
    expect(emulator.counters.createIdentity - before).toBe(0);
  });

  it("imports at start the self-service mappings stored before the directory", async () => {
    const DATABASE_URL = await postgres.newDatabase();
    const first = await gateway({ DATABASE_URL });
    // An identity mapped by the store: the caller has no external id (as before this change).
    const mapped = await first.selfService.issueMyToken({ key: "legacy", isAdmin: false }, [
      "chat",
    ]);
    await first.directoryRecords.settled();
    // Forget it in the directory, as a database that never had the directory would.
    const pg = await import("pg");
    const client = new pg.default.Client({ connectionString: DATABASE_URL });
    await client.connect();
    await client.query("DELETE FROM acsgw_directory_identity");
    await client.end();
    await first.close();

    const second = await gateway({ DATABASE_URL });
    expect(await second.directoryDb!.imported).toBeGreaterThanOrEqual(1);
    expect(await second.directory.get(mapped.userId)).toMatchObject({ origin: "self-service" });
  });
});

describe("self-service", () => {
  it("gives a user the identity an admin provisioned for their external id", async () => {
    const app = await gateway({ DATABASE_URL: await postgres.newDatabase() });
    const provisioned = await app.tokens.createUser(ADMIN, { externalId: "ahead-1" });
    const before = emulator.counters.createIdentity;
    const grant = await app.selfService.issueMyToken(person("ahead-1"), ["chat"]);
    expect(grant.userId).toBe(provisioned.id);
    expect(emulator.counters.createIdentity - before).toBe(0);
    expect(await app.ownership.userIdOf(person("ahead-1").key)).toBe(provisioned.id);
  });

  it("sets lastTokenIssuedAt on a miss and leaves it on a hit", async () => {
    const app = await gateway({ DATABASE_URL: await postgres.newDatabase() });
    const user = await app.tokens.createUser(ADMIN, {});
    expect(user.lastTokenIssuedAt).toBeNull();
    await app.tokens.issueToken(ADMIN, { userId: user.id, scopes: ["chat"] });
    await app.directoryRecords.settled();
    const minted = (await app.directory.get(user.id))!.lastTokenIssuedAt;
    expect(minted).toBeInstanceOf(Date);
    const hits = emulator.counters.issueAccessToken;
    await app.tokens.issueToken(ADMIN, { userId: user.id, scopes: ["chat"] });
    expect(emulator.counters.issueAccessToken).toBe(hits);
    await app.directoryRecords.settled();
    expect((await app.directory.get(user.id))!.lastTokenIssuedAt).toEqual(minted);
  });
});

describe("ACS customId", () => {
  it("gives the same identity for the same external id on a wiped directory", async () => {
    const first = await gateway({
      DATABASE_URL: await postgres.newDatabase(),
      ACS_CUSTOM_ID: "true",
    });
    const one = await first.tokens.createUser(ADMIN, { externalId: "custom-1" });
    // A new, empty database: the directory knows nothing of custom-1.
    const second = await gateway({
      DATABASE_URL: await postgres.newDatabase(),
      ACS_CUSTOM_ID: "true",
    });
    const two = await second.tokens.createUser(ADMIN, { externalId: "custom-1" });
    expect(two.id).toBe(one.id);
  });
});

describe("webhooks", () => {
  let receiver: Server;
  let url: string;
  const received: { headers: Record<string, string>; body: string }[] = [];
  let arrived: () => void = () => {};

  beforeAll(async () => {
    receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        received.push({
          headers: req.headers as Record<string, string>,
          body: Buffer.concat(chunks).toString("utf8"),
        });
        res.end();
        arrived();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
  });
  afterAll(() => new Promise<void>((r) => receiver.close(() => r())));

  it("delivers identity.created, tokens.revoked and identity.deleted, signed, without tokens", async () => {
    const secret = `whsec_${Buffer.alloc(32, 7).toString("base64")}`;
    const app = await gateway({
      DATABASE_URL: await postgres.newDatabase(),
      WEBHOOK_URLS: url,
      WEBHOOK_SECRET: secret,
    });
    const waitFor = (n: number) =>
      new Promise<void>((resolve) => {
        arrived = () => received.length >= n && resolve();
        arrived();
      });
    const user = await app.tokens.createUser(ADMIN, { externalId: "hooked-1" });
    const { token } = await app.tokens.issueToken(ADMIN, { userId: user.id, scopes: ["chat"] });
    await app.tokens.revokeTokens(ADMIN, user.id);
    await app.tokens.deleteUser(ADMIN, user.id);
    await app.directoryRecords.settled();
    await waitFor(3);

    const webhook = new Webhook(secret);
    const events = received.map(({ headers, body }) => {
      expect(body).not.toContain(token);
      expect(body).not.toContain(app.acs.accessKey!);
      return webhook.verify(body, headers) as { type: string; data: { userId: string } };
    });
    expect(events.map((e) => e.type).sort()).toEqual(
      ["identity.created", "identity.deleted", "tokens.revoked"].sort(),
    );
    expect(events.every((e) => e.data.userId === user.id)).toBe(true);
    expect(await app.metrics.registry.metrics()).toContain("acsgw_webhook_deliveries_total");
  });

  it("without WEBHOOK_URLS writes no events: webhooks set later deliver what happens from then on, not the history", async () => {
    const DATABASE_URL = await postgres.newDatabase();
    const count = async (app: App, table: string) =>
      (await app.directoryDb!.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`))
        .rows[0]!.n;
    const quiet = await gateway({ DATABASE_URL });
    const before = await quiet.tokens.createUser(ADMIN, { externalId: "quiet-1" });
    await quiet.tokens.revokeTokens(ADMIN, before.id);
    await quiet.tokens.deleteUser(ADMIN, before.id);
    await quiet.directoryRecords.settled();
    // Nothing would deliver or prune them: none are written.
    expect(await count(quiet, "acsgw_directory_event")).toBe(0);
    await quiet.close();
    apps.splice(apps.indexOf(quiet), 1);

    const secret = `whsec_${Buffer.alloc(32, 9).toString("base64")}`;
    const hooked = await gateway({ DATABASE_URL, WEBHOOK_URLS: url, WEBHOOK_SECRET: secret });
    const from = received.length;
    const after = await hooked.tokens.createUser(ADMIN, { externalId: "loud-1" });
    await new Promise<void>((resolve) => {
      arrived = () => received.length > from && resolve();
      arrived();
    });
    const event = new Webhook(secret).verify(received[from]!.body, received[from]!.headers) as {
      type: string;
      data: { userId: string };
    };
    expect(event).toMatchObject({ type: "identity.created", data: { userId: after.id } });
    // The one event written since, and nothing routed from before.
    expect(await count(hooked, "acsgw_directory_event")).toBe(1);
    expect(await count(hooked, "acsgw_directory_delivery")).toBe(1);
  });
});
