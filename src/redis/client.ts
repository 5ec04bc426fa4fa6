import { Cluster, Redis, type ClusterOptions, type RedisOptions } from "ioredis";
import calculateSlot from "cluster-key-slot";
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
/** A Redis Cluster's slot map is asked for again this often (see createRedisClient). */
const SLOTS_REFRESH_MS = 2000;
/** Longest pause between reconnection attempts. */
const MAX_RECONNECT_DELAY_MS = 1000;
/** Shown in logs and as the Redis CLIENT name. */
const CONNECTION_NAME = "acsgw";

/**
 * `redis://user:secret@host:6379/0` -> `redis://user:***@host:6379/0`: never log a password.
 * ioredis also takes any option from the query (`?password=`, `?sentinelPassword=`), so every
 * query value is masked too; the names stay, to tell which options were given.
 */
export function redactRedisUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) {
      parsed.password = "***";
    }
    for (const name of new Set(parsed.searchParams.keys())) {
      parsed.searchParams.set(name, "***");
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
      // Ask for the slot map every 2 s. ioredis otherwise asks only when a node says MOVED or
      // closes its connection, and a primary that hangs (SIGSTOP, a frozen VM) does neither: after
      // its replica took over, every command of its slots would time out against it until it came
      // back. A CLUSTER SLOTS every 2 s per connection costs Redis next to nothing.
      slotsRefreshInterval: SLOTS_REFRESH_MS,
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
 * throughput; the p99 went from 1.29x the bare ceiling's to 0.86x (docs/performance.md; the pause
 * table of BENCHMARKS.md). Writing each command alone (no batching) costs a system call per
 * command: a third of the hit's throughput.
 *
 * So: the connection's socket is corked on the turn's first command and uncorked by
 * `setImmediate`, after this turn's I/O callbacks (when auto-pipelining flushed too); Node then
 * writes what was buffered in one writev. Pipelines and MULTI still write through `sendCommand`,
 * so they are batched the same way. A command's order on its connection is unchanged.
 *
 * Why a patch of `sendCommand`, which ioredis does not document (`@ignore` in its source), and not
 * a public option: ioredis 5.11.1 offers no hook that runs before a command is written.
 * `enableAutoPipelining` is its only batching, with the wait above (`autoPipeliningIgnoredCommands`
 * only exempts commands from it); its `ioredis:command` diagnostics channel (which `traceRedis`
 * uses) publishes a command after writing it and does not name the connection: too late to cork.
 * What the patch relies on is pinned by test/redis/coalesce-writes.test.ts against the installed
 * ioredis (5.11.1; an upgrade fails it until it is checked and the pin moved): every command of a
 * connection (single, `call`, scripts, pipelines, MULTI; a Cluster's on each node's connection) is
 * written to `redis.stream` synchronously inside the `sendCommand` ioredis looks up on that
 * connection; with the patch a turn's commands leave in one write and a later turn's are written
 * while earlier answers are outstanding; and auto-pipelining still holds that later turn back.
 * The patch is an own property: it hides `Redis.prototype.sendCommand` from a spy on the prototype.
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

/**
 * How long a revoke waits for a replica to acknowledge its writes (Redis `WAIT`). Redis checks
 * WAIT's deadline on its own timer (every 100 ms at the default `hz 10`), so the answer can come
 * up to about 100 ms later than this; the revoke connection's command timeout leaves room for it,
 * and a replica that lags or is cut off turns the revoke into REVOCATION_UNCONFIRMED (as an outage
 * does) rather than a timeout of the whole call.
 */
export const REPLICA_ACK_TIMEOUT_MS = 100;
/** The revoke connection's command timeout: the invalidation script, then WAIT (above). */
export const REVOKE_COMMAND_TIMEOUT_MS = 1000;

/**
 * A connection of its own for revokes and deletes, to the same Redis (or Cluster) as `client`.
 * `WAIT` blocks the connection it is sent on until a replica answers or its timeout ends: on the
 * connection every request shares, one revoke during replica lag would hold every cache read of
 * the process behind it (each then timing out, and the breaker opening for everyone). Here it
 * holds only revokes. The caller closes it.
 */
export function createRevokeConnection(client: RedisClient, logger: Logger): RedisClient {
  const revoke =
    client instanceof Cluster
      ? client.duplicate(undefined, {
          redisOptions: {
            ...client.options.redisOptions,
            commandTimeout: REVOKE_COMMAND_TIMEOUT_MS,
          },
        })
      : client.duplicate({ commandTimeout: REVOKE_COMMAND_TIMEOUT_MS });
  // The shared client's listeners log outages; this one only must not throw on "error".
  revoke.on("error", (error: Error) =>
    logger.debug({ err: { message: error.message } }, "redis revoke connection error"),
  );
  return revoke;
}

/** A write that a topology with replicas did not replicate in time. */
export class ReplicaAckError extends Error {
  override readonly name = "ReplicaAckError";
}

/**
 * Waits until a replica acknowledged every write this client sent so far to the node that holds
 * `key`, where that node has replicas; resolves at once where it has none. Throws ReplicaAckError
 * when no replica acknowledged within REPLICA_ACK_TIMEOUT_MS.
 *
 * Why: Redis replicates asynchronously, and a failover promotes a replica that may not have the
 * latest writes. A revoke's epoch bump and tombstone that only the old primary held would be lost
 * with it, and the pre-revoke token served again by every instance (docs/caching.md, "Redis
 * topologies and failures"). `WAIT` applies to the writes of the connection it is sent on, so it
 * goes to the same node connection the cluster routed the write through.
 *
 * Which replicas count: in a Cluster, those the cluster's slot map lists for the key's slot (a
 * replica whose replication link is down is still listed, and then fails this check, which is the
 * point); behind a single endpoint, those connected to the primary now (`ROLE`).
 */
export async function awaitReplicaAck(client: RedisClient, key: string): Promise<void> {
  let node: Redis | undefined;
  if (client instanceof Cluster) {
    const owners = client.slots[calculateSlot(key)];
    if (!owners || owners.length < 2) {
      return;
    }
    node = client.nodes("master").find((n) => `${n.options.host}:${n.options.port}` === owners[0]);
    if (!node) {
      throw new ReplicaAckError("the primary of the key's slot is not connected");
    }
  } else {
    node = client;
    const role = (await node.call("ROLE")) as [string, unknown, unknown[]?];
    if (role[0] !== "master" || !Array.isArray(role[2]) || role[2].length === 0) {
      return;
    }
  }
  const acknowledged = (await node.wait(1, REPLICA_ACK_TIMEOUT_MS)) as number;
  if (acknowledged < 1) {
    throw new ReplicaAckError(
      `no replica acknowledged the write within ${REPLICA_ACK_TIMEOUT_MS} ms`,
    );
  }
}

/**
 * Calls `listener` when a Redis Cluster's topology changes under this client in a way that may
 * have lost writes: a node connection that was ready closes (a primary died or became
 * unreachable), or the slot map names another primary for a slot than before (a failover,
 * including one that left the old primary running). ioredis's Cluster emits no `close` of its own
 * for one node. A single-endpoint client's own `close` says the same, and is not handled here.
 * @returns the unsubscribe function
 */
export function onTopologyChange(client: RedisClient, listener: (why: string) => void): () => void {
  if (!(client instanceof Cluster)) {
    return () => {};
  }
  const watched = new Map<Redis, () => void>();
  const watch = (node: Redis) => {
    let wasReady = node.status === "ready";
    const onReady = () => (wasReady = true);
    const onClose = () => {
      if (wasReady) {
        wasReady = false;
        listener(`lost the connection to ${node.options.host}:${node.options.port}`);
      }
    };
    node.on("ready", onReady);
    node.on("close", onClose);
    watched.set(node, () => {
      node.off("ready", onReady);
      node.off("close", onClose);
    });
  };
  const unwatch = (node: Redis) => {
    watched.get(node)?.();
    watched.delete(node);
  };
  /** The primary of each slot range, as one string: changes when any slot's primary does. */
  const primaries = () => {
    let text = "";
    let last: string | undefined;
    client.slots.forEach((owners, slot) => {
      if (owners?.[0] !== last) {
        last = owners?.[0];
        text += `${slot}:${last};`;
      }
    });
    return text;
  };
  let known = primaries();
  const onRefresh = () => {
    const now = primaries();
    if (known !== "" && now !== known) {
      listener("the cluster's slot map names other primaries");
    }
    known = now;
  };
  client.nodes("all").forEach(watch);
  client.on("+node", watch);
  client.on("-node", unwatch);
  client.on("refresh", onRefresh);
  return () => {
    client.off("+node", watch);
    client.off("-node", unwatch);
    client.off("refresh", onRefresh);
    [...watched.keys()].forEach(unwatch);
  };
}
