import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { freePort } from "./ports.js";

/**
 * A real redis-server process on a free loopback port, owned by one test file. Never touches the
 * machine's shared Redis on 6379. `REDIS_URL` in the environment is NOT used here on purpose:
 * these tests kill, pause and restart their server. A test that only needs *a* Redis uses
 * `redisForTest()` below, which honours `REDIS_URL`.
 */
export interface RedisProcess {
  port: number;
  url: string;
  dir: string;
  /** SIGKILL: an outage as a crash looks (connections reset, nothing flushed). */
  kill(): Promise<void>;
  /** Start again on the same port (and the same dir, so an AOF written before comes back). */
  restart(): Promise<void>;
  /**
   * SIGSTOP, resolved once the kernel reports the process stopped: connections stay open, every
   * command waits (a GC pause, a VM freeze, a blocked disk).
   */
  pause(): Promise<void>;
  /** SIGCONT, resolved once the process runs again; it then answers what was queued meanwhile. */
  resume(): Promise<void>;
  /** A plain client for assertions (lazily connected, closed by stop). */
  client(): Redis;
  stop(): Promise<void>;
  /** The running redis-server's process id (the bench reads its CPU time). */
  readonly pid: number | undefined;
}

export interface StartRedisOptions {
  port?: number;
  /** Extra redis-server arguments, e.g. ["--cluster-enabled", "yes"]. */
  args?: string[];
  /** Keep data across restart via append-only file (default false: like a cache node that lost its memory). */
  appendOnly?: boolean;
}

async function waitForPing(port: number, deadline: number): Promise<void> {
  for (;;) {
    const probe = new Redis({
      port,
      host: "127.0.0.1",
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    probe.on("error", () => {});
    try {
      await probe.connect();
      if ((await probe.ping()) === "PONG") {
        probe.disconnect();
        return;
      }
    } catch {
      // not up yet
    }
    probe.disconnect();
    if (Date.now() > deadline) {
      throw new Error(`redis-server on port ${port} did not answer PING`);
    }
    // redis-server listens within milliseconds of its spawn; a suite starts dozens of them.
    await new Promise((r) => setTimeout(r, 15));
  }
}

/** Linux: the state letter of /proc/<pid>/stat, "T" while stopped by a signal. */
export async function untilProcessState(pid: number, stopped: boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(
      (error: NodeJS.ErrnoException) => {
        // Gone: a process that exited is no longer stopped (a resumed backend may exit at once).
        // ESRCH: it was reaped between the file's open and its read.
        if ((error.code === "ENOENT" || error.code === "ESRCH") && !stopped) {
          return undefined;
        }
        throw error;
      },
    );
    if (stat === undefined) {
      return;
    }
    // The command name may hold spaces; the state follows the closing parenthesis.
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    if ((state === "T" || state === "t") === stopped) {
      return;
    }
    if (Date.now() > deadline) {
      throw new Error(`process ${pid} did not ${stopped ? "stop" : "continue"}`);
    }
    await new Promise((r) => setImmediate(r));
  }
}

export async function startRedis(options: StartRedisOptions = {}): Promise<RedisProcess> {
  const port = options.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), "acsgw-redis-"));
  let child: ChildProcess | undefined;
  let assertClient: Redis | undefined;

  const launch = async () => {
    const args = [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--dir",
      dir,
      "--save",
      "",
      "--appendonly",
      options.appendOnly ? "yes" : "no",
      "--daemonize",
      "no",
      "--loglevel",
      "warning",
      ...(options.args ?? []),
    ];
    child = spawn("redis-server", args, { stdio: ["ignore", "ignore", "pipe"] });
    child.stderr?.on("data", () => {});
    await waitForPing(port, Date.now() + 10_000);
  };

  const kill = async () => {
    const c = child;
    child = undefined;
    if (c && c.exitCode === null && c.signalCode === null) {
      await new Promise<void>((resolve) => {
        c.once("exit", () => resolve());
        c.kill("SIGKILL");
      });
    }
  };

  const signal = async (name: "SIGSTOP" | "SIGCONT", stopped: boolean) => {
    const pid = child?.pid;
    if (pid === undefined) {
      throw new Error("redis-server is not running");
    }
    process.kill(pid, name);
    await untilProcessState(pid, stopped);
  };

  await launch();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    kill,
    restart: launch,
    pause: () => signal("SIGSTOP", true),
    resume: () => signal("SIGCONT", false),
    get pid() {
      return child?.pid;
    },
    client() {
      if (!assertClient) {
        assertClient = new Redis({ port, host: "127.0.0.1", maxRetriesPerRequest: 1 });
        // Once per client: one listener per call piled up (MaxListenersExceededWarning).
        assertClient.on("error", () => {});
      }
      return assertClient;
    },
    async stop() {
      assertClient?.disconnect();
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A Redis a test may write to under its own key prefix, without killing or pausing it. */
export interface TestRedis {
  url: string;
  /** true: started here (and stopped by `stop`); false: `REDIS_URL` from the environment. */
  owned: boolean;
  /** A plain client for assertions (closed by stop). */
  client(): Redis;
  stop(): Promise<void>;
}

/**
 * `REDIS_URL` when the environment gives one (README, "Development": tests use it where given),
 * else a redis-server of this test file's own. With `REDIS_URL`, `stop` only closes the client: the
 * server, and every key not written by the test, are left alone (tests use unique prefixes).
 */
export async function redisForTest(options: StartRedisOptions = {}): Promise<TestRedis> {
  const url = process.env.REDIS_URL;
  if (!url) {
    const server = await startRedis(options);
    return {
      url: server.url,
      owned: true,
      client: () => server.client(),
      stop: () => server.stop(),
    };
  }
  let assertClient: Redis | undefined;
  return {
    url,
    owned: false,
    client() {
      if (!assertClient) {
        assertClient = new Redis(url, { maxRetriesPerRequest: 1 });
        assertClient.on("error", () => {});
      }
      return assertClient;
    },
    async stop() {
      assertClient?.disconnect();
    },
  };
}

/**
 * Commands this Redis node has served since it started, by name (`INFO commandstats`; scripts'
 * inner commands included, as Redis counts them). The difference of two readings is what ran in
 * between: how tests and the bench count round trips.
 */
export async function commandCounts(client: Redis): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const [, name, calls] of String(await client.info("commandstats")).matchAll(
    /^cmdstat_([\w|-]+):calls=(\d+)/gm,
  )) {
    counts.set(name!, Number(calls));
  }
  return counts;
}
