import { redisForTest } from "../helpers/redis.js";
import {
  describeTokenCacheBehaviour,
  HEALTHY_REDIS_TIMEOUT_MS,
  redisBackend,
} from "./behaviour.js";

// Only needs *a* Redis: REDIS_URL when given (keys under a per-process prefix), else its own.
describeTokenCacheBehaviour("single Redis", { shared: true }, async () => {
  const redis = await redisForTest();
  const backend = redisBackend({ mode: "single", url: redis.url }, () => [redis.client()], {
    commandTimeoutMs: HEALTHY_REDIS_TIMEOUT_MS,
  });
  return {
    ...backend,
    async stop() {
      await backend.stop();
      await redis.stop();
    },
  };
});
