import { mkdir } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import type { PGlite, PGliteOptions } from "@electric-sql/pglite";
import pg from "pg";
import type { Logger } from "../logger.js";
import { DIRECTORY_SCHEMA, migrate, type Schema } from "./migrations.js";

/**
 * The one SQL surface of the directory: the same statements run on PostgreSQL (`pg`, when
 * DATABASE_URL is set) and on the embedded PGlite (the default for `npm start` and tests). Nothing
 * above this file knows which one it talks to, so the SQL is written once.
 *
 * Portability rules the statements follow (both engines are PostgreSQL 17-compatible, but the
 * drivers differ): timestamps go in as ISO strings cast with `::timestamptz` and come out as Date
 * (both drivers parse timestamptz); bigint results are cast to text or int (pg gives int8 as a
 * string, PGlite as a number); no multi-statement strings.
 */
export interface QueryResult<R> {
  rows: R[];
  /** Rows changed by INSERT/UPDATE/DELETE, rows returned by SELECT. */
  rowCount: number;
}

export interface Queryable {
  query<R = Record<string, unknown>>(
    sql: string,
    params?: readonly unknown[],
  ): Promise<QueryResult<R>>;
}

export interface Db extends Queryable {
  readonly dialect: "postgres" | "pglite";
  /** Runs `fn` in one transaction (READ COMMITTED); a throw rolls everything back. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * LISTEN on `channel` until the returned function is called. `onError` reports a listening
   * connection that broke: the caller listens again later (the poll covers the gap).
   */
  listen(
    channel: string,
    onNotify: () => void,
    onError: (error: Error) => void,
  ): Promise<() => Promise<void>>;
  /** Closes what this adapter owns (a pool or PGlite it opened; never one it was given). */
  close(): Promise<void>;
}

/** Channel names are identifiers in LISTEN: only these literal ones are ever used. */
function assertChannel(channel: string): void {
  if (!/^[a-z_][a-z0-9_]*$/.test(channel)) {
    throw new Error(`invalid channel name ${channel}`);
  }
}

/** PostgreSQL through a `pg` pool. `ownsPool`: close() ends it (otherwise its owner does). */
/** pg's client-side `query_timeout` fired: the server did not answer at all (not even an error). */
function timedOut(error: unknown): boolean {
  return error instanceof Error && error.message === "Query read timeout";
}

export function createPostgresDb(pool: pg.Pool, options: { ownsPool?: boolean } = {}): Db {
  const query = async <R>(
    runner: pg.Pool | pg.PoolClient,
    sql: string,
    params?: readonly unknown[],
  ): Promise<QueryResult<R>> => {
    const result = await runner.query(sql, params as unknown[] | undefined);
    return { rows: result.rows as R[], rowCount: result.rowCount ?? result.rows.length };
  };
  return {
    dialect: "postgres",
    query: (sql, params) => query(pool, sql, params),
    async transaction(fn) {
      const client = await pool.connect();
      // A server that goes away while this connection is checked out makes it emit "error" (the
      // query in flight rejects with it too); pg's pool listens only to idle connections, so
      // without this listener the event is an uncaught exception.
      const noteBroken = (error: Error) => {
        broken = error;
      };
      client.on("error", noteBroken);
      let broken: Error | undefined;
      try {
        await client.query("BEGIN");
        const result = await fn({ query: (sql, params) => query(client, sql, params) });
        await client.query("COMMIT");
        return result;
      } catch (error) {
        if (broken === undefined && !timedOut(error)) {
          await client.query("ROLLBACK").catch((rollbackError: Error) => {
            // A connection that cannot even roll back is destroyed rather than reused.
            broken = rollbackError;
          });
        } else {
          // A server that stopped answering (paused, a dead link) would keep the ROLLBACK waiting
          // its own full timeout behind the statement that timed out, doubling the call's time.
          // Destroying the connection ends the transaction on the server just as well.
          broken ??= error as Error;
        }
        throw error;
      } finally {
        client.off("error", noteBroken);
        client.release(broken);
      }
    },
    async listen(channel, onNotify, onError) {
      assertChannel(channel);
      // A dedicated connection for as long as we listen: notifications arrive only on the session
      // that ran LISTEN. It is one of the pool's connections (count it in the pool's `max`).
      const client = await pool.connect();
      let released = false;
      const release = (error?: Error) => {
        if (!released) {
          released = true;
          client.removeListener("notification", notification);
          client.removeListener("error", failed);
          client.release(error);
        }
      };
      const notification = (message: pg.Notification) => {
        if (message.channel === channel) {
          onNotify();
        }
      };
      const failed = (error: Error) => {
        release(error);
        onError(error);
      };
      client.on("notification", notification);
      client.on("error", failed);
      try {
        await client.query(`LISTEN ${channel}`);
      } catch (error) {
        release(error as Error);
        throw error;
      }
      return async () => {
        if (released) {
          return;
        }
        try {
          await client.query(`UNLISTEN ${channel}`);
          release();
        } catch (error) {
          release(error as Error);
        }
      };
    },
    async close() {
      if (options.ownsPool) {
        await pool.end();
      }
    },
  };
}

/**
 * The embedded PostgreSQL (PGlite: one backend in-process, so statements and transactions run one
 * at a time; `transaction` holds it exclusively until the callback settles). `ownsInstance`:
 * close() closes it (tests share one instance per worker and pass false).
 */
export function createPgliteDb(pglite: PGlite, options: { ownsInstance?: boolean } = {}): Db {
  const query = async <R>(
    runner: Pick<PGlite, "query">,
    sql: string,
    params?: readonly unknown[],
  ): Promise<QueryResult<R>> => {
    const result = await runner.query<R>(sql, params as unknown[] | undefined);
    return { rows: result.rows, rowCount: result.rowCount ?? result.affectedRows ?? 0 };
  };
  return {
    dialect: "pglite",
    query: (sql, params) => query(pglite, sql, params),
    transaction: (fn) =>
      pglite.transaction((tx) => fn({ query: (sql, params) => query(tx, sql, params) })),
    async listen(channel, onNotify) {
      assertChannel(channel);
      const unlisten = await pglite.listen(channel, () => onNotify());
      return () => unlisten();
    },
    async close() {
      if (options.ownsInstance && !pglite.closed) {
        await pglite.close();
      }
    },
  };
}

/**
 * One PGlite per data folder per process: PGlite holds its folder exclusively, and its start is
 * the expensive part (see docs/directory.md: initdb on first use of a folder, then about a second
 * to start the backend). The compiled WASM module is already cached per process by PGlite itself.
 */
const embedded = new Map<string, { pglite: Promise<PGlite>; users: number }>();

export async function openEmbeddedPglite(
  dataDir: string | undefined,
  extra: Omit<PGliteOptions, "dataDir"> = {},
): Promise<{ pglite: PGlite; release(): Promise<void> }> {
  // Loaded on first use only: a gateway on PostgreSQL never loads the 9 MB WASM module.
  const create = async () => {
    if (dataDir) {
      // PGlite makes its folder but not the folders above it (`.data/` of a fresh clone).
      await mkdir(dirname(resolve(dataDir)), { recursive: true });
    }
    const { PGlite } = await import("@electric-sql/pglite");
    return PGlite.create({ ...extra, ...(dataDir ? { dataDir } : {}) });
  };
  if (dataDir === undefined) {
    // In memory: nothing to share, each caller gets its own database.
    const pglite = await create();
    return { pglite, release: () => (pglite.closed ? Promise.resolve() : pglite.close()) };
  }
  let entry = embedded.get(dataDir);
  if (!entry) {
    const pglite = create();
    entry = { pglite, users: 0 };
    embedded.set(dataDir, entry);
    pglite.catch(() => embedded.delete(dataDir));
  }
  const shared = entry;
  shared.users++;
  const instance = await shared.pglite;
  let released = false;
  return {
    pglite: instance,
    async release() {
      if (released) {
        return;
      }
      released = true;
      if (--shared.users === 0) {
        embedded.delete(dataDir);
        await instance.close();
      }
    },
  };
}

export interface OpenedDirectoryDb extends Db {
  /**
   * Resolves once the database is open and migrated (never rejects: a failed open is retried).
   * Calls made before then wait for the open in progress; after a failed one they fail at once
   * with its error until a retry succeeds.
   */
  readonly ready: Promise<void>;
  /** For a readiness probe: "open" once migrated; "failed" between a failed open and its retry. */
  status(): { state: "opening" | "open" | "failed"; error?: unknown };
  /** How long opening and migrating took (ms), once open. */
  openedInMs(): number | undefined;
}

/**
 * Opens the directory's database off the caller's critical path: returns at once, opens and
 * migrates in the background, and queues every call until then. A failed open (PostgreSQL not
 * up yet, a failed migration) is retried with backoff (1 s doubling to 60 s) until close().
 *
 * - `databaseUrl`: PostgreSQL, through a pool of its own (ended by close()).
 * - otherwise PGlite, in `dataDir` (durable) or, without one, in memory (lost at exit: tests, demos).
 */
export function openDirectoryDb(options: {
  logger: Logger;
  databaseUrl?: string;
  dataDir?: string;
  /** More PGlite options (e.g. `loadDataDir`: seed a new folder from an initdb tarball). */
  pglite?: Omit<PGliteOptions, "dataDir">;
  /** The schemas migrated at open, in order (the gateway adds the mappings'); the directory's. */
  schemas?: readonly Schema[];
}): OpenedDirectoryDb {
  const schemas = options.schemas ?? [DIRECTORY_SCHEMA];
  const { logger } = options;
  const started = performance.now();
  const postgres = options.databaseUrl !== undefined;
  let openedIn: number | undefined;
  let adapter: Db | undefined;
  let state: ReturnType<OpenedDirectoryDb["status"]> = { state: "opening" };
  let closed = false;
  let retryTimer: NodeJS.Timeout | undefined;
  let retryMs = 1000;
  let current: Promise<Db>;
  let resolveReady!: () => void;
  const ready = new Promise<void>((resolve) => (resolveReady = resolve));

  /** The adapter is made once (one pool, one PGlite); only a failed PGlite start makes it again. */
  async function connect(): Promise<Db> {
    if (options.databaseUrl !== undefined) {
      const pool = new pg.Pool({
        connectionString: options.databaseUrl,
        max: 10,
        connectionTimeoutMillis: 5000,
        idleTimeoutMillis: 30_000,
        statement_timeout: 5000,
        query_timeout: 6000,
        application_name: "acs-identity-gateway",
      });
      // An idle connection dropping must not crash the process: the next query reconnects.
      pool.on("error", (error) =>
        logger.warn({ err: error }, "directory database connection lost"),
      );
      return createPostgresDb(pool, { ownsPool: true });
    }
    const { pglite, release } = await openEmbeddedPglite(options.dataDir, options.pglite);
    return { ...createPgliteDb(pglite), close: release };
  }

  /** The open database, or DatabaseNotOpenError: the call was never sent. */
  const opened = () =>
    current.catch((error: unknown) => {
      throw new DatabaseNotOpenError(error);
    });

  function attempt(): void {
    state = { state: "opening" };
    current = (async () => {
      const db = (adapter ??= await connect());
      for (const schema of schemas) {
        await migrate(db, schema, logger);
      }
      return db;
    })();
    current.then(
      (db) => {
        state = { state: "open" };
        openedIn = performance.now() - started;
        logger.info(
          { dialect: db.dialect, ms: Math.round(openedIn) },
          "database open and migrated",
        );
        resolveReady();
      },
      (error: unknown) => {
        state = { state: "failed", error };
        logger.error(
          { err: error, retryInMs: retryMs },
          "the directory database could not be opened; retrying",
        );
        if (!closed) {
          retryTimer = setTimeout(attempt, retryMs).unref();
          retryMs = Math.min(retryMs * 2, 60_000);
        }
      },
    );
  }
  attempt();

  return {
    dialect: postgres ? "postgres" : "pglite",
    ready,
    status: () => state,
    openedInMs: () => openedIn,
    query: async (sql, params) => (await opened()).query(sql, params),
    transaction: async (fn) => (await opened()).transaction(fn),
    listen: async (channel, onNotify, onError) =>
      (await opened()).listen(channel, onNotify, onError),
    async close() {
      closed = true;
      clearTimeout(retryTimer);
      await current.catch(() => undefined);
      await adapter?.close();
    },
  };
}

/**
 * A call made while the database could not be opened (its last open failed; a retry is due): the
 * statement was never sent, so nothing it would have written exists. The open's error is the cause.
 */
export class DatabaseNotOpenError extends Error {
  override readonly name = "DatabaseNotOpenError";
  constructor(cause: unknown) {
    super(`the database is not open: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause,
    });
  }
}

/** PostgreSQL's unique_violation, as both drivers report it. */
export function isUniqueViolation(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === "23505";
}
