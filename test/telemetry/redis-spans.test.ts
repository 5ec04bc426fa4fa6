import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/logger.js";
import { createRedisClient, createRevokeConnection } from "../../src/redis/client.js";
import { redisScript, runScript } from "../../src/redis/scripts.js";
import { traceRedis } from "../../src/telemetry/instrument.js";
import { startTracing, withSpan, type Tracing } from "../../src/telemetry/tracing.js";
import { startRedis, type RedisProcess } from "../helpers/redis.js";

/**
 * `traceRedis` (src/telemetry/instrument.ts) turns what the installed ioredis publishes on its
 * public `ioredis:command` diagnostics channel into spans. These tests pin what it relies on: one
 * publication per command written, in the caller's context, on every connection (the revoke
 * connection, never passed to `traceRedis`, too), its failure when it fails.
 */

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: { key: string; value: Record<string, unknown> }[];
  status?: { code?: number };
}

/** A minimal OTLP/HTTP JSON receiver: the spans a collector would get. */
async function startReceiver() {
  const bodies: string[] = [];
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      bodies.push(Buffer.concat(chunks).toString("utf8"));
      response.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    bodies,
    spans(): OtlpSpan[] {
      return bodies.flatMap((body) =>
        (
          JSON.parse(body) as { resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[] }
        ).resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans)),
      );
    },
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/** A span's attributes as a plain object. */
const attributes = (span: OtlpSpan) =>
  Object.fromEntries((span.attributes ?? []).map((a) => [a.key, Object.values(a.value)[0]]));

const silent = createLogger({ level: "silent" });

describe("Redis command spans (traceRedis over ioredis's diagnostics channel)", () => {
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let tracing: Tracing;
  let server: RedisProcess;
  let client: Redis;
  let revoke: Redis;
  const key = (name: string) => `spans:${process.pid}:${name}`;

  /** Runs `fn` inside a span named `name`; resolves to that span and the Redis spans exported. */
  async function traced(name: string, fn: () => Promise<unknown>) {
    receiver.bodies.length = 0;
    await withSpan(name, {}, fn).catch(() => undefined);
    await tracing.flush();
    const spans = receiver.spans();
    const parent = spans.find((span) => span.name === name);
    expect(parent).toBeDefined();
    const commands = spans.filter((span) => span.name.startsWith("redis "));
    for (const span of commands) {
      expect(span.traceId).toBe(parent!.traceId);
      expect(span.parentSpanId).toBe(parent!.spanId);
      expect(span.kind).toBe(3); // CLIENT
    }
    return { parent: parent!, commands, exported: receiver.bodies.join("\n") };
  }

  beforeAll(async () => {
    receiver = await startReceiver();
    tracing = (await startTracing({
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    }))!;
    server = await startRedis();
    // As the gateway wires it (src/app.ts): after tracing started.
    client = traceRedis(createRedisClient({ mode: "single", url: server.url }, silent)) as Redis;
    await once(client, "ready");
    revoke = createRevokeConnection(client, silent) as Redis;
    await once(revoke, "ready");
  });

  afterAll(async () => {
    await server?.resume().catch(() => undefined);
    revoke?.disconnect();
    client?.disconnect();
    await server?.stop();
    await tracing?.shutdown();
    await receiver?.close();
  });

  it("makes one client span per command, a child of the active span, with only db.system.name and db.operation.name", async () => {
    await client.set(key("a"), "secret-value");
    const { commands, exported } = await traced("one command", () => client.get(key("a")));
    expect(commands.map((span) => span.name)).toEqual(["redis GET"]);
    expect(attributes(commands[0]!)).toEqual({
      "db.system.name": "redis",
      "db.operation.name": "GET",
    });
    expect(commands[0]!.status?.code ?? 0).toBe(0);
    // Neither the key nor the value (ioredis publishes arguments; they are not recorded).
    expect(exported).not.toContain(key("a"));
    expect(exported).not.toContain("secret-value");
  });

  it("makes one span per command of a pipeline, a MULTI and a script, and one per command of the revoke connection", async () => {
    const script = redisScript(`return redis.call("GET", KEYS[1])`);
    await client.script("FLUSH");
    const { commands } = await traced("many commands", async () => {
      await client.pipeline().set(key("b"), "1").get(key("b")).exec();
      await client.multi().incr(key("n")).exec();
      // Unknown to the server: EVALSHA fails (NOSCRIPT), then EVAL.
      await runScript(client, script, [key("b")], []);
      // Never passed to traceRedis: the channel is the process's, not one client's.
      await revoke.get(key("b"));
    });
    expect(commands.map((span) => span.name).sort()).toEqual(
      [
        "redis SET",
        "redis GET",
        "redis MULTI",
        "redis INCR",
        "redis EXEC",
        "redis EVALSHA",
        "redis EVAL",
        "redis GET",
      ].sort(),
    );
    const failed = commands.filter((span) => span.status?.code === 2);
    expect(failed.map((span) => span.name)).toEqual(["redis EVALSHA"]);
    expect(attributes(failed[0]!)["error.type"]).toBe("ReplyError");
  });

  it("marks a command that times out failed", async () => {
    await server.pause();
    try {
      const { commands } = await traced("timed out", () => client.get(key("a")));
      expect(commands.map((span) => span.name)).toEqual(["redis GET"]);
      expect(commands[0]!.status?.code).toBe(2); // ERROR
      expect(attributes(commands[0]!)["error.type"]).toBe("Error");
    } finally {
      await server.resume();
    }
  });

  it("makes no span for a command outside any span, nor for a new connection's set-up", async () => {
    receiver.bodies.length = 0;
    await client.get(key("a"));
    const another = traceRedis(createRedisClient({ mode: "single", url: server.url }, silent));
    try {
      await once(another, "ready");
      await another.ping();
    } finally {
      another.disconnect();
    }
    await tracing.flush();
    expect(receiver.spans().filter((span) => span.name.startsWith("redis "))).toEqual([]);
  });
});
