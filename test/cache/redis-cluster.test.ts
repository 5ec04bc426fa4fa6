import { startRedisCluster } from "../helpers/redis-cluster.js";
import {
  describeTokenCacheBehaviour,
  HEALTHY_REDIS_TIMEOUT_MS,
  redisBackend,
} from "./behaviour.js";

describeTokenCacheBehaviour("three-node Redis Cluster", { shared: true }, async () => {
  const cluster = await startRedisCluster(3);
  const backend = redisBackend(
    { mode: "cluster", nodes: cluster.hosts },
    () => cluster.nodeClients(),
    { commandTimeoutMs: HEALTHY_REDIS_TIMEOUT_MS },
  );
  return {
    ...backend,
    async stop() {
      await backend.stop();
      await cluster.stop();
    },
  };
});
