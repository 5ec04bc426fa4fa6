export {
  COMMAND_TIMEOUT_MS,
  createRedisClient,
  isClientReady,
  redactRedisUrl,
  type RedisClient,
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
