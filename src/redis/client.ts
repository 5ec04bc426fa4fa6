import { Cluster, Redis, type ClusterOptions, type RedisOptions } from "ioredis";
import type { Config } from "../config.js";
import type { Logger } from "../logger.js";

/** One connection (or cluster client) shared by the token cache, the mapping store and the rate limiter. */
export type RedisClient = Redis | Cluster;

export type RedisConnectionConfig = Exclude<Config["redis"], { mode: "memory" }>;

/**
 * Every command fails after this long: a slow Redis must cost a request at most this, then the
 * request carries on without the cache (and a revoke answers unconfirmed).
 */
export const COMMAND_TIMEOUT_MS = 250;
const CONNECT_TIMEOUT_MS = 1000;
/** Longest pause between reconnection attempts. */
const MAX_RECONNECT_DELAY_MS = 1000;
/** Shown in logs and as the Redis CLIENT name. */
const CONNECTION_NAME = "acsgw";

/** `redis://user:secret@host:6379/0` -> `redis://user:***@host:6379/0`: never log a password. */
export function redactRedisUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) {
      parsed.password = "***";
    }
    return parsed.toString();
  } catch {
    return "(unparseable url)";
  }
}

/**
 * Fail fast rather than queue: no offline queue (a command while disconnected fails at once), no
 * per-request retries (the caller falls back to ACS instead), a short command timeout, and
 * reconnection forever with a capped backoff so caching resumes by itself when Redis returns.
 */
export function createRedisClient(
  config: RedisConnectionConfig,
  logger: Logger,
  options: {
    /**
     * Longest wait for one command's answer (it includes this process's own event-loop lag).
     * @default COMMAND_TIMEOUT_MS
     */
    commandTimeoutMs?: number;
  } = {},
): RedisClient {
  const backoff = (times: number) =>
    Math.min(50 * 2 ** Math.min(times, 10), MAX_RECONNECT_DELAY_MS);

  const common: RedisOptions = {
    commandTimeout: options.commandTimeoutMs ?? COMMAND_TIMEOUT_MS,
    connectTimeout: CONNECT_TIMEOUT_MS,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    enableReadyCheck: true,
    connectionName: CONNECTION_NAME,
    // Off: see coalesceWrites below, which batches writes without holding commands back.
    enableAutoPipelining: false,
    retryStrategy: backoff,
    // A READONLY error after a failover: reconnect to find the new primary.
    reconnectOnError: (error) => error.message.startsWith("READONLY"),
  };

  let client: RedisClient;
  let target: string;
  if (config.mode === "single") {
    client = new Redis(config.url, common);
    coalesceWrites(client);
    target = redactRedisUrl(config.url);
  } else {
    const clusterOptions: ClusterOptions = {
      redisOptions: common,
      enableOfflineQueue: false,
      enableReadyCheck: true,
      enableAutoPipelining: false,
      clusterRetryStrategy: backoff,
      // Redirections and cluster-down retries add latency; keep them short (bounded latency).
      maxRedirections: 6,
      retryDelayOnFailover: 50,
      retryDelayOnClusterDown: 50,
      retryDelayOnTryAgain: 50,
      slotsRefreshTimeout: 1000,
      scaleReads: "master",
    };
    const cluster = new Cluster(config.nodes, clusterOptions);
    // The Cluster routes each command to its node's own connection: coalesce on each of those.
    // Nodes are connected only after the constructor's asynchronous start, so none is missed.
    cluster.on("+node", coalesceWrites);
    client = cluster;
    target = config.nodes.map((n) => `${n.host}:${n.port}`).join(",");
  }

  // One warning per outage, not one per reconnection attempt.
  let quietErrors = false;
  client.on("ready", () => {
    quietErrors = false;
    logger.info({ redis: target, mode: config.mode }, "redis connection ready");
  });
  client.on("error", (error: Error) => {
    const detail = {
      redis: target,
      err: { message: error.message, code: (error as { code?: string }).code },
    };
    if (quietErrors) {
      logger.debug(detail, "redis error");
    } else {
      quietErrors = true;
      logger.warn(
        detail,
        "redis error: the gateway carries on without the cache until it recovers",
      );
    }
  });
  client.on("close", () => logger.debug({ redis: target }, "redis connection closed"));
  client.on("reconnecting", (delay: unknown) =>
    logger.debug({ redis: target, delayMs: delay }, "redis reconnecting"),
  );
  client.on("end", () => logger.info({ redis: target }, "redis connection ended"));
  return client;
}

/**
 * Commands sent in one event-loop turn leave in one write (writev), and each is written at once in
 * its turn, whatever is still awaiting a reply.
 *
 * Why not ioredis's `enableAutoPipelining`, which also batches a turn's commands into one write:
 * it lets only one such pipeline per node be in flight (`executeAutoPipeline` returns while
 * `_runningAutoPipelines` holds the node), so under load every command issued while a batch awaits
 * its reply is written only when that reply arrives: up to two round trips instead of one
 * (redis/ioredis#1608 describes the same head-of-line wait). On the cache-hit path at 50
 * connections the held-back commands and the requests awaiting them lived across young-generation
 * collections, were promoted, and drove a full mark-compact about every 0.7 s, whose pauses made
 * the hit's p99: 30 mark-compacts in 20 s of load before this change, 4 after, at the same
 * throughput; the p99 went from 1.29x the bare ceiling's to 0.86x (README, Performance; the pause
 * table of BENCHMARKS.md). Writing each command alone (no batching) costs a system call per
 * command: a third of the hit's throughput.
 *
 * So: the connection's socket is corked on the turn's first command and uncorked by
 * `setImmediate`, after this turn's I/O callbacks (when auto-pipelining flushed too); Node then
 * writes what was buffered in one writev. Pipelines and MULTI still write through `sendCommand`,
 * so they are batched the same way. A command's order on its connection is unchanged.
 */
function coalesceWrites(redis: Redis): void {
  const send = redis.sendCommand.bind(redis);
  let corked: Redis["stream"] | undefined;
  const flush = () => {
    const stream = corked;
    corked = undefined;
    stream?.uncork();
  };
  redis.sendCommand = (command, stream) => {
    // The stream of this connection (a reconnect replaces it); `stream` is a pipeline's collector.
    const socket = redis.stream as Redis["stream"] | undefined;
    if (corked === undefined && socket !== undefined && socket.writable) {
      corked = socket;
      socket.cork();
      setImmediate(flush);
    }
    return send(command, stream);
  };
}

/** Is the client connected and ready for commands (no command sent)? */
export function isClientReady(client: RedisClient): boolean {
  return client.status === "ready";
}
