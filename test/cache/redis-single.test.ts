import { startRedis } from "../helpers/redis.js";
import { describeTokenCacheBehaviour, redisBackend } from "./behaviour.js";

describeTokenCacheBehaviour("single Redis", { shared: true }, async () => {
  const server = await startRedis();
  const backend = redisBackend({ mode: "single", url: server.url }, () => [server.client()]);
  return {
    ...backend,
    async stop() {
      await backend.stop();
      await server.stop();
    },
  };
});
