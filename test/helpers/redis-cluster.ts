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
  const nodes: RedisProcess[] = [];
  try {
    for (let i = 0; i < size * (1 + replicas); i++) {
      // cluster-config-file is relative to --dir, which startRedis makes per node.
      nodes.push(
        await startRedis({
          args: [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            String(options.nodeTimeoutMs ?? 2000),
          ],
        }),
      );
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
