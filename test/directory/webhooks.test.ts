import { randomBytes } from "node:crypto";
import { Registry } from "prom-client";
import { Webhook } from "standardwebhooks";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  createDirectory,
  createWebhookDispatcher,
  type DeliveryReport,
  type WebhookDispatcher,
  type WebhookDispatcherOptions,
} from "../../src/directory/index.js";
import { createLogger } from "../../src/logger.js";
import {
  FakeClock,
  backends,
  killable,
  percentile,
  silent,
  startReceiver,
  waitFor,
  type Instances,
  type Receiver,
} from "./support.js";

const secret = `whsec_${randomBytes(24).toString("base64")}`;
const verifier = new Webhook(secret);

describe.each(backends())("webhook delivery on $name", (backend) => {
  let db: Instances;
  const receivers: Receiver[] = [];
  const dispatchers: WebhookDispatcher[] = [];

  beforeAll(() => backend.setup(), 60_000);
  afterAll(() => backend.teardown());
  afterEach(async () => {
    for (const receiver of receivers.splice(0)) {
      receiver.releaseHeld(503);
      await receiver.close();
    }
    await Promise.all(dispatchers.splice(0).map((d) => d.stop({ graceMs: 0 })));
    await backend.cleanup();
  });

  const receiver = async (...args: Parameters<typeof startReceiver>) => {
    const started = await startReceiver(...args);
    receivers.push(started);
    return started;
  };
  const dispatcher = (
    options: Partial<WebhookDispatcherOptions> & Pick<WebhookDispatcherOptions, "db" | "urls">,
  ) => {
    const created = createWebhookDispatcher({ secret, logger: silent, ...options });
    dispatchers.push(created);
    return created;
  };
  const deliveries = async () =>
    (
      await db.a.query<{
        state: string;
        attempts: number;
        last_status: number | null;
        last_error: string | null;
        url: string;
      }>(
        "SELECT state, attempts, last_status, last_error, url FROM acsgw_directory_delivery ORDER BY event_seq, url",
      )
    ).rows;

  it("gets every event to every URL though the first attempt fails: signed, one webhook-id each", async () => {
    db = await backend.fresh();
    const clock = new FakeClock();
    const failedOnce = new Set<string>();
    const longBody = `upstream exploded ${"x".repeat(5000)} END-OF-BODY`;
    const hooks = await receiver((request) => {
      const key = `${request.path} ${request.headers["webhook-id"]}`;
      if (!failedOnce.has(key)) {
        failedOnce.add(key);
        return { status: 500, body: longBody };
      }
      return 204;
    });
    const lines: string[] = [];
    const logger = createLogger(
      { level: "debug" },
      { write: (line: string) => void lines.push(line) },
    );
    const registry = new Registry();
    const reports: DeliveryReport[] = [];

    // The directory writes on instance a; the dispatcher runs on instance b.
    const directory = createDirectory({ db: db.a, clock });
    const { identity } = await directory.recordCreated({
      id: "8:acs:hooked",
      externalId: "person-h",
      displayName: "Hook",
      origin: "self-service",
      actor: "self",
    });
    await directory.updateDisplayName(identity.id, "Hooked", "admin:ops");
    await directory.recordRevocation(identity.id, "admin:ops");
    await directory.markDeleted(identity.id, "admin:ops");

    const urls = [hooks.url("/a"), hooks.url("/b")];
    dispatcher({
      db: db.b,
      urls,
      clock,
      logger,
      registry,
      onDelivery: (report) => reports.push(report),
      backoff: { jitter: 0 },
    }).start();

    const ok = () => hooks.requests.filter((r) => r.status === 204);
    await waitFor(() => ok().length === 8, { onPoll: () => clock.advance(100) });

    for (const path of ["/a", "/b"]) {
      const delivered = ok().filter((r) => r.path === path);
      const ids = delivered.map((r) => r.headers["webhook-id"]);
      expect(new Set(ids).size).toBe(4);
      const bodies = delivered.map((r) => verifier.verify(r.body, r.headers) as { type: string });
      expect(bodies.map((b) => b.type).sort()).toEqual([
        "identity.created",
        "identity.deleted",
        "identity.updated",
        "tokens.revoked",
      ]);
      // The failed first attempt carried the same webhook-id as the successful retry.
      const failed = hooks.requests.filter((r) => r.path === path && r.status === 500);
      expect(failed.map((r) => r.headers["webhook-id"]).sort()).toEqual([...ids].sort());
    }
    for (const request of ok()) {
      expect(JSON.parse(request.body)).toEqual({
        type: expect.any(String),
        timestamp: expect.any(String),
        data: {
          userId: "8:acs:hooked",
          externalId: "person-h",
          origin: "self-service",
          actor: expect.any(String),
        },
      });
    }
    // First retry a second after the failure (jitter off): seconds, not minutes.
    const retries = reports.filter((r) => r.result === "retry");
    expect(retries).toHaveLength(8);
    // The receiver answered before the dispatcher recorded the answer: wait for the rows.
    await waitFor(async () => (await deliveries()).every((d) => d.state === "delivered"));
    expect((await deliveries()).map((d) => [d.state, d.attempts])).toEqual(
      Array(8).fill(["delivered", 2]),
    );

    // A response body is never logged in full (only a short prefix is stored on the row).
    expect(lines.join("\n")).not.toContain("END-OF-BODY");
    expect(lines.join("\n")).not.toContain("xxxxxxxxxx");
    const stored = await db.a.query<{ last_error: string | null }>(
      "SELECT last_error FROM acsgw_directory_delivery",
    );
    expect(stored.rows.every((r) => r.last_error === null)).toBe(true);

    await waitFor(
      async () => (await registry.getSingleMetricAsString("acsgw_webhook_backlog")).endsWith(" 0"),
      {
        onPoll: () => clock.advance(100),
      },
    );
    const text = await registry.metrics();
    expect(text).toContain(
      'acsgw_webhook_deliveries_total{event_type="identity.created",result="delivered"} 2',
    );
    expect(text).toContain(
      'acsgw_webhook_deliveries_total{event_type="tokens.revoked",result="retry"} 2',
    );
    expect(text).toContain("acsgw_webhook_oldest_undelivered_age_seconds 0");
    expect(text).toMatch(/acsgw_webhook_delivery_latency_seconds_count 8/);
  });

  it("an instance killed mid-delivery loses nothing: another delivers once its lease expires", async () => {
    db = await backend.fresh();
    const start = Date.now();
    const clockA = new FakeClock(start);
    const clockB = new FakeClock(start);
    const hooks = await receiver((_, index) => (index === 0 ? "hold" : 204));
    const directory = createDirectory({ db: db.a });
    await directory.recordCreated({ id: "8:acs:killed", origin: "admin", actor: "admin:ops" });

    const doomedDb = killable(db.a);
    const doomed = dispatcher({
      db: doomedDb,
      urls: [hooks.url()],
      clock: clockA,
      leaseMs: 30_000,
    });
    doomed.start();
    await waitFor(() => hooks.requests.length === 1);
    // The instance dies while the receiver is still answering: its claim stays in the database.
    doomedDb.kill();
    const claimed = await db.b.query<{ locked_until: Date; attempts: number }>(
      "SELECT locked_until, attempts FROM acsgw_directory_delivery",
    );
    expect(new Date(claimed.rows[0]!.locked_until).getTime()).toBe(start + 30_000);

    const survivor = dispatcher({ db: db.b, urls: [hooks.url()], clock: clockB, leaseMs: 30_000 });
    survivor.start();
    await survivor.runOnce();
    expect(hooks.requests).toHaveLength(1); // claimed elsewhere, lease not expired: not touched

    let deliveredAt: number | undefined;
    await waitFor(
      () => {
        if (hooks.requests[1]?.status === 204 && deliveredAt === undefined) {
          deliveredAt = clockB.now();
        }
        return deliveredAt !== undefined;
      },
      { onPoll: () => clockB.advance(1_000) },
    );
    expect(deliveredAt! - start).toBeGreaterThanOrEqual(30_000);
    const [first, second] = hooks.requests;
    expect(second!.headers["webhook-id"]).toBe(first!.headers["webhook-id"]);
    verifier.verify(second!.body, second!.headers);
    await waitFor(async () => (await deliveries())[0]?.state === "delivered");
    expect((await deliveries())[0]).toMatchObject({ state: "delivered", attempts: 2 });
  });

  /**
   * `db`, counting its queries, and `quiet()`: resolves once the dispatcher on it stopped querying
   * (and fails if it never does). The database's answers and the event loop's turns are the
   * clock: the dispatcher must settle (its cycle after a claim ends), then make no query for 50
   * more. (PGlite answers within one turn: the turn is what lets a timer due at once run.)
   */
  const countingQueries = (on: typeof db.a) => {
    let queries = 0;
    const counted: typeof db.a = {
      ...on,
      query: (sql, params) => {
        queries++;
        return on.query(sql, params);
      },
    };
    const answers = async (n: number) => {
      for (let i = 0; i < n; i++) {
        await on.query("SELECT 1");
        await new Promise((resolve) => setImmediate(resolve));
      }
    };
    const quiet = async () => {
      let settled: number;
      let rounds = 0;
      do {
        settled = queries;
        await answers(20);
        expect(++rounds).toBeLessThan(20);
      } while (queries !== settled);
      await answers(50);
      expect(queries).toBe(settled);
    };
    return { db: counted, quiet };
  };

  it("while every slot is taken, waits for one to free up instead of querying again and again", async () => {
    db = await backend.fresh();
    const clock = new FakeClock();
    const hooks = await receiver(() => "hold");
    const directory = createDirectory({ db: db.a, clock });
    for (const id of ["8:acs:busy-1", "8:acs:busy-2", "8:acs:busy-3"]) {
      await directory.recordCreated({ id, origin: "admin" });
    }
    const counting = countingQueries(db.a);
    // One slot, held by a receiver that does not answer; two more deliveries are due meanwhile.
    // Before, a cycle started at once after each, for as long as the receiver held on.
    dispatcher({ db: counting.db, urls: [hooks.url()], clock, concurrency: 1 }).start();
    await waitFor(() => hooks.requests.length === 1);
    await counting.quiet();
    expect(hooks.requests).toHaveLength(1);
  });

  it("keeps a slot for the other URLs while one receiver hangs, and waits quietly for its own", async () => {
    db = await backend.fresh();
    const clock = new FakeClock();
    const hung = await receiver(() => "hold");
    const healthy = await receiver(() => 204);
    const directory = createDirectory({ db: db.a, clock });
    for (const id of ["8:acs:fair-1", "8:acs:fair-2", "8:acs:fair-3"]) {
      await directory.recordCreated({ id, origin: "admin" });
    }
    const counting = countingQueries(db.a);
    // Two slots, two URLs: the hung one may hold one of them, never both.
    dispatcher({
      db: counting.db,
      urls: [hung.url(), healthy.url()],
      clock,
      concurrency: 2,
    }).start();
    // Delivered and recorded: the healthy receiver's requests are over, not only received.
    await waitFor(
      async () =>
        (await deliveries()).filter((d) => d.url === healthy.url() && d.state === "delivered")
          .length === 3,
    );
    expect(hung.requests).toHaveLength(1);
    // The hung URL's other two rows are due, but it is at its share: no cycle comes of them.
    await counting.quiet();
    expect(hung.requests).toHaveLength(1);
    expect(healthy.requests.map((r) => JSON.parse(r.body).data.userId).sort()).toEqual([
      "8:acs:fair-1",
      "8:acs:fair-2",
      "8:acs:fair-3",
    ]);
  });

  it("deletes every finished delivery and event past the retention, not one batch an hour", async () => {
    db = await backend.fresh();
    const clock = new FakeClock();
    const old = new Date(clock.now() - 8 * 24 * 60 * 60_000).toISOString();
    const recent = new Date(clock.now() - 60_000).toISOString();
    // 12,001 events delivered eight days ago (past the 7-day retention), and one a minute ago.
    await db.a.query(
      `INSERT INTO acsgw_directory_event (id, type, user_id, body, created_at, routed)
       SELECT 'msg_' || g, 'identity.created', '8:acs:pruned', '{}',
              CASE WHEN g = 0 THEN $2::timestamptz ELSE $1::timestamptz END, true
         FROM generate_series(0, 12001) AS g`,
      [old, recent],
    );
    await db.a.query(
      `INSERT INTO acsgw_directory_delivery
         (event_seq, url, state, attempts, next_attempt_at, give_up_at, created_at, finished_at)
       SELECT seq, 'https://receiver.example/hook', 'delivered', 1,
              created_at, created_at, created_at, created_at
         FROM acsgw_directory_event`,
    );
    await dispatcher({ db: db.a, urls: ["https://receiver.example/hook"], clock }).runOnce();
    const left = async (table: string) =>
      (await db.a.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`)).rows[0]!.n;
    expect(await left("acsgw_directory_delivery")).toBe(1);
    expect(await left("acsgw_directory_event")).toBe(1);
  });

  it("stop() hands in-flight claims back so that another instance delivers at once", async () => {
    db = await backend.fresh();
    const clock = new FakeClock();
    const hooks = await receiver((_, index) => (index === 0 ? "hold" : 204));
    await createDirectory({ db: db.a, clock }).recordCreated({
      id: "8:acs:stopped",
      origin: "admin",
    });
    const reports: DeliveryReport[] = [];
    const first = dispatcher({
      db: db.a,
      urls: [hooks.url()],
      clock,
      onDelivery: (r) => reports.push(r),
    });
    first.start();
    await waitFor(() => hooks.requests.length === 1);
    await first.stop({ graceMs: 0 });
    expect(reports.map((r) => r.result)).toEqual(["released"]);
    expect((await deliveries())[0]).toMatchObject({ state: "pending", attempts: 1 });

    // No lease to wait for: the next instance delivers on its first look, the clock unmoved.
    await dispatcher({ db: db.b, urls: [hooks.url()], clock }).runOnce();
    expect(hooks.requests[1]?.status).toBe(204);
    expect((await deliveries())[0]).toMatchObject({ state: "delivered", attempts: 2 });
  });

  it("gives up after the retry window and keeps the delivery as failed", async () => {
    db = await backend.fresh();
    const clock = new FakeClock();
    const hooks = await receiver(() => ({ status: 503, body: `busy ${"y".repeat(1000)}` }));
    const down = await receiver(() => 204);
    const downUrl = down.url();
    await down.close(); // nothing listens there any more: connection refused
    receivers.splice(receivers.indexOf(down), 1);

    const registry = new Registry();
    const reports: DeliveryReport[] = [];
    await createDirectory({ db: db.a, clock }).recordCreated({
      id: "8:acs:doomed",
      origin: "admin",
    });
    const start = clock.now();
    dispatcher({
      db: db.b,
      urls: [hooks.url(), downUrl],
      clock,
      registry,
      retryWindowMs: 60_000,
      backoff: { initialMs: 1_000, maxMs: 8_000, jitter: 0 },
      onDelivery: (r) => reports.push(r),
    }).start();

    const failed = async () => {
      const rows = await deliveries();
      return rows.length === 2 && rows.every((d) => d.state === "failed");
    };
    await waitFor(failed, {
      onPoll: () => clock.advance(250),
    });
    const rows = await deliveries();
    const refused = rows.find((r) => r.url === downUrl)!;
    const refusedBy503 = rows.find((r) => r.url !== downUrl)!;
    expect(refusedBy503).toMatchObject({ state: "failed", last_status: 503 });
    expect(refusedBy503.last_error).toMatch(/^HTTP 503: busy y+$/);
    expect(refusedBy503.last_error!.length).toBeLessThanOrEqual(220);
    expect(refused).toMatchObject({ state: "failed", last_status: null });
    expect(refused.last_error).toMatch(/ECONNREFUSED|fetch failed/);

    // Retries 1, 2, 4, 8 s apart (jitter off, capped at 8 s), the last one at the window's end.
    const tries = reports.filter((r) => r.url !== downUrl);
    const delays = tries.filter((r) => r.result === "retry").map((r) => r.retryInMs!);
    expect(delays.slice(0, 5)).toEqual([1_000, 2_000, 4_000, 8_000, 8_000]);
    expect(Math.max(...delays)).toBe(8_000);
    expect(tries.at(-1)!.result).toBe("failed");
    expect(tries.at(-1)!.sinceEventMs).toBeGreaterThanOrEqual(60_000);
    expect(clock.now() - start).toBeGreaterThanOrEqual(60_000);
    expect(refusedBy503.attempts).toBe(tries.length);
    expect(reports.filter((r) => r.result === "failed")).toHaveLength(2);
    expect(await registry.metrics()).toContain(
      'acsgw_webhook_deliveries_total{event_type="identity.created",result="failed"} 2',
    );

    // Nothing more happens: failed rows are never claimed again.
    const seen = hooks.requests.length;
    clock.advance(3_600_000);
    await dispatchers.at(-1)!.runOnce();
    expect(hooks.requests).toHaveLength(seen);
  });

  it("wakes at once on a commit (same instance: nudge; other instance: NOTIFY); latency", async () => {
    db = await backend.fresh();
    const hooks = await receiver(() => 204);
    const latencies: Record<string, number[]> = { nudge: [], notify: [] };
    // A poll slower than the test: only the nudge and LISTEN/NOTIFY can deliver in time.
    const delivering = dispatcher({ db: db.b, urls: [hooks.url()], pollIntervalMs: 600_000 });
    delivering.start();
    await delivering.runOnce(); // LISTEN is set up
    for (const [mode, writer] of [
      ["nudge", db.b],
      ["notify", db.a],
    ] as const) {
      const directory = createDirectory({ db: writer });
      for (let i = 0; i < 30; i++) {
        const before = hooks.requests.length;
        const written = performance.now();
        await directory.recordRevocation(`8:acs:${mode}-${i}`, "admin:ops");
        await waitFor(() => hooks.requests.length > before, { intervalMs: 1, timeoutMs: 10_000 });
        latencies[mode]!.push(hooks.requests[before]!.at - written);
      }
    }
    const summary = Object.fromEntries(
      Object.entries(latencies).map(([mode, values]) => [
        mode,
        { p50: +percentile(values, 50).toFixed(1), p99: +percentile(values, 99).toFixed(1) },
      ]),
    );
    console.log(
      `webhook delivery latency on ${backend.name} (ms, commit to receipt):`,
      JSON.stringify(summary),
    );
    expect(summary.nudge!.p50).toBeLessThan(1_000);
    expect(summary.notify!.p50).toBeLessThan(1_000);
  });
});
