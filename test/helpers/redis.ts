import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { freePort } from "./ports.js";

/**
 * A real redis-server process on a free loopback port, owned by one test file. Never touches the
 * machine's shared Redis on 6379. `REDIS_URL` in the environment is NOT used here on purpose:
 * these tests kill and restart their server.
 */
export interface RedisProcess {
  port: number;
  url: string;
  dir: string;
  /** SIGKILL: an outage as a crash looks (connections reset, nothing flushed). */
  kill(): Promise<void>;
  /** Start again on the same port (and the same dir, so an AOF written before comes back). */
  restart(): Promise<void>;
  /** A plain client for assertions (lazily connected, closed by stop). */
  client(): Redis;
  stop(): Promise<void>;
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
    await new Promise((r) => setTimeout(r, 50));
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

  await launch();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    kill,
    restart: launch,
    client() {
      assertClient ??= new Redis({ port, host: "127.0.0.1", maxRetriesPerRequest: 1 });
      assertClient.on("error", () => {});
      return assertClient;
    },
    async stop() {
      assertClient?.disconnect();
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
