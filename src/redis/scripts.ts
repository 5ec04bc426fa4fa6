import { createHash } from "node:crypto";
import type { RedisClient } from "./client.js";

/** A Lua script and its SHA-1, so hot paths send EVALSHA (40 bytes) instead of the whole script. */
export interface RedisScript {
  lua: string;
  sha: string;
}

export function redisScript(lua: string): RedisScript {
  return { lua, sha: createHash("sha1").update(lua).digest("hex") };
}

/** ioredis has the *Buffer variants of every command, but its typings omit these two. */
interface BufferScripts {
  evalshaBuffer(...args: (string | Buffer | number)[]): Promise<unknown>;
  evalBuffer(...args: (string | Buffer | number)[]): Promise<unknown>;
}

/**
 * EVALSHA, falling back to EVAL when the server does not know the script yet (a new or restarted
 * node, or a Cluster node seeing the script for the first time); EVAL also loads it for next time.
 * Every key the script touches must be in `keys` (Cluster routes by them).
 */
export async function runScript(
  redis: RedisClient,
  script: RedisScript,
  keys: readonly string[],
  args: readonly (string | Buffer | number)[],
  /** "buffer": bulk replies as Buffers (binary values); integers stay numbers. */
  reply: "string" | "buffer" = "string",
): Promise<unknown> {
  try {
    return reply === "buffer"
      ? await (redis as unknown as BufferScripts).evalshaBuffer(
          script.sha,
          keys.length,
          ...keys,
          ...args,
        )
      : await redis.evalsha(script.sha, keys.length, ...keys, ...args);
  } catch (error) {
    if (error instanceof Error && error.message.startsWith("NOSCRIPT")) {
      return reply === "buffer"
        ? (redis as unknown as BufferScripts).evalBuffer(script.lua, keys.length, ...keys, ...args)
        : redis.eval(script.lua, keys.length, ...keys, ...args);
    }
    throw error;
  }
}
