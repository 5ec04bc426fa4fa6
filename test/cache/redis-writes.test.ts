import { once } from "node:events";
import type { Redis } from "ioredis";
import { connect, createServer, type Server, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/logger.js";
import { createRedisClient, type RedisClient } from "../../src/redis/client.js";
import { freePort } from "../helpers/ports.js";
import { startRedis, type RedisProcess } from "../helpers/redis.js";

/**
 * A proxy in front of Redis that can hold Redis's answers back, so a test sees what the client
 * writes while earlier commands are still unanswered.
 */
async function startHoldingProxy(targetPort: number) {
  const port = await freePort();
  let received = "";
  const arrivals = new EventTarget();
  let holding = false;
  const held: Buffer[] = [];
  let toClient: Socket | undefined;
  const sockets = new Set<Socket>();
  const server: Server = createServer((inbound) => {
    const outbound = connect(targetPort, "127.0.0.1");
    sockets.add(inbound).add(outbound);
    toClient = inbound;
    inbound.on("data", (chunk: Buffer) => {
      received += chunk.toString("latin1");
      arrivals.dispatchEvent(new Event("data"));
      outbound.write(chunk);
    });
    outbound.on("data", (chunk: Buffer) => (holding ? held.push(chunk) : inbound.write(chunk)));
    const drop = () => {
      inbound.destroy();
      outbound.destroy();
    };
    inbound.on("error", drop).on("close", drop);
    outbound.on("error", drop).on("close", drop);
  });
  server.listen(port, "127.0.0.1");
  await once(server, "listening");
  return {
    url: `redis://127.0.0.1:${port}`,
    /** How many bytes the client has written so far. */
    written: () => received.length,
    /**
     * Resolves once the client has written `text` (e.g. a key name) after byte `from`; rejects,
     * naming it, if 5 s pass without it (a client that holds it back would wait forever).
     */
    async sawWritten(text: string, from: number) {
      const signal = AbortSignal.timeout(5_000);
      while (!received.includes(text, from)) {
        await once(arrivals, "data", { signal }).catch((error: unknown) => {
          throw signal.aborted ? new Error(`the client never wrote ${text}`) : error;
        });
      }
    },
    hold() {
      holding = true;
    },
    release() {
      holding = false;
      for (const chunk of held.splice(0)) {
        toClient?.write(chunk);
      }
    },
    async stop() {
      for (const socket of sockets) {
        socket.destroy();
      }
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe("the Redis client's writes", () => {
  let redis: RedisProcess;
  let proxy: Awaited<ReturnType<typeof startHoldingProxy>>;
  let client: RedisClient;

  beforeAll(async () => {
    // A server of its own: the proxy stands in front of it.
    redis = await startRedis();
    proxy = await startHoldingProxy(redis.port);
    // A long command timeout: the test holds answers back on purpose.
    client = createRedisClient(
      { mode: "single", url: proxy.url },
      createLogger({ level: "silent" }),
      {
        commandTimeoutMs: 30_000,
      },
    );
    await once(client, "ready");
  });

  afterAll(async () => {
    client?.disconnect();
    await proxy?.stop();
    await redis?.stop();
  });

  it("writes a later turn's commands while an earlier turn's answers are outstanding", async () => {
    // ioredis's auto-pipelining would hold the second batch until the first batch's answers came
    // back (one pipeline in flight per node): a request would wait two round trips.
    const prefix = `writes-${process.pid}-`;
    await client.set(`${prefix}a`, "1");
    await client.set(`${prefix}b`, "2");
    proxy.hold();
    const from = proxy.written();
    const first = Promise.all([client.get(`${prefix}a`), client.get(`${prefix}b`)]);
    // Observed only at the end; if the test fails first, disconnecting rejects it quietly.
    first.catch(() => {});
    let second: Promise<(string | null)[]>;
    try {
      await proxy.sawWritten(`${prefix}b`, from);
      second = client.mget(`${prefix}b`, `${prefix}a`, `${prefix}none`);
      second.catch(() => {});
      await proxy.sawWritten(`${prefix}none`, from);
    } finally {
      proxy.release();
    }
    // Every answer reaches the command that asked, in order.
    expect(await first).toEqual(["1", "2"]);
    expect(await second).toEqual(["2", "1", null]);
  });

  it("sends a turn's commands together, once the turn is over", async () => {
    const prefix = `turn-${process.pid}-`;
    const socket = (client as Redis).stream;
    const answers = Promise.all([
      client.set(`${prefix}a`, "1"),
      client.get(`${prefix}a`),
      client.exists(`${prefix}a`),
    ]);
    // Held for the rest of the turn (one writev then), not written command by command.
    expect(socket.writableCorked).toBe(1);
    expect(socket.writableLength).toBeGreaterThan(0);
    expect(await answers).toEqual(["OK", "1", 1]);
    expect(socket.writableCorked).toBe(0);
  });

  it("answers many commands of one turn, each with its own reply", async () => {
    const prefix = `burst-${process.pid}-`;
    await Promise.all(Array.from({ length: 200 }, (_, i) => client.set(`${prefix}${i}`, `v${i}`)));
    const values = await Promise.all(
      Array.from({ length: 200 }, (_, i) => client.get(`${prefix}${i}`)),
    );
    expect(values).toEqual(Array.from({ length: 200 }, (_, i) => `v${i}`));
    // A pipeline (and so MULTI) still writes through the same connection and is answered whole.
    const piped = await client.pipeline().get(`${prefix}0`).get(`${prefix}199`).exec();
    expect(piped).toEqual([
      [null, "v0"],
      [null, "v199"],
    ]);
  });
});
