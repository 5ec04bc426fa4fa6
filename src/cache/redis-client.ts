/**
 * @deprecated Moved to `src/redis/` (one Redis module for every store). Kept so code not yet
 * switched (the identity mapping store and its tests) still builds; import from `../redis/index.js`.
 */
export {
  createRedisClient,
  isClientReady,
  redactRedisUrl,
  type RedisClient,
  type RedisConnectionConfig,
} from "../redis/client.js";
