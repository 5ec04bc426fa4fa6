import { createServer, connect, type Server, type Socket } from "node:net";
import { freePort } from "./ports.js";

/**
 * A TCP proxy in front of a Redis port, to cut ONE client's path to Redis (a network partition)
 * while other clients stay connected. `cut()` resets every connection and refuses new ones;
 * `heal()` accepts again on the same port.
 */
export interface RedisProxy {
  port: number;
  url: string;
  cut(): Promise<void>;
  heal(): Promise<void>;
  stop(): Promise<void>;
}

export async function startRedisProxy(targetPort: number): Promise<RedisProxy> {
  const port = await freePort();
  const sockets = new Set<Socket>();
  let server: Server | undefined;

  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const s = createServer((inbound) => {
        const outbound = connect(targetPort, "127.0.0.1");
        sockets.add(inbound);
        sockets.add(outbound);
        const drop = () => {
          inbound.destroy();
          outbound.destroy();
          sockets.delete(inbound);
          sockets.delete(outbound);
        };
        inbound.on("error", drop).on("close", drop);
        outbound.on("error", drop).on("close", drop);
        inbound.pipe(outbound);
        outbound.pipe(inbound);
      });
      s.once("error", reject);
      s.listen(port, "127.0.0.1", () => resolve());
      server = s;
    });

  const cut = async () => {
    const s = server;
    server = undefined;
    for (const socket of sockets) {
      socket.resetAndDestroy();
    }
    sockets.clear();
    if (s) {
      await new Promise<void>((resolve) => s.close(() => resolve()));
    }
  };

  await listen();
  return { port, url: `redis://127.0.0.1:${port}`, cut, heal: listen, stop: cut };
}
