/**
 * The ceiling: bare Apollo Server 5 on Fastify answering `{ hello }`, with the same integration
 * the gateway uses and nothing else (no auth, no cache, no plugins of our own). Whatever the
 * gateway adds on top is measured as a ratio to this. Prints `LISTENING <url>` once it listens.
 *
 * With `CEILING_REDIS_URL`, the resolver first makes one Redis round trip like a cache hit's (an
 * `MGET` of three keys of one hash slot, one holding as many bytes as a sealed token entry),
 * through ioredis with the gateway's client settings: the floor for any server that asks Redis
 * on every request, which the gateway must (docs/caching.md: no in-process copy of entries).
 */
import { ApolloServer } from "@apollo/server";
import { fastifyApolloDrainPlugin, fastifyApolloHandler } from "@as-integrations/fastify";
import Fastify from "fastify";
import { createRedisClient } from "../src/redis/client.js";
import { createLogger } from "../src/logger.js";

const redisUrl = process.env.CEILING_REDIS_URL;
const redis = redisUrl
  ? createRedisClient({ mode: "single", url: redisUrl }, createLogger({ level: "silent" }))
  : undefined;
const KEYS = ["ceiling:{u}:epoch", "ceiling:{u}:tombstone", "ceiling:{u}:entry"];
if (redis) {
  // No offline queue (as in the gateway): wait for the connection before the first command.
  await new Promise((resolve) => redis.once("ready", resolve));
  await redis.set(KEYS[0]!, "1700000000000000");
  await redis.set(KEYS[2]!, Buffer.alloc(1200, 7));
}

const fastify = Fastify();
const apollo = new ApolloServer({
  typeDefs: "type Query { hello: String }",
  resolvers: {
    Query: {
      hello: redis
        ? async () => ((await redis.mgetBuffer(KEYS))[2] ? "world" : "missing")
        : () => "world",
    },
  },
  plugins: [fastifyApolloDrainPlugin(fastify)],
});
await apollo.start();
fastify.route({
  url: "/graphql",
  method: ["GET", "POST", "OPTIONS"],
  handler: fastifyApolloHandler(apollo),
});
await fastify.listen({ host: "127.0.0.1", port: 0 });
const address = fastify.server.address();
const port = typeof address === "object" && address ? address.port : 0;
process.stdout.write(`LISTENING http://127.0.0.1:${port}/graphql\n`);
process.once("SIGTERM", () => {
  redis?.disconnect();
  fastify.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
