export {
  createRedisClient,
  isClientReady,
  redactRedisUrl,
  type RedisClient,
  type RedisClientOptions,
  type RedisConnectionConfig,
} from "./client.js";
export { redisScript, runScript, type RedisScript } from "./scripts.js";
export {
  assertKeyPrefix,
  escapeKeyPart,
  hashTag,
  mappingKeyPrefix,
  rateLimitKeyPrefix,
  tokenCacheKeyPrefix,
} from "./keys.js";
