import { once } from "node:events";
import { createRequire } from "node:module";
import type { Socket } from "node:net";
import { Redis, type Cluster } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/logger.js";
import { createRedisClient } from "../../src/redis/client.js";
import { redisScript, runScript } from "../../src/redis/scripts.js";
import { startRedisCluster, type RedisClusterProcess } from "../helpers/redis-cluster.js";
import { startRedis, type RedisProcess } from "../helpers/redis.js";

/**
 * `coalesceWrites` (src/redis/client.ts) replaces each connection's `sendCommand`, which ioredis
 * does not document, to cork the socket on a turn's first command. These tests pin what it relies
 * on in the installed ioredis, so an upgrade that changes it fails here rather than in production:
 * every command, whatever way it is sent, is written to the connection's socket inside that
 * connection's own `sendCommand`; a turn's commands then leave in one write at the end of the
 * turn, and a later turn's are written while an earlier turn's answers are outstanding. And why the
 * public option is not used: `enableAutoPipelining` holds that later turn back.
 */

/** The ioredis release `coalesceWrites` was written and checked against. */
const PINNED_IOREDIS = "5.11.1";

const silent = createLogger({ level: "silent" });
/** Answers are held back on purpose below (a paused Redis): never time out. */
const LONG_TIMEOUT_MS = 30_000;

/**
 * Resolves after the current turn's `setImmediate` callbacks: `coalesceWrites` uncorks in one it
 * queues on the turn's first command, before this one (immediates run in order).
 */
const turnEnd = () => new Promise((resolve) => setImmediate(resolve));

interface WriteLog {
  /** One entry per write the socket hands to the OS: `_write` (one chunk) or `_writev` (many). */
  calls: { kind: "write" | "writev"; bytes: string }[];
  /** Writes made outside the connection's `sendCommand` (none may be). */
  outside: string[];
  /** Command names, in the order the connection's `sendCommand` got them. */
  sent: string[];
  restore(): void;
}

/**
 * Watches one connection: its `sendCommand` (the patch point) and its socket, at both ends: what
 * ioredis writes into the stream (`write`) and what the stream passes down to the OS
 * (`_write`/`_writev`, Node's stream-implementer methods).
 */
function watch(connection: Redis): WriteLog {
  const log: WriteLog = { calls: [], outside: [], sent: [], restore: () => {} };
  const socket = connection.stream as Socket;
  const patched = connection.sendCommand;
  let inside = 0;
  connection.sendCommand = function (this: Redis, ...args: Parameters<Redis["sendCommand"]>) {
    inside += 1;
    log.sent.push(args[0].name);
    try {
      return patched.apply(this, args);
    } finally {
      inside -= 1;
    }
  };
  // Node's stream internals, untyped in @types/node.
  const own = socket as any;
  const write = own.write;
  const _write = own._write;
  const _writev = own._writev;
  own.write = function (this: Socket, chunk: unknown, ...rest: unknown[]) {
    if (inside === 0) {
      log.outside.push(String(chunk).slice(0, 60));
    }
    return write.call(this, chunk, ...rest);
  };
  own._write = function (this: Socket, chunk: Buffer | string, ...rest: unknown[]) {
    log.calls.push({ kind: "write", bytes: String(chunk) });
    return _write.call(this, chunk, ...rest);
  };
  own._writev = function (this: Socket, chunks: { chunk: Buffer | string }[], ...rest: unknown[]) {
    log.calls.push({ kind: "writev", bytes: chunks.map((c) => String(c.chunk)).join("") });
    return _writev.call(this, chunks, ...rest);
  };
  log.restore = () => {
    connection.sendCommand = patched;
    delete own.write;
    delete own._write;
    delete own._writev;
  };
  return log;
}

/** The command names in RESP bytes as ioredis writes them (`*<n>\r\n$<len>\r\n<name>\r\n...`). */
function commandsIn(bytes: string): string[] {
  return [...bytes.matchAll(/\*\d+\r\n\$\d+\r\n([A-Za-z]+)\r\n/g)].map((m) => m[1]!.toLowerCase());
}

/** Settles quietly (asserted later); tells whether it has settled yet. */
interface Tracked<T> {
  settled: boolean;
  promise: Promise<T>;
}

function track<T>(promise: Promise<T>): Tracked<T> {
  const state = { settled: false, promise };
  promise.then(
    () => (state.settled = true),
    () => (state.settled = true),
  );
  return state;
}

describe("the installed ioredis, as coalesceWrites relies on it", () => {
  let server: RedisProcess;
  let client: Redis;
  const key = (name: string) => `coalesce:${process.pid}:${name}`;

  beforeAll(async () => {
    server = await startRedis();
    client = createRedisClient({ mode: "single", url: server.url }, silent, {
      commandTimeoutMs: LONG_TIMEOUT_MS,
    }) as Redis;
    await once(client, "ready");
  });

  afterAll(async () => {
    await server?.resume().catch(() => undefined);
    client?.disconnect();
    await server?.stop();
  });

  it(`is ioredis ${PINNED_IOREDIS}: after an upgrade, check these assumptions, then move the pin`, () => {
    const installed = (
      createRequire(import.meta.url)("ioredis/package.json") as { version: string }
    ).version;
    expect(installed).toBe(PINNED_IOREDIS);
  });

  it("writes every command (single, call, script, pipeline, MULTI) inside the connection's own sendCommand", async () => {
    // The patch sits on the instance, where ioredis looks `sendCommand` up for every command.
    expect(Object.hasOwn(client, "sendCommand")).toBe(true);
    const log = watch(client);
    try {
      const script = redisScript(`return redis.call("GET", KEYS[1])`);
      expect(await client.set(key("a"), "1")).toBe("OK");
      expect(await client.get(key("a"))).toBe("1");
      expect(await client.call("GET", key("a"))).toBe("1");
      // Unknown to the server at first: EVALSHA fails (NOSCRIPT), then EVAL, then EVALSHA again.
      await client.script("FLUSH");
      expect(await runScript(client, script, [key("a")], [])).toBe("1");
      expect(await runScript(client, script, [key("a")], [], "buffer")).toEqual(Buffer.from("1"));
      expect(await client.pipeline().set(key("b"), "2").get(key("b")).exec()).toEqual([
        [null, "OK"],
        [null, "2"],
      ]);
      expect(await client.multi().incr(key("n")).get(key("n")).exec()).toEqual([
        [null, 1],
        [null, "1"],
      ]);
      expect(log.sent).toEqual([
        "set",
        "get",
        "GET",
        "script",
        "evalsha",
        "eval",
        "evalsha",
        "set",
        "get",
        "multi",
        "incr",
        "get",
        "exec",
      ]);
      expect(log.outside).toEqual([]);
      expect(log.calls.length).toBeGreaterThan(0);
    } finally {
      log.restore();
    }
  });

  it("sends a turn's commands, a pipeline's among them, in one write at the end of the turn", async () => {
    const log = watch(client);
    try {
      const answers = Promise.all([
        client.set(key("c"), "3"),
        client.get(key("c")),
        client.pipeline().exists(key("c")).get(key("c")).exec(),
        client.mget(key("c"), key("none")),
      ]);
      const socket = client.stream as Socket;
      expect(socket.writableCorked).toBe(1);
      expect(log.calls).toEqual([]);
      await turnEnd();
      expect(socket.writableCorked).toBe(0);
      expect(log.calls.map((c) => c.kind)).toEqual(["writev"]);
      // All of them, in the order they were sent.
      expect(commandsIn(log.calls[0]!.bytes)).toEqual(["set", "get", "exists", "get", "mget"]);
      expect(log.sent).toEqual(["set", "get", "exists", "get", "mget"]);
      expect(await answers).toEqual([
        "OK",
        "3",
        [
          [null, 1],
          [null, "3"],
        ],
        ["3", null],
      ]);
      expect(log.outside).toEqual([]);
    } finally {
      log.restore();
    }
  });

  it("writes a later turn's commands at the end of that turn, while the earlier turn's answers are outstanding", async () => {
    await client.mset(key("d"), "4", key("e"), "5");
    const log = watch(client);
    // SIGSTOP: the kernel still takes the bytes, but no answer comes until resume.
    await server.pause();
    let first: Tracked<(string | null)[]> | undefined;
    let second: Tracked<(string | null)[]> | undefined;
    try {
      first = track(Promise.all([client.get(key("d")), client.get(key("e"))]));
      await turnEnd();
      expect(log.calls.map((c) => c.kind)).toEqual(["writev"]);
      expect(commandsIn(log.calls[0]!.bytes)).toEqual(["get", "get"]);
      second = track(client.mget(key("e"), key("d")));
      await turnEnd();
      expect(log.calls.map((c) => c.kind)).toEqual(["writev", "write"]);
      expect(commandsIn(log.calls[1]!.bytes)).toEqual(["mget"]);
      expect([first.settled, second.settled]).toEqual([false, false]);
    } finally {
      await server.resume();
      log.restore();
    }
    // Every answer reaches the command that asked.
    expect(await first.promise).toEqual(["4", "5"]);
    expect(await second.promise).toEqual(["5", "4"]);
  });

  it("the public alternative, enableAutoPipelining, holds the later turn back until the earlier answers arrive (why the patch exists)", async () => {
    const auto = new Redis(server.url, {
      enableAutoPipelining: true,
      commandTimeout: LONG_TIMEOUT_MS,
      maxRetriesPerRequest: 0,
    });
    auto.on("error", () => {});
    try {
      await once(auto, "ready");
      await auto.mset(key("f"), "6", key("g"), "7");
      const log = watch(auto);
      await server.pause();
      let first: Tracked<(string | null)[]> | undefined;
      let second: Tracked<(string | null)[]> | undefined;
      try {
        first = track(Promise.all([auto.get(key("f")), auto.get(key("g"))]));
        await turnEnd();
        expect(log.calls).toHaveLength(1);
        second = track(auto.mget(key("g"), key("f")));
        // Its batch was due in this turn's immediates, and there found the first one in flight.
        await turnEnd();
        await turnEnd();
        expect(log.calls).toHaveLength(1);
        expect([first.settled, second.settled]).toEqual([false, false]);
      } finally {
        await server.resume();
      }
      expect(await first.promise).toEqual(["6", "7"]);
      // Written only once the first batch was answered: a second round trip.
      expect(await second.promise).toEqual(["7", "6"]);
      expect(log.calls).toHaveLength(2);
      log.restore();
    } finally {
      auto.disconnect();
    }
  });
});

describe("the installed ioredis's Cluster, as coalesceWrites relies on it", () => {
  let cluster: RedisClusterProcess;
  let client: Cluster;

  beforeAll(async () => {
    cluster = await startRedisCluster(3);
    client = createRedisClient({ mode: "cluster", nodes: cluster.hosts }, silent, {
      commandTimeoutMs: LONG_TIMEOUT_MS,
    }) as Cluster;
    await once(client, "ready");
  });

  afterAll(async () => {
    client?.disconnect();
    await cluster?.stop();
  });

  it("has the patch on every node connection, and writes a turn's commands for one node in one write", async () => {
    // Every key of one hash slot: one node.
    const key = (name: string) => `{coalesce:${process.pid}}:${name}`;
    await client.set(key("a"), "1");
    const nodes = client.nodes("all");
    expect(nodes).toHaveLength(3);
    // Connected by the cluster client (node connections connect on their first command).
    expect(await Promise.all(nodes.map((node) => node.ping()))).toEqual(["PONG", "PONG", "PONG"]);
    for (const node of nodes) {
      expect(Object.hasOwn(node, "sendCommand")).toBe(true);
    }
    const logs = nodes.map(watch);
    try {
      const answers = Promise.all([
        client.get(key("a")),
        client.set(key("b"), "2"),
        client.pipeline().get(key("a")).get(key("b")).exec(),
        client.multi().incr(key("n")).exec(),
      ]);
      await turnEnd();
      const written = logs.filter((log) => log.calls.length > 0);
      expect(written).toHaveLength(1);
      expect(written[0]!.calls.map((c) => c.kind)).toEqual(["writev"]);
      expect(written[0]!.sent).toEqual(["get", "set", "get", "get", "multi", "incr", "exec"]);
      expect(await answers).toEqual([
        "1",
        "OK",
        [
          [null, "1"],
          [null, "2"],
        ],
        [[null, 1]],
      ]);
      for (const log of logs) {
        expect(log.outside).toEqual([]);
      }
    } finally {
      logs.forEach((log) => log.restore());
    }
  });
});
