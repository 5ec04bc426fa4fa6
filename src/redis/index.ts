export {
  awaitReplicaAck,
  COMMAND_TIMEOUT_MS,
  createRedisClient,
  createRevokeConnection,
  isClientReady,
  onTopologyChange,
  redactRedisUrl,
  REPLICA_ACK_TIMEOUT_MS,
  ReplicaAckError,
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
