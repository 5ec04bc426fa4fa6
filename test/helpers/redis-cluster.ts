import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { type Redis } from "ioredis";
import { startRedis, type RedisProcess } from "./redis.js";

const run = promisify(execFile);

/**
 * A Redis Cluster of real redis-server processes on free loopback ports (three primaries, with
 * `replicas` replicas each), each with its own data dir and cluster-config-file; owned by one
 * test file.
 */
export interface RedisClusterProcess {
  nodes: RedisProcess[];
  /** For `Config["redis"]` in cluster mode. */
  hosts: { host: string; port: number }[];
  /** A plain client per node for assertions (SCAN every primary). */
  nodeClients(): Redis[];
  /** The node serving `key`'s slot as primary now, and its replicas (asked of the cluster). */
  ownersOf(key: string): Promise<{ primary: RedisProcess; replicas: RedisProcess[] }>;
  stop(): Promise<void>;
}

export interface RedisClusterOptions {
  /** Replicas per primary. @default 0 */
  replicas?: number;
  /**
   * cluster-node-timeout: how long a node may be silent before the others count it as failing.
   * @default 2000
   */
  nodeTimeoutMs?: number;
}

async function waitForClusterOk(
  nodes: RedisProcess[],
  replicas: number,
  deadline: number,
): Promise<void> {
  for (;;) {
    const states = await Promise.all(
      nodes.map(async (node) => {
        try {
          const info = await node.client().cluster("INFO");
          // Every node also lists every primary's replicas (they join after the slots are set).
          const slots = await node.client().cluster("SLOTS");
          return (
            /cluster_state:ok/.test(String(info)) &&
            /cluster_slots_assigned:16384/.test(String(info)) &&
            slots.every((range) => range.length - 3 >= replicas)
          );
        } catch {
          return false;
        }
      }),
    );
    if (states.every(Boolean)) {
      return;
    }
    if (Date.now() > deadline) {
      throw new Error("the test Redis Cluster did not reach cluster_state:ok");
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function startRedisCluster(
  size = 3,
  options: RedisClusterOptions = {},
): Promise<RedisClusterProcess> {
  const replicas = options.replicas ?? 0;
  const nodeTimeoutMs = options.nodeTimeoutMs ?? 2000;
  /**
   * The settings the cluster forms with (`forming`), then has (CONFIG SET) once formed: the node
   * timeout the test asked for, Redis's defaults for the others. A replica is listed in CLUSTER
   * SLOTS only once the other nodes heard from it a replication offset above zero, and with the
   * final settings that took 10 to 15 s: its primary waits 5 s before a diskless sync, pings its
   * replicas every 10 s, and with a 60 s node timeout the nodes gossip about once a second.
   * Formed with these, it takes 2 to 4 s. (A node `restart()`ed later gets the forming ones.)
   */
  const settings = (forming: boolean): string[] => [
    "cluster-node-timeout",
    String(forming ? Math.min(nodeTimeoutMs, 2000) : nodeTimeoutMs),
    ...(replicas > 0
      ? [
          "repl-diskless-sync-delay",
          forming ? "0" : "5",
          "repl-ping-replica-period",
          forming ? "1" : "10",
        ]
      : []),
  ];
  const nodes: RedisProcess[] = [];
  try {
    // All nodes at once: each start is a spawn and a wait for PING, mostly waiting.
    const started = await Promise.allSettled(
      Array.from({ length: size * (1 + replicas) }, () =>
        // cluster-config-file is relative to --dir, which startRedis makes per node.
        startRedis({
          args: [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            ...settings(true).map((word, i) => (i % 2 === 0 ? `--${word}` : word)),
          ],
        }),
      ),
    );
    for (const result of started) {
      if (result.status === "fulfilled") {
        nodes.push(result.value);
      }
    }
    const failed = started.find((result) => result.status === "rejected");
    if (failed) {
      throw failed.reason;
    }
    await run(
      "redis-cli",
      [
        "--cluster",
        "create",
        ...nodes.map((n) => `127.0.0.1:${n.port}`),
        "--cluster-replicas",
        String(replicas),
        "--cluster-yes",
      ],
      { timeout: 30_000 },
    );
    await waitForClusterOk(nodes, replicas, Date.now() + 30_000);
    const formed = settings(false);
    await Promise.all(
      nodes.flatMap((node) =>
        // One setting per CONFIG SET: several at once needs Redis 7.
        formed.flatMap((name, i) =>
          i % 2 === 0 ? [node.client().config("SET", name, formed[i + 1]!)] : [],
        ),
      ),
    );
  } catch (error) {
    await Promise.all(nodes.map((n) => n.stop()));
    throw error;
  }
  return {
    nodes,
    hosts: nodes.map((n) => ({ host: "127.0.0.1", port: n.port })),
    nodeClients: () => nodes.map((n) => n.client()),
    async ownersOf(key) {
      const byPort = (port: number) => nodes.find((n) => n.port === port)!;
      for (const node of nodes) {
        try {
          const slot = (await node.client().cluster("KEYSLOT", key)) as number;
          const ranges = await node.client().cluster("SLOTS");
          const range = ranges.find(([from, to]) => slot >= from && slot <= to)!;
          const [, , ...owners] = range;
          return {
            primary: byPort(owners[0]![1]),
            replicas: owners.slice(1).map((owner) => byPort(owner[1])),
          };
        } catch {
          // a stopped or dead node: ask the next
        }
      }
      throw new Error("no node of the cluster answered");
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
}
