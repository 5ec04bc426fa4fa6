import { randomUUID } from "node:crypto";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { Webhook } from "standardwebhooks";
import type { Logger } from "../logger.js";
import { iso, sleep, systemClock, type Clock } from "./clock.js";
import type { Db } from "./db.js";
import { OUTBOX_CHANNEL, onOutboxWrite, type LifecycleEventType } from "./events.js";

/**
 * Delivers the outbox's lifecycle events to webhook receivers, signed per Standard Webhooks.
 *
 * Rows and their life:
 * - An event row is "routed" by the first dispatcher that sees it: one delivery row per configured
 *   URL, in the same statement that marks it routed (so a URL configured later receives the events
 *   written from then on, not the history; instances configured with different URLs during a
 *   rollout route with whichever list they have).
 * - A delivery row is pending until a 2xx answer (delivered) or until its retry window ends
 *   (failed, kept for inspection until pruned).
 * - Claiming: `FOR UPDATE SKIP LOCKED` picks due rows that no other claimer is picking at this
 *   instant, and the claim itself is a lease (`locked_until`, `claim`) committed before the HTTP
 *   call: no transaction stays open across the request, and an instance killed mid-delivery
 *   loses nothing — its lease expires and another instance claims the row. So each event reaches
 *   each URL at least once; a receiver deduplicates by `webhook-id` (the event's id, the same for
 *   every attempt and every URL).
 * - Attempts are counted at claim time, so one whose instance died counts too; the retry delay
 *   grows 1 s, 2 s, 4 s ... up to `maxMs`, with jitter, until `retryWindowMs` after routing.
 *
 * Wake-ups: a timer at the next due time (at most `pollIntervalMs` away), an in-process nudge when
 * a directory on the same Db object commits an event, and LISTEN on PostgreSQL/PGlite for events
 * committed by other instances. Order between events is not guaranteed (retries reorder them):
 * the body's timestamp says when each change happened.
 */
export interface WebhookDispatcherOptions {
  db: Db;
  /** Receivers; each event goes to every one. */
  urls: readonly string[];
  /** The Standard Webhooks secret (`whsec_` + base64), shared with the receivers. */
  secret: string;
  logger: Logger;
  /** Registers the dispatcher's metrics (acsgw_webhook_*) on this registry. */
  registry?: Registry;
  /** Called after each attempt was recorded (and when its row could not be). */
  onDelivery?: (report: DeliveryReport) => void;
  /** Called after each cycle with the backlog it measured. */
  onBacklog?: (backlog: Backlog) => void;
  clock?: Clock;
  /**
   * Parallel HTTP requests of this instance (default 4). With several URLs, one URL holds at most
   * all but one of them, so a receiver that hangs cannot hold up the others' deliveries.
   */
  concurrency?: number;
  /** Per request, real time (default 10 s). */
  requestTimeoutMs?: number;
  /** How long a claim lasts (default 60 s); must exceed the request timeout with a margin. */
  leaseMs?: number;
  /** The longest sleep between two looks at the outbox (default 5 s). */
  pollIntervalMs?: number;
  backoff?: { initialMs?: number; maxMs?: number; jitter?: number };
  /** How long an event is retried for a URL, from when it was routed (default 24 h). */
  retryWindowMs?: number;
  /** Delivered and failed rows (and then their events) are deleted after this (default 7 days). */
  retentionMs?: number;
  /** LISTEN for other instances' events (default true). */
  listen?: boolean;
  random?: () => number;
  fetch?: typeof fetch;
}

export interface DeliveryReport {
  eventId: string;
  type: LifecycleEventType;
  url: string;
  /** 1 for the first attempt. */
  attempt: number;
  /** delivered: 2xx; retry: failed, scheduled again; failed: failed and out of retry window. */
  result: "delivered" | "retry" | "failed" | "released" | "unrecorded";
  status?: number;
  error?: string;
  /** result "retry": the delay until the next attempt. */
  retryInMs?: number;
  /** From the event's commit to this attempt's end (ms, dispatcher clock). */
  sinceEventMs: number;
  durationMs: number;
}

export interface Backlog {
  /** Pending deliveries plus events not yet routed to URLs. */
  size: number;
  /** The creation time of the oldest undelivered event (epoch ms), if any. */
  oldestAt: number | undefined;
  /** When the next pending delivery is due (epoch ms), if any. */
  nextDueAt: number | undefined;
}

export interface WebhookDispatcher {
  /** Starts the loop (timer, nudges, LISTEN). */
  start(): void;
  /**
   * Stops claiming, waits up to `graceMs` (default: the request timeout, on the clock) for
   * in-flight deliveries, then aborts the rest and releases their claims so another instance
   * can deliver them at once.
   */
  stop(options?: { graceMs?: number }): Promise<void>;
  /** Look at the outbox now (the loop must be started). */
  wake(): void;
  /** One cycle now, awaiting the deliveries it started: for tests, or a drain at shutdown. */
  runOnce(): Promise<void>;
  /** The backlog as the database has it now. */
  backlog(): Promise<Backlog>;
}

interface ClaimedRow {
  seq: string;
  url: string;
  attempts: number;
  give_up_at: Date | string;
  id: string;
  type: LifecycleEventType;
  body: string;
  created_at: Date | string;
}

/** Finished rows deleted per statement when pruning. */
const PRUNE_BATCH = 5000;

const ms = (value: Date | string | null): number | undefined =>
  value === null ? undefined : (value instanceof Date ? value : new Date(value)).getTime();

/** Logs name a receiver by its origin only: a path or query may carry a credential. */
function target(url: string): string {
  return new URL(url).origin;
}

/** Why a request failed, without anything the receiver sent beyond a short prefix. */
function describe(error: unknown): string {
  const err = error as { name?: string; message?: string; cause?: { code?: string } };
  if (err.name === "TimeoutError") {
    return "timeout";
  }
  return (err.cause?.code ?? err.message ?? String(error)).slice(0, 200);
}

/** At most `limit` bytes of a response body, then the rest is discarded unread. */
async function readSnippet(response: Response, limit: number): Promise<string> {
  if (!response.body) {
    return "";
  }
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  try {
    while (bytes < limit) {
      const { done, value } = await reader.read();
      if (done) {
        break;
      }
      chunks.push(value);
      bytes += value.length;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return Buffer.concat(chunks).subarray(0, limit).toString("utf8").replace(/\s+/g, " ").trim();
}

interface DispatcherMetrics {
  deliveries: Counter<"event_type" | "result">;
  latency: Histogram;
  sources: Set<() => { backlog: Backlog; now: number } | undefined>;
}

/** One set of metrics per registry, fed by every dispatcher registered on it. */
const registered = new WeakMap<Registry, DispatcherMetrics>();

function metricsFor(registry: Registry): DispatcherMetrics {
  const existing = registered.get(registry);
  if (existing) {
    return existing;
  }
  const sources: DispatcherMetrics["sources"] = new Set();
  // Gauges read the last cycle's measurement: a scrape never queries the database.
  const latest = () => {
    let freshest: { backlog: Backlog; now: number } | undefined;
    for (const source of sources) {
      const value = source();
      if (value && (!freshest || value.now > freshest.now)) {
        freshest = value;
      }
    }
    return freshest;
  };
  const metrics: DispatcherMetrics = {
    sources,
    deliveries: new Counter({
      name: "acsgw_webhook_deliveries_total",
      help: "Webhook delivery attempts by event type and result (delivered, retry, failed: gave up after the retry window, released: aborted at stop).",
      labelNames: ["event_type", "result"],
      registers: [registry],
    }),
    latency: new Histogram({
      name: "acsgw_webhook_delivery_latency_seconds",
      help: "From an event's commit to its successful delivery to one URL.",
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60, 300, 3600],
      registers: [registry],
    }),
  };
  new Gauge({
    name: "acsgw_webhook_backlog",
    help: "Undelivered webhook deliveries plus events not yet routed, at the last dispatcher cycle.",
    registers: [registry],
    collect() {
      this.set(latest()?.backlog.size ?? 0);
    },
  });
  new Gauge({
    name: "acsgw_webhook_oldest_undelivered_age_seconds",
    help: "Age of the oldest event not yet delivered to every URL (0 when none).",
    registers: [registry],
    collect() {
      const value = latest();
      const oldest = value?.backlog.oldestAt;
      this.set(value && oldest !== undefined ? Math.max(0, (value.now - oldest) / 1000) : 0);
    },
  });
  registered.set(registry, metrics);
  return metrics;
}

export function createWebhookDispatcher(options: WebhookDispatcherOptions): WebhookDispatcher {
  const { db, logger } = options;
  const clock = options.clock ?? systemClock;
  const urls = [...new Set(options.urls)];
  const concurrency = options.concurrency ?? 4;
  // A receiver that hangs keeps each of its requests for the full timeout, and its retries, due
  // oldest first, would take every slot as they free up: the other URLs' deliveries would wait
  // behind its whole backlog. So one URL may hold all slots but one.
  const perUrlLimit = urls.length > 1 ? Math.max(1, concurrency - 1) : concurrency;
  /** This instance's requests in flight, by URL. */
  const inFlightByUrl = new Map<string, number>();
  const requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
  const leaseMs = options.leaseMs ?? 60_000;
  const pollIntervalMs = options.pollIntervalMs ?? 5_000;
  const initialMs = options.backoff?.initialMs ?? 1_000;
  const maxMs = options.backoff?.maxMs ?? 10 * 60_000;
  const jitter = options.backoff?.jitter ?? 0.2;
  const retryWindowMs = options.retryWindowMs ?? 24 * 60 * 60_000;
  const retentionMs = options.retentionMs ?? 7 * 24 * 60 * 60_000;
  const random = options.random ?? Math.random;
  const doFetch = options.fetch ?? fetch;

  if (urls.length === 0) {
    throw new Error("a webhook dispatcher needs at least one URL");
  }
  for (const url of urls) {
    const protocol = URL.canParse(url) ? new URL(url).protocol : "";
    if (protocol !== "http:" && protocol !== "https:") {
      throw new Error(`webhook URL #${urls.indexOf(url) + 1} is not an http(s) URL`);
    }
  }
  if (leaseMs < requestTimeoutMs * 2) {
    throw new Error("leaseMs must be at least twice requestTimeoutMs");
  }
  let webhook: Webhook;
  try {
    webhook = new Webhook(options.secret);
  } catch {
    // Never echo the secret: only say what is wrong with it.
    throw new Error("the webhook secret must be base64 (optionally prefixed whsec_)");
  }

  const instance = randomUUID();
  const metrics = options.registry ? metricsFor(options.registry) : undefined;
  let lastBacklog: { backlog: Backlog; now: number } | undefined;
  const source = () => lastBacklog;
  metrics?.sources.add(source);

  let started = false;
  let stopped = false;
  let running: Promise<void> | undefined;
  let again = false;
  let timer: unknown;
  let unsubscribe: (() => void) | undefined;
  let unlisten: (() => Promise<void>) | undefined;
  let listening = false;
  let lastPrune = 0;
  const inFlight = new Set<Promise<void>>();
  const aborts = new Set<AbortController>();

  function backoff(attempt: number): number {
    const base = Math.min(maxMs, initialMs * 2 ** Math.max(0, attempt - 1));
    return Math.round(base * (1 - jitter * random()));
  }

  function report(row: ClaimedRow, started: number, partial: Partial<DeliveryReport>): void {
    const now = clock.now();
    const full: DeliveryReport = {
      eventId: row.id,
      type: row.type,
      url: row.url,
      attempt: row.attempts,
      result: "retry",
      sinceEventMs: now - (ms(row.created_at) ?? now),
      durationMs: now - started,
      ...partial,
    };
    metrics?.deliveries.inc({ event_type: full.type, result: full.result });
    if (full.result === "delivered") {
      metrics?.latency.observe(full.sinceEventMs / 1000);
    }
    options.onDelivery?.(full);
  }

  /** Gives unrouted events one delivery row per URL (in the statement that marks them routed). */
  async function route(): Promise<void> {
    const batch = 100;
    for (;;) {
      const now = clock.now();
      const { rowCount } = await db.query(
        `WITH batch AS (
           SELECT seq FROM acsgw_directory_event WHERE NOT routed
            ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED
         ), marked AS (
           UPDATE acsgw_directory_event AS e SET routed = true
             FROM batch WHERE e.seq = batch.seq RETURNING e.seq
         )
         INSERT INTO acsgw_directory_delivery
           (event_seq, url, state, next_attempt_at, give_up_at, created_at)
         SELECT marked.seq, u.url, 'pending', $2::timestamptz, $3::timestamptz, $2::timestamptz
           FROM marked CROSS JOIN unnest($4::text[]) AS u(url)
         ON CONFLICT DO NOTHING`,
        [batch, iso(now), iso(now + retryWindowMs), urls],
      );
      if (rowCount < batch * urls.length) {
        return;
      }
    }
  }

  /** Claims up to `limit` due rows, none of the URLs in `full`. */
  async function claim(
    limit: number,
    full: string[],
  ): Promise<{ claimToken: string; rows: ClaimedRow[] }> {
    const now = clock.now();
    const claimToken = `${instance}:${randomUUID()}`;
    const { rows } = await db.query<ClaimedRow>(
      `WITH due AS (
         SELECT event_seq, url FROM acsgw_directory_delivery
          WHERE state = 'pending' AND next_attempt_at <= $1::timestamptz
            AND (locked_until IS NULL OR locked_until <= $1::timestamptz)
            AND NOT (url = ANY($5::text[]))
          ORDER BY next_attempt_at, event_seq
          LIMIT $2
          FOR UPDATE SKIP LOCKED
       )
       UPDATE acsgw_directory_delivery AS d
          SET locked_until = $3::timestamptz, claim = $4, attempts = d.attempts + 1
         FROM due, acsgw_directory_event AS e
        WHERE d.event_seq = due.event_seq AND d.url = due.url AND e.seq = d.event_seq
       RETURNING d.event_seq::text AS seq, d.url, d.attempts, d.give_up_at,
                 e.id, e.type, e.body, e.created_at`,
      [iso(now), limit, iso(now + leaseMs), claimToken, full],
    );
    return { claimToken, rows };
  }

  async function deliver(row: ClaimedRow, claimToken: string): Promise<void> {
    const controller = new AbortController();
    aborts.add(controller);
    const startedAt = clock.now();
    let status: number | undefined;
    let error: string | undefined;
    try {
      // Signed per attempt: the timestamp is the attempt's, so a receiver's replay window holds.
      const timestamp = new Date(startedAt);
      const response = await doFetch(row.url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "user-agent": "acs-identity-gateway-webhooks",
          "webhook-id": row.id,
          "webhook-timestamp": String(Math.floor(startedAt / 1000)),
          "webhook-signature": webhook.sign(row.id, timestamp, row.body),
        },
        body: row.body,
        // A redirect is a failure (Standard Webhooks): the signature is for this URL's receiver.
        redirect: "manual",
        signal: AbortSignal.any([controller.signal, AbortSignal.timeout(requestTimeoutMs)]),
      });
      status = response.status;
      const snippet = await readSnippet(response, 200);
      if (status < 200 || status > 299) {
        error = `HTTP ${status}${snippet ? `: ${snippet}` : ""}`;
      }
    } catch (caught) {
      error = controller.signal.aborted ? "aborted at stop" : describe(caught);
    } finally {
      aborts.delete(controller);
    }
    const key = [row.seq, row.url, claimToken];
    const now = clock.now();
    try {
      if (controller.signal.aborted) {
        // Stopping: hand the row back for any instance to deliver now (the attempt stays counted).
        await db.query(
          `UPDATE acsgw_directory_delivery
              SET locked_until = NULL, claim = NULL, next_attempt_at = $4::timestamptz,
                  last_error = $5
            WHERE event_seq = $1::bigint AND url = $2 AND claim = $3`,
          [...key, iso(now), error],
        );
        report(row, startedAt, { result: "released", error });
        return;
      }
      if (error === undefined) {
        const { rowCount } = await db.query(
          `UPDATE acsgw_directory_delivery
              SET state = 'delivered', finished_at = $4::timestamptz, locked_until = NULL,
                  claim = NULL, last_status = $5, last_error = NULL
            WHERE event_seq = $1::bigint AND url = $2 AND claim = $3`,
          [...key, iso(now), status],
        );
        if (rowCount === 0) {
          logger.debug({ eventId: row.id }, "delivered after this claim expired");
        }
        report(row, startedAt, { result: "delivered", status });
        return;
      }
      const giveUpAt = ms(row.give_up_at) ?? now;
      const failed = now >= giveUpAt;
      const next = Math.min(now + backoff(row.attempts), giveUpAt);
      await db.query(
        `UPDATE acsgw_directory_delivery
            SET state = $4, next_attempt_at = $5::timestamptz, locked_until = NULL, claim = NULL,
                last_status = $6, last_error = $7,
                finished_at = CASE WHEN $4 = 'failed' THEN $8::timestamptz END
          WHERE event_seq = $1::bigint AND url = $2 AND claim = $3`,
        [...key, failed ? "failed" : "pending", iso(next), status ?? null, error, iso(now)],
      );
      const line = {
        eventId: row.id,
        type: row.type,
        target: target(row.url),
        attempt: row.attempts,
        status,
        reason: status === undefined ? error : undefined,
      };
      if (failed) {
        logger.error(line, "webhook delivery failed for good: retry window over");
      } else {
        logger.warn({ ...line, retryInMs: next - now }, "webhook delivery failed; will retry");
      }
      report(row, startedAt, {
        result: failed ? "failed" : "retry",
        status,
        error,
        ...(failed ? {} : { retryInMs: next - now }),
      });
    } catch (dbError) {
      // The outcome could not be recorded: the claim expires and the row is attempted again.
      logger.warn(
        { err: dbError, eventId: row.id, target: target(row.url) },
        "could not record a webhook attempt; it will be retried after its claim expires",
      );
      report(row, startedAt, { result: "unrecorded", status, error });
    }
  }

  /** The backlog; its next due time leaves out the rows of `full` URLs (at their share of slots). */
  async function measure(full: string[] = []): Promise<Backlog> {
    const { rows } = await db.query<{
      pending: number;
      unrouted: number;
      next_due: Date | string | null;
      oldest: Date | string | null;
    }>(
      `SELECT
         (SELECT count(*) FROM acsgw_directory_delivery WHERE state = 'pending')::int AS pending,
         (SELECT count(*) FROM acsgw_directory_event WHERE NOT routed)::int AS unrouted,
         (SELECT min(GREATEST(next_attempt_at, COALESCE(locked_until, next_attempt_at)))
            FROM acsgw_directory_delivery
           WHERE state = 'pending' AND NOT (url = ANY($1::text[]))) AS next_due,
         LEAST(
           (SELECT min(e.created_at) FROM acsgw_directory_delivery AS d
              JOIN acsgw_directory_event AS e ON e.seq = d.event_seq WHERE d.state = 'pending'),
           (SELECT min(created_at) FROM acsgw_directory_event WHERE NOT routed)
         ) AS oldest`,
      [full],
    );
    const row = rows[0]!;
    return {
      size: row.pending + row.unrouted,
      oldestAt: ms(row.oldest),
      nextDueAt: row.unrouted > 0 ? clock.now() : ms(row.next_due),
    };
  }

  async function prune(): Promise<void> {
    const now = clock.now();
    if (now - lastPrune < 60 * 60_000) {
      return;
    }
    lastPrune = now;
    const before = iso(now - retentionMs);
    // In batches (short statements, short locks), until a batch comes back short: an hour's
    // worth of finished rows may be far more than one batch.
    const inBatches = async (sql: string) => {
      while ((await db.query(sql, [before, PRUNE_BATCH])).rowCount >= PRUNE_BATCH && !stopped) {
        // the next batch
      }
    };
    await inBatches(
      `DELETE FROM acsgw_directory_delivery
        WHERE (event_seq, url) IN (
          SELECT event_seq, url FROM acsgw_directory_delivery
           WHERE state <> 'pending' AND finished_at < $1::timestamptz LIMIT $2)`,
    );
    await inBatches(
      `DELETE FROM acsgw_directory_event
        WHERE seq IN (
          SELECT seq FROM acsgw_directory_event AS e
           WHERE routed AND created_at < $1::timestamptz
             AND NOT EXISTS (SELECT 1 FROM acsgw_directory_delivery AS d WHERE d.event_seq = e.seq)
           LIMIT $2)`,
    );
  }

  async function ensureListening(): Promise<void> {
    if (options.listen === false || listening || stopped) {
      return;
    }
    listening = true;
    try {
      const stop = await db.listen(
        OUTBOX_CHANNEL,
        () => wake(),
        (error) => {
          logger.warn({ err: error }, "webhook dispatcher stopped listening; will listen again");
          unlisten = undefined;
          listening = false;
        },
      );
      if (stopped) {
        await stop();
      } else {
        unlisten = stop;
      }
    } catch (error) {
      listening = false;
      logger.warn({ err: error }, "webhook dispatcher could not LISTEN; polling only");
    }
  }

  /** Routes, claims what this instance has room for, starts those deliveries, measures. */
  async function cycle(): Promise<Backlog> {
    if (started) {
      await ensureListening();
    }
    await route();
    let room = concurrency - inFlight.size;
    while (room > 0 && !stopped) {
      // No claim may take a URL past its share: URLs at it are left out, and the claim is no
      // larger than what the busiest of the others may still take. Another claim follows while
      // room is left and this one found as many rows as it asked for.
      const full: string[] = [];
      let busiest = 0;
      for (const [url, n] of inFlightByUrl) {
        if (n >= perUrlLimit) {
          full.push(url);
        } else {
          busiest = Math.max(busiest, n);
        }
      }
      const limit = Math.min(room, perUrlLimit - busiest);
      const { claimToken, rows } = await claim(limit, full);
      for (const row of rows) {
        inFlightByUrl.set(row.url, (inFlightByUrl.get(row.url) ?? 0) + 1);
        const delivery: Promise<void> = deliver(row, claimToken)
          .catch((error: unknown) => logger.error({ err: error }, "webhook delivery crashed"))
          .finally(() => {
            inFlight.delete(delivery);
            const left = (inFlightByUrl.get(row.url) ?? 1) - 1;
            if (left > 0) {
              inFlightByUrl.set(row.url, left);
            } else {
              inFlightByUrl.delete(row.url);
            }
            // Room again: claim more if some are due.
            wake();
          });
        inFlight.add(delivery);
      }
      room -= rows.length;
      if (rows.length < limit) {
        break;
      }
    }
    await prune();
    // A URL at its share waits for one of its own requests to end (which wakes the dispatcher):
    // its due rows must not bring the next cycle forward.
    const full = [...inFlightByUrl].filter(([, n]) => n >= perUrlLimit).map(([url]) => url);
    const backlog = await measure(full);
    lastBacklog = { backlog, now: clock.now() };
    options.onBacklog?.(backlog);
    return backlog;
  }

  function schedule(nextDueAt: number | undefined): void {
    if (stopped || !started) {
      return;
    }
    clock.clearTimeout(timer);
    const delay =
      nextDueAt === undefined
        ? pollIntervalMs
        : Math.min(pollIntervalMs, Math.max(0, nextDueAt - clock.now()));
    timer = clock.setTimeout(() => {
      timer = undefined;
      wake();
    }, delay);
  }

  function wake(): void {
    if (!started || stopped) {
      return;
    }
    if (running) {
      again = true;
      return;
    }
    clock.clearTimeout(timer);
    running = (async () => {
      let nextDueAt: number | undefined;
      do {
        again = false;
        try {
          nextDueAt = (await cycle()).nextDueAt;
        } catch (error) {
          logger.warn({ err: error }, "webhook dispatcher cycle failed; will poll again");
          nextDueAt = undefined;
        }
      } while (again && !stopped);
      running = undefined;
      // Every slot taken: a delivery that ends wakes the dispatcher (and the poll still runs).
      // Waiting for the next due time instead would start a cycle at once, again and again, for
      // as long as rows are due that no slot can take: queries back to back against the database.
      schedule(inFlight.size >= concurrency ? undefined : nextDueAt);
    })();
  }

  return {
    start() {
      if (started || stopped) {
        return;
      }
      started = true;
      unsubscribe = onOutboxWrite(db, wake);
      wake();
    },

    wake,

    async runOnce() {
      await running;
      await cycle();
      await Promise.allSettled([...inFlight]);
    },

    backlog: () => measure(),

    async stop(stopOptions = {}) {
      if (stopped) {
        return;
      }
      stopped = true;
      clock.clearTimeout(timer);
      unsubscribe?.();
      await running;
      await unlisten?.().catch(() => {});
      if (inFlight.size > 0) {
        await Promise.race([
          Promise.allSettled([...inFlight]),
          sleep(clock, stopOptions.graceMs ?? requestTimeoutMs),
        ]);
      }
      for (const controller of aborts) {
        controller.abort();
      }
      await Promise.allSettled([...inFlight]);
      metrics?.sources.delete(source);
    },
  };
}
