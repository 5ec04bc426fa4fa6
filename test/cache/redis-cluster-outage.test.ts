import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRedisCluster, type RedisClusterProcess } from "../helpers/redis-cluster.js";
import { redisBackend, type CacheBackend } from "./behaviour.js";
import { eventually, startUpstream, type Upstream } from "./upstream.js";

describe("the token cache on a Redis Cluster that loses a node", () => {
  let upstream: Upstream;
  let cluster: RedisClusterProcess;
  let backend: CacheBackend;

  beforeAll(async () => {
    [upstream, cluster] = await Promise.all([startUpstream(), startRedisCluster(3)]);
    backend = redisBackend({ mode: "cluster", nodes: cluster.hosts }, () => cluster.nodeClients());
  });

  afterAll(async () => {
    await backend?.stop();
    await cluster?.stop();
    await upstream?.close();
  });

  it("keeps answering from ACS while the user's node is down, and caches again once it is back", async () => {
    const a = await backend.instance(upstream);
    const user = await upstream.createUser();
    const key = upstream.key(user, ["chat"], 60);
    await a.getOrMint(key, upstream.mint(key));
    // On a busy machine a write can outlast the 250 ms command timeout (then the next lookup
    // mints again, correctly): the entry is cached once a write lands.
    await eventually(
      async () => (await a.getOrMint(key, upstream.mint(key))).cached,
      "the entry to be cached",
    );

    const epochKey = backend.keys!(upstream).epoch(user);
    // The primary that holds the user's slot (the others answer MOVED).
    let owner = cluster.nodes[0]!;
    for (const node of cluster.nodes) {
      try {
        await node.client().exists(epochKey);
        owner = node;
        break;
      } catch {
        // MOVED: not this one
      }
    }
    await owner.kill();
    const before = upstream.issued();
    for (let i = 0; i < 8; i++) {
      expect((await a.getOrMint(key, upstream.mint(key))).cached).toBe(false);
    }
    expect(upstream.issued() - before).toBe(8);

    await owner.restart();
    await eventually(
      async () => (await a.getOrMint(key, upstream.mint(key))).cached,
      "caching to resume after the node came back",
    );
  });
});
