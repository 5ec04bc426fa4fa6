import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, chownSync, mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { freePort } from "./ports.js";
import { withRepositoryLock } from "./processes.js";
import { untilProcessState } from "./redis.js";

const run = promisify(execFile);

/**
 * A PostgreSQL server owned by one test file: `initdb` into a temporary folder and `postgres` on a
 * free loopback port with its unix socket in that folder. Never the machine's server on 5432.
 * With `DATABASE_URL` set (a CI service), that server is used instead and each `newDatabase()` is a
 * fresh database on it, dropped by `stop()`.
 */
export interface PostgresServer {
  /** A fresh, empty database: its connection URL. */
  newDatabase(): Promise<string>;
  /**
   * Only for a server the helper started (not an external DATABASE_URL): stop it as a crash does
   * (`pg_ctl stop -m immediate`: connections reset, no shutdown checkpoint), resolved once it exited.
   */
  crash?(): Promise<void>;
  /** After `crash`: start again on the same data and port (crash recovery runs), once it accepts. */
  restart?(): Promise<void>;
  /**
   * Only for a server the helper started: SIGSTOP to the server and every backend, resolved once
   * the kernel reports the postmaster stopped. Connections stay open and every statement waits (a
   * VM freeze, a blocked disk). `resume` sends SIGCONT.
   */
  pause?(): Promise<void>;
  resume?(): Promise<void>;
  stop(): Promise<void>;
}

function binDir(): string {
  for (const dir of [
    "/usr/local/bin",
    "/usr/lib/postgresql/15/bin",
    "/usr/lib/postgresql/16/bin",
  ]) {
    if (existsSync(join(dir, "initdb")) && existsSync(join(dir, "postgres"))) {
      return dir;
    }
  }
  throw new Error("initdb and postgres were not found (install PostgreSQL or set DATABASE_URL)");
}

/** initdb refuses to run as root: then every server command runs as the `postgres` user. */
function asServerUser(command: string, args: string[]): [string, string[]] {
  return userInfo().uid === 0
    ? ["runuser", ["-u", "postgres", "--", command, ...args]]
    : [command, args];
}

async function waitForServer(url: string, child: ChildProcess, deadline: number): Promise<void> {
  for (;;) {
    if (child.exitCode !== null) {
      throw new Error(`postgres exited with ${child.exitCode} before accepting connections`);
    }
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
    try {
      await client.connect();
      await client.end();
      return;
    } catch {
      await client.end().catch(() => {});
    }
    if (Date.now() > deadline) {
      throw new Error("postgres did not accept connections in time");
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A new folder in tmpdir that the server user owns (initdb and postgres refuse to run as root). */
async function serverFolder(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "acsgw-pg-"));
  if (userInfo().uid === 0) {
    chownSync(dir, Number((await run("id", ["-u", "postgres"])).stdout.trim()), -1);
  }
  return dir;
}

const INITDB_OPTIONS = ["-U", "postgres", "--auth=trust", "--no-sync", "--encoding=UTF8"];
let template: Promise<string> | undefined;

/**
 * A data folder fresh from `initdb` (never started), made once per PostgreSQL build and initdb
 * options and kept in tmpdir for later runs: each server copies it (`cp -a`, about 0.4 s) instead
 * of running initdb, which costs about 1.5 s of CPU, and nine test files start a server. Made under
 * a lock named after the folder itself (every clone on the machine shares it), into a partial
 * folder renamed at the end, so that concurrent test processes make it once and none copies half
 * of one.
 */
function dataTemplate(bin: string): Promise<string> {
  template ??= (async () => {
    const { stdout: version } = await run(join(bin, "initdb"), ["--version"]);
    const id = createHash("sha256")
      .update(`${bin}\0${version}\0${INITDB_OPTIONS.join(" ")}\0${userInfo().uid}`)
      .digest("hex")
      .slice(0, 12);
    const ready = join(tmpdir(), `acsgw-pg-template-${id}`);
    const made = () => existsSync(join(ready, "data", "PG_VERSION"));
    if (!made()) {
      await withRepositoryLock(ready, "postgres-template", async () => {
        if (made()) {
          return;
        }
        rmSync(ready, { recursive: true, force: true });
        const partial = await serverFolder();
        const [initCmd, initArgs] = asServerUser(join(bin, "initdb"), [
          "-D",
          join(partial, "data"),
          ...INITDB_OPTIONS,
        ]);
        await run(initCmd, initArgs);
        renameSync(partial, ready);
      });
    }
    return join(ready, "data");
  })();
  template.catch(() => (template = undefined));
  return template;
}

export async function startPostgres(): Promise<PostgresServer> {
  const created: string[] = [];
  let next = 0;
  const unique = () => `acsgw_test_${process.pid}_${randomBytes(4).toString("hex")}_${++next}`;

  const external = process.env.DATABASE_URL;
  if (external) {
    const admin = new pg.Client({ connectionString: external });
    await admin.connect();
    return {
      async newDatabase() {
        const name = unique();
        await admin.query(`CREATE DATABASE ${name}`);
        created.push(name);
        const url = new URL(external);
        url.pathname = `/${name}`;
        return url.toString();
      },
      async stop() {
        // Not WITH (FORCE): a pool's end() resolves before its connections are closed, and a
        // forced drop would then kill them with an error nobody listens to. Wait for them instead.
        for (const name of created) {
          for (let attempt = 0; ; attempt++) {
            try {
              await admin.query(`DROP DATABASE IF EXISTS ${name}`);
              break;
            } catch (error) {
              const inUse = error instanceof pg.DatabaseError && error.code === "55006";
              if (!inUse || attempt >= 100) {
                throw error;
              }
              await new Promise((r) => setTimeout(r, 100));
            }
          }
        }
        await admin.end();
      },
    };
  }

  const bin = binDir();
  const dir = await serverFolder();
  const data = join(dir, "data");
  const [copyCmd, copyArgs] = asServerUser("cp", ["-a", await dataTemplate(bin), data]);
  await run(copyCmd, copyArgs);

  const port = await freePort();
  const [cmd, args] = asServerUser(join(bin, "postgres"), [
    "-D",
    data,
    "-p",
    String(port),
    "-k",
    dir,
    "-c",
    "listen_addresses=127.0.0.1",
    "-c",
    "fsync=off",
    "-c",
    "max_connections=200",
  ]);
  const launch = () => {
    const started = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
    started.stderr?.on("data", () => {});
    return started;
  };
  let child = launch();
  const base = `postgres://postgres@127.0.0.1:${port}`;
  await waitForServer(`${base}/postgres`, child, Date.now() + 20_000);
  let admin = new pg.Client({ connectionString: `${base}/postgres` });
  await admin.connect();
  const immediateStop = async () => {
    const [stopCmd, stopArgs] = asServerUser(join(bin, "pg_ctl"), [
      "stop",
      "-D",
      data,
      "-m",
      "immediate",
    ]);
    await run(stopCmd, stopArgs).catch(() => {});
    if (child.exitCode === null && child.signalCode === null) {
      await new Promise<void>((resolve) => child.once("exit", () => resolve()));
    }
  };

  /**
   * Every process of the server: the postmaster (first line of postmaster.pid) and its children.
   * PostgreSQL puts each child in its own session, so a process-group signal would miss them.
   * The postmaster is signalled first: stopped, it forks no new backend in between.
   */
  const signalServer = async (name: "SIGSTOP" | "SIGCONT", stopped: boolean) => {
    const postmaster = Number(readFileSync(join(data, "postmaster.pid"), "utf8").split("\n")[0]);
    process.kill(postmaster, name);
    const children = readFileSync(`/proc/${postmaster}/task/${postmaster}/children`, "utf8")
      .split(" ")
      .filter((pid) => pid !== "")
      .map(Number);
    for (const pid of children) {
      process.kill(pid, name);
    }
    if (!stopped && child.pid !== undefined && child.pid !== postmaster) {
      // runuser (as root) stops itself when its child stops, as su does for job control: left
      // stopped it would never reap the server, and `stop` would wait for its exit forever.
      process.kill(child.pid, "SIGCONT");
    }
    for (const pid of [postmaster, ...children]) {
      await untilProcessState(pid, stopped);
    }
  };

  return {
    async newDatabase() {
      const name = unique();
      await admin.query(`CREATE DATABASE ${name}`);
      return `${base}/${name}`;
    },
    async crash() {
      admin.on("error", () => {});
      await immediateStop();
    },
    async restart() {
      child = launch();
      await waitForServer(`${base}/postgres`, child, Date.now() + 30_000);
      await admin.end().catch(() => {});
      admin = new pg.Client({ connectionString: `${base}/postgres` });
      await admin.connect();
    },
    async pause() {
      await signalServer("SIGSTOP", true);
    },
    async resume() {
      await signalServer("SIGCONT", false);
    },
    async stop() {
      await admin.end().catch(() => {});
      await signalServer("SIGCONT", false).catch(() => {});
      await immediateStop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
