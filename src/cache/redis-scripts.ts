/** @deprecated Moved to `src/redis/scripts.ts`; import from `../redis/index.js`. */
export { redisScript, runScript, type RedisScript } from "../redis/scripts.js";
