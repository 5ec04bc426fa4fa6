import { z } from "zod";
import type { Config } from "../config.js";
import type { Decisions } from "./decisions.js";
import { BASE64, int, required, settings, unset } from "./fields.js";
import { url } from "./url.js";

const keyPrefix = {
  REDIS_KEY_PREFIX: z
    .string()
    .max(64)
    .regex(/^[\w.:-]*$/, "may hold letters, digits and . : _ - only")
    .default("acsgw:"),
};

/** `host:port,host:port`: a Redis Cluster's seed nodes. */
const clusterNodes = z.string().transform((value, ctx) => {
  const nodes: { host: string; port: number }[] = [];
  for (const item of value.split(",").map((s) => s.trim())) {
    const match = /^(.+):(\d{1,5})$/.exec(item);
    const port = match ? Number(match[2]) : NaN;
    if (!match || port < 1 || port > 65535) {
      ctx.addIssue(`"${item}" is not host:port`);
    } else {
      nodes.push({ host: match[1]!, port });
    }
  }
  return nodes;
});

type Redis = Pick<Config, "redis" | "redisKeyPrefix">;

/** Redis, shared by the token cache and the rate limits: a cache, never durable data. */
export const redis = (d: Decisions) =>
  ({
    memory: settings(keyPrefix).transform((s): Redis => ({
      redis: { mode: "memory" },
      redisKeyPrefix: s.REDIS_KEY_PREFIX,
    })),
    single: settings({
      ...keyPrefix,
      REDIS_URL: url({ protocols: ["redis", "rediss"] }),
      REDIS_CLUSTER_NODES: unset("set it (a Redis Cluster) or REDIS_URL (one Redis), not both"),
    }).transform((s): Redis => ({
      redis: { mode: "single", url: s.REDIS_URL },
      redisKeyPrefix: s.REDIS_KEY_PREFIX,
    })),
    cluster: settings({ ...keyPrefix, REDIS_CLUSTER_NODES: clusterNodes }).transform(
      (s): Redis => ({
        redis: { mode: "cluster", nodes: s.REDIS_CLUSTER_NODES },
        redisKeyPrefix: s.REDIS_KEY_PREFIX,
      }),
    ),
  })[d.redis];

const encryptionKey = z
  .string()
  .refine(
    (key) => BASE64.test(key) && Buffer.from(key, "base64").length === 32,
    "must be base64 of exactly 32 bytes",
  )
  .transform((key) => Buffer.from(key, "base64"));

/** The token cache: how tokens are sealed, how long they are served, how many are kept. */
export const tokenCache = (d: Decisions) =>
  settings({
    // Unset, the key is derived from the ACS access key. With Entra ID there is none, and the
    // tokens in Redis must be sealed with a key every instance shares: it must be given.
    TOKEN_CACHE_ENCRYPTION_KEY:
      d.upstream === "entra" && d.redis !== "memory"
        ? required(
            "required with ACS_ENDPOINT and Redis (without an access key there is nothing to derive it from)",
            encryptionKey,
          )
        : encryptionKey.optional(),
    TOKEN_MIN_REMAINING_MINUTES: z.coerce
      .number({ message: "must be a number" })
      .gt(10, "must be above 10 (the ACS SDKs refresh 10 minutes before expiry)")
      .lt(1440, "must be below 1440 (the longest token lifetime)")
      .default(15),
    MEMORY_CACHE_MAX_ENTRIES: int(10_000, 1, 10_000_000),
  }).transform(
    (
      s,
    ): Pick<
      Config,
      "tokenCacheEncryptionKey" | "tokenMinRemainingMinutes" | "memoryCacheMaxEntries"
    > => ({
      tokenCacheEncryptionKey: s.TOKEN_CACHE_ENCRYPTION_KEY,
      tokenMinRemainingMinutes: s.TOKEN_MIN_REMAINING_MINUTES,
      memoryCacheMaxEntries: s.MEMORY_CACHE_MAX_ENTRIES,
    }),
  );

/** PostgreSQL for the gateway's durable data: the self-service mappings and the directory. */
export const database = settings({
  // Its problems never quote the value: it may hold a password.
  DATABASE_URL: url({ protocols: ["postgres", "postgresql"] }).optional(),
}).transform((s): Pick<Config, "databaseUrl"> => ({ databaseUrl: s.DATABASE_URL }));
