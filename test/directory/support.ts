import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type ServerResponse } from "node:http";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { PGlite } from "@electric-sql/pglite";
import pg from "pg";
import type { Clock } from "../../src/directory/clock.js";
import { createPgliteDb, createPostgresDb, type Db } from "../../src/directory/db.js";
import { migrateDirectory } from "../../src/directory/migrations.js";
import { createLogger } from "../../src/logger.js";
import { startPostgres, type PostgresServer } from "../helpers/postgres.js";

export const silent = createLogger({ level: "silent" });

/** Two "instances" of the gateway on one database: two Db objects (two pools on PostgreSQL). */
export interface Instances {
  a: Db;
  b: Db;
}

export interface Backend {
  name: "postgres" | "pglite";
  setup(): Promise<void>;
  /** A fresh, migrated database and two instances on it (closed by teardown). */
  fresh(): Promise<Instances>;
  /** Closes what fresh() opened since the last call. */
  cleanup(): Promise<void>;
  teardown(): Promise<void>;
}

/** A real PostgreSQL on a free port, started by the file (never the machine's 5432). */
export function postgresBackend(): Backend {
  let server: PostgresServer | undefined;
  let pools: pg.Pool[] = [];
  return {
    name: "postgres",
    async setup() {
      server = await startPostgres();
    },
    async fresh() {
      const url = await server!.newDatabase();
      const pool = () => {
        const created = new pg.Pool({ connectionString: url, max: 10 });
        // The server stopping at the end of the file may reach a connection still closing.
        created.on("error", () => {});
        pools.push(created);
        return created;
      };
      const a = createPostgresDb(pool());
      const b = createPostgresDb(pool());
      await migrateDirectory(a, silent);
      return { a, b };
    },
    async cleanup() {
      const closing = pools;
      pools = [];
      await Promise.all(closing.map((p) => p.end().catch(() => {})));
    },
    async teardown() {
      await server?.stop();
    },
  };
}

/**
 * Starting a PGlite costs seconds (docs/directory.md: initdb in WASM, then the backend's start),
 * so each test worker starts ONE and every test gets a fresh schema on it. Vitest reuses workers
 * across files (isolate: false), so the instance is kept on globalThis: one per process.
 *
 * initdb's result is also kept as a tarball in the temp folder (per PGlite version), so that a
 * worker loads it instead of running initdb again; it is rebuilt if missing.
 */
const SHARED = Symbol.for("acsgw.test.directory.pglite");
type WithShared = typeof globalThis & { [SHARED]?: Promise<PGlite> };

function templatePath(): string {
  const entry = createRequire(import.meta.url).resolve("@electric-sql/pglite");
  const { version } = JSON.parse(readFileSync(join(dirname(entry), "..", "package.json"), "utf8"));
  return join(tmpdir(), `acsgw-pglite-${version}-initdb.tar`);
}

export function sharedPglite(): Promise<PGlite> {
  const holder = globalThis as WithShared;
  holder[SHARED] ??= (async () => {
    const { PGlite } = await import("@electric-sql/pglite");
    const template = templatePath();
    if (existsSync(template)) {
      try {
        return await PGlite.create({ loadDataDir: new Blob([readFileSync(template)]) });
      } catch {
        // A damaged template (e.g. a half-written file from a killed run): initdb instead.
      }
    }
    const pglite = await PGlite.create();
    const dump = await pglite.dumpDataDir("none");
    const partial = `${template}.${process.pid}`;
    writeFileSync(partial, Buffer.from(await dump.arrayBuffer()));
    // Atomic: concurrent workers each write their own file; a reader never sees half of one.
    renameSync(partial, template);
    return pglite;
  })();
  return holder[SHARED];
}

/** initdb's result as a tarball (the shared instance writes it when missing). */
export async function pgliteTemplate(): Promise<Blob> {
  if (!existsSync(templatePath())) {
    await sharedPglite();
  }
  return new Blob([readFileSync(templatePath())]);
}

export function pgliteBackend(): Backend {
  return {
    name: "pglite",
    async setup() {
      await sharedPglite();
    },
    async fresh() {
      const pglite = await sharedPglite();
      // Tests of one worker run one at a time, so a fresh public schema is a fresh database.
      await pglite.exec("DROP SCHEMA public CASCADE; CREATE SCHEMA public;");
      const a = createPgliteDb(pglite);
      const b = createPgliteDb(pglite);
      await migrateDirectory(a, silent);
      return { a, b };
    },
    async cleanup() {},
    async teardown() {
      // The shared instance lives as long as the worker.
    },
  };
}

export const backends = (): Backend[] => [postgresBackend(), pgliteBackend()];

/**
 * A clock that moves only when told. Timers due now or earlier (delay <= 0) run on the next turn
 * of the event loop, so code that schedules "right away" proceeds without the test's help.
 */
export class FakeClock implements Clock {
  private time: number;
  private next = 0;
  private readonly timers = new Map<number, { at: number; fn: () => void }>();

  constructor(start = Date.now()) {
    this.time = start;
  }

  now(): number {
    return this.time;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.next;
    this.timers.set(id, { at: this.time + Math.max(0, ms), fn });
    if (ms <= 0) {
      setImmediate(() => this.fire(id));
    }
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  advance(ms: number): void {
    this.time += ms;
    const due = [...this.timers]
      .filter(([, t]) => t.at <= this.time)
      .sort((x, y) => x[1].at - y[1].at);
    for (const [id] of due) {
      this.fire(id);
    }
  }

  private fire(id: number): void {
    const timer = this.timers.get(id);
    if (timer) {
      this.timers.delete(id);
      timer.fn();
    }
  }
}

/**
 * A Db whose "process" can be killed: after kill() every call fails, and answers of calls in
 * flight are lost, as for an instance that died (its claims stay in the database until they expire).
 */
export function killable(db: Db): Db & { kill(): void } {
  let dead = false;
  const alive = () => {
    if (dead) {
      throw new Error("this instance was killed");
    }
  };
  const query: Db["query"] = async <R>(sql: string, params?: readonly unknown[]) => {
    alive();
    const result = await db.query<R>(sql, params);
    alive();
    return result;
  };
  return {
    dialect: db.dialect,
    query,
    transaction: async (fn) => {
      alive();
      return db.transaction((tx) =>
        fn({
          query: async (sql, params) => {
            alive();
            return tx.query(sql, params);
          },
        }),
      );
    },
    listen: async (channel, onNotify, onError) => {
      alive();
      return db.listen(channel, () => (dead ? undefined : onNotify()), onError);
    },
    close: () => db.close(),
    kill() {
      dead = true;
    },
  };
}

/** A Db on which every statement matching `pattern` fails (inside transactions too). */
export function failingOn(db: Db, pattern: RegExp): Db {
  const guard = (sql: string) => {
    if (pattern.test(sql)) {
      throw new Error(`injected failure: ${pattern}`);
    }
  };
  return {
    ...db,
    query: async (sql, params) => {
      guard(sql);
      return db.query(sql, params);
    },
    transaction: (fn) =>
      db.transaction((tx) =>
        fn({
          query: async (sql, params) => {
            guard(sql);
            return tx.query(sql, params);
          },
        }),
      ),
  };
}

/**
 * Polls `condition` until it holds (bounded by `timeoutMs`, below the test's own timeout).
 * `onPoll` runs before each look: tests move a fake clock forward there.
 */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  options: { timeoutMs?: number; intervalMs?: number; onPoll?: () => void } = {},
): Promise<void> {
  const deadline = Date.now() + (options.timeoutMs ?? 20_000);
  for (;;) {
    options.onPoll?.();
    if (await condition()) {
      return;
    }
    if (Date.now() > deadline) {
      throw new Error("condition not met in time");
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 10));
  }
}

export interface ReceivedRequest {
  path: string;
  headers: Record<string, string>;
  body: string;
  /** The status answered (undefined while held). */
  status?: number;
  /** Real time of arrival (performance.now()). */
  at: number;
}

export interface Receiver {
  url(path?: string): string;
  requests: ReceivedRequest[];
  /** Answers every request still held. */
  releaseHeld(status: number): void;
  close(): Promise<void>;
}

/**
 * A webhook receiver: a real HTTP server on a free loopback port. `respond` decides each answer:
 * a status, or "hold" (no answer until releaseHeld, as a receiver that hangs).
 */
export async function startReceiver(
  respond: (
    request: ReceivedRequest,
    index: number,
  ) => number | "hold" | { status: number; body: string },
): Promise<Receiver> {
  const requests: ReceivedRequest[] = [];
  const held: { request: ReceivedRequest; response: ServerResponse }[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const request: ReceivedRequest = {
        path: req.url ?? "/",
        headers: flatten(req.headers),
        body: Buffer.concat(chunks).toString("utf8"),
        at: performance.now(),
      };
      const index = requests.push(request) - 1;
      const answer = respond(request, index);
      if (answer === "hold") {
        held.push({ request, response: res });
        return;
      }
      const { status, body } = typeof answer === "number" ? { status: answer, body: "" } : answer;
      request.status = status;
      res.writeHead(status, { "content-type": "text/plain" }).end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    url: (path = "/hook") => `http://127.0.0.1:${port}${path}`,
    requests,
    releaseHeld(status) {
      for (const { request, response } of held.splice(0)) {
        request.status = status;
        response.writeHead(status).end();
      }
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function flatten(headers: IncomingHttpHeaders): Record<string, string> {
  const flat: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) {
      flat[name] = Array.isArray(value) ? value.join(", ") : value;
    }
  }
  return flat;
}

/** The p-th percentile (0..100) of `values`, nearest rank. */
export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[
    Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  ]!;
}
