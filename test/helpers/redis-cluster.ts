import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { type Redis } from "ioredis";
import { startRedis, type RedisProcess } from "./redis.js";

const run = promisify(execFile);

/**
 * A three-node Redis Cluster (three primaries, no replicas) of real redis-server processes on free
 * loopback ports, each with its own data dir and cluster-config-file; owned by one test file.
 */
export interface RedisClusterProcess {
  nodes: RedisProcess[];
  /** For `Config["redis"]` in cluster mode. */
  hosts: { host: string; port: number }[];
  /** A plain client per node for assertions (SCAN every primary). */
  nodeClients(): Redis[];
  stop(): Promise<void>;
}

async function waitForClusterOk(nodes: RedisProcess[], deadline: number): Promise<void> {
  for (;;) {
    const states = await Promise.all(
      nodes.map(async (node) => {
        try {
          const info = await node.client().cluster("INFO");
          return (
            /cluster_state:ok/.test(String(info)) &&
            /cluster_slots_assigned:16384/.test(String(info))
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

export async function startRedisCluster(size = 3): Promise<RedisClusterProcess> {
  const nodes: RedisProcess[] = [];
  try {
    for (let i = 0; i < size; i++) {
      // cluster-config-file is relative to --dir, which startRedis makes per node.
      nodes.push(
        await startRedis({
          args: [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
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
        "0",
        "--cluster-yes",
      ],
      { timeout: 30_000 },
    );
    await waitForClusterOk(nodes, Date.now() + 20_000);
  } catch (error) {
    await Promise.all(nodes.map((n) => n.stop()));
    throw error;
  }
  return {
    nodes,
    hosts: nodes.map((n) => ({ host: "127.0.0.1", port: n.port })),
    nodeClients: () => nodes.map((n) => n.client()),
    async stop() {
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
}
