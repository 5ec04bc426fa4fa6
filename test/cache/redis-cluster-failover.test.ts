import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Emulator } from "@acs-identity-gateway/emulator";
import type { App } from "../../src/app.js";
import { createLogger } from "../../src/logger.js";
import { hashTag } from "../../src/redis/keys.js";
import { startTestEmulator } from "../helpers/emulator.js";
import {
  CREATE,
  DELETE,
  ISSUE,
  REVOKE,
  ok,
  run,
  startGateway,
  upstreamAttempts,
} from "../helpers/gateway.js";
import { startRedisCluster, type RedisClusterProcess } from "../helpers/redis-cluster.js";
import { startRedis, type RedisProcess } from "../helpers/redis.js";
import { eventually } from "./upstream.js";

/** Users created on `app` until two live on the same primary (one third of users per primary). */
async function twoUsersOnOnePrimary(
  app: App,
  cluster: RedisClusterProcess,
): Promise<{
  revoked: string;
  deleted: string;
  primary: RedisProcess;
  replica: RedisProcess;
}> {
  const first = (await ok<{ createUser: { id: string } }>(app, CREATE)).createUser.id;
  const owners = await cluster.ownersOf(`probe${hashTag(first)}`);
  for (let i = 0; i < 50; i++) {
    const other = (await ok<{ createUser: { id: string } }>(app, CREATE)).createUser.id;
    if ((await cluster.ownersOf(`probe${hashTag(other)}`)).primary === owners.primary) {
      return {
        revoked: first,
        deleted: other,
        primary: owners.primary,
        replica: owners.replicas[0]!,
      };
    }
  }
  throw new Error("no second user on the first user's primary");
}

/** An emulator, a 3-primary/3-replica Cluster and two gateways on it; `bOptions` for the second. */
async function clusterWithTwoGateways(
  bOptions?: Parameters<typeof startGateway>[1],
): Promise<{ emulator: Emulator; cluster: RedisClusterProcess; a: App; b: App }> {
  const [emulator, cluster] = await Promise.all([
    startTestEmulator(),
    // A long node timeout: the test, not the cluster's own failure detection, decides when the
    // replica takes over (CLUSTER FAILOVER TAKEOVER), however slow the machine is.
    startRedisCluster(3, { replicas: 1, nodeTimeoutMs: 60_000 }),
  ]);
  const env = {
    COMMUNICATION_SERVICES_CONNECTION_STRING: emulator.connectionString,
    REDIS_CLUSTER_NODES: cluster.hosts.map((h) => `${h.host}:${h.port}`).join(","),
  };
  const a = await startGateway(env);
  const b = await startGateway(env, bOptions);
  return { emulator, cluster, a, b };
}

/** The token `app` answers for `userId` (VOIP): from the cache once one is there. */
const cachedToken = async (app: App, userId: string) =>
  (await ok<{ issueToken: { token: string } }>(app, ISSUE, { userId, scopes: ["VOIP"] })).issueToken
    .token;

/**
 * The replication link breaks (the replica frozen, the primary dropping its connection), then
 * `app` revokes one user and deletes the other: the cache's writes land on the primary alone, no
 * replica acknowledged them, so neither may be answered as confirmed.
 */
async function revokeAndDeleteOnPrimaryAlone(
  app: App,
  { revoked, deleted, primary, replica }: Awaited<ReturnType<typeof twoUsersOnOnePrimary>>,
): Promise<void> {
  await replica.pause();
  await primary.client().client("KILL", "TYPE", "replica");
  const revoke = await run(app, REVOKE, { userId: revoked });
  expect(revoke.errors?.[0]?.extensions?.code).toBe("REVOCATION_UNCONFIRMED");
  const del = await run(app, DELETE, { userId: deleted });
  expect(del.errors?.[0]?.extensions?.code).toBe("REVOCATION_UNCONFIRMED");
}

/** The primary dies; its replica, which never saw what was written since the link broke, takes over. */
async function failOver(primary: RedisProcess, replica: RedisProcess): Promise<void> {
  await primary.kill();
  await replica.resume();
  await replica.client().cluster("FAILOVER", "TAKEOVER");
  await expect
    .poll(async () => (await replica.client().call("ROLE")) as string[], { timeout: 30_000 })
    .toContain("master");
}

/**
 * Each of `apps`, 20 rounds: the revoked user gets a fresh token (or, while the cluster settles, an
 * error that is not a stale token), the deleted one NOT_FOUND; never what was cached before.
 */
async function expectNeverStale(
  apps: App[],
  users: { revoked: string; deleted: string },
  stale: { revoked: string; deleted: string },
): Promise<void> {
  let served = 0;
  for (let round = 0; round < 20; round++) {
    for (const app of apps) {
      const afterRevoke = await run<{ issueToken: { token: string } }>(app, ISSUE, {
        userId: users.revoked,
        scopes: ["VOIP"],
      });
      if (afterRevoke.data?.issueToken) {
        expect(afterRevoke.data.issueToken.token).not.toBe(stale.revoked);
        served++;
      } else {
        // The cluster may still be settling: an unavailable cache is not a stale token.
        expect(afterRevoke.errors?.[0]?.extensions?.code).not.toBe("INTERNAL_SERVER_ERROR");
      }
      const afterDelete = await run<{ issueToken: { token: string } }>(app, ISSUE, {
        userId: users.deleted,
        scopes: ["VOIP"],
      });
      expect(afterDelete.data?.issueToken?.token).not.toBe(stale.deleted);
      expect(afterDelete.errors?.[0]?.extensions?.code).toBe("NOT_FOUND");
    }
  }
  expect(served).toBeGreaterThan(0);
}

/**
 * A confirmed revoke or delete survives a Redis Cluster failover to a replica that missed it
 * (docs/caching.md, "Redis topologies and failures"). Two gateways on three primaries with one
 * replica each. The replica of the users' primary is cut off (paused, and its replication link
 * dropped by the primary), so what is written next reaches the primary alone; the primary then
 * dies and the stale replica takes over. Neither gateway may serve a token cached before the
 * revoke, nor the deleted identity's token, and the revoke must not be answered as confirmed
 * while no replica had it.
 */
describe("Redis Cluster failover to a replica that missed a revoke", () => {
  let emulator: Emulator;
  let cluster: RedisClusterProcess;
  let a: App;
  let b: App;

  beforeAll(async () => {
    ({ emulator, cluster, a, b } = await clusterWithTwoGateways());
  }, 120_000);

  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await cluster?.stop();
    await emulator?.close();
  });

  it("serves neither the pre-revoke token nor the deleted identity's token afterwards, on either instance", async () => {
    const users = await twoUsersOnOnePrimary(a, cluster);
    const stale = {
      revoked: await cachedToken(a, users.revoked),
      deleted: await cachedToken(a, users.deleted),
    };
    // Both cached, and seen by the other instance too.
    expect(await cachedToken(b, users.revoked)).toBe(stale.revoked);
    expect(await cachedToken(b, users.deleted)).toBe(stale.deleted);

    await revokeAndDeleteOnPrimaryAlone(a, users);
    await failOver(users.primary, users.replica);
    // Both instances, many times.
    await expectNeverStale([a, b], users, stale);
  }, 120_000);
});

/**
 * The fence alone (`onTopologyChange`, src/redis/client.ts, wired in src/cache/outage-guard.ts).
 * In the case above the revoking instance's journal replays its unconfirmed revoke and delete into
 * the promoted replica, which would hide a missing fence. Here that instance is stopped before the
 * failover, so nothing replays them: the replica that takes over still holds the entries cached
 * before them, under the epochs from before. The other instance had those tokens cached, and its
 * Cluster client as a whole never closes (ioredis emits no `close` for one node): only the lost
 * node connection tells it that the data under it may be older than what it saw. Without the
 * fence it serves both tokens again from the promoted replica.
 */
describe("Redis Cluster failover after the revoking instance stopped: the other instance's fence", () => {
  let emulator: Emulator;
  let cluster: RedisClusterProcess;
  let a: App;
  let b: App;
  /** The other instance's log lines at warn and above (pino JSON). */
  const lines: { level: number; msg: string; why?: string }[] = [];

  beforeAll(async () => {
    ({ emulator, cluster, a, b } = await clusterWithTwoGateways({
      logger: createLogger(
        { level: "warn" },
        { write: (line: string) => void lines.push(JSON.parse(line) as (typeof lines)[number]) },
      ),
    }));
  }, 120_000);

  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await cluster?.stop();
    await emulator?.close();
  });

  /** How far a node's replication stream got: a primary's written offset, a replica's applied one. */
  const offset = async (node: RedisProcess, field: "master_repl_offset" | "slave_repl_offset") =>
    Number(new RegExp(`${field}:(\\d+)`).exec(await node.client().info("replication"))?.[1] ?? -1);

  /** The cache entries (not epochs, tombstones or locks) a node holds for `userId`. */
  const entriesOn = (node: RedisProcess, userId: string) =>
    node.client().keys(`*${hashTag(userId)}:t:*`);

  it("the instance that had the tokens cached serves neither once the replica that missed the revoke and the delete takes over, and says so at warn", async () => {
    const users = await twoUsersOnOnePrimary(a, cluster);
    const { revoked, deleted, primary, replica } = users;
    const stale = {
      revoked: await cachedToken(a, revoked),
      deleted: await cachedToken(a, deleted),
    };
    // The other instance has them from the cache too.
    expect(await cachedToken(b, revoked)).toBe(stale.revoked);
    expect(await cachedToken(b, deleted)).toBe(stale.deleted);
    // The replica has everything written so far: the entries are what it will serve from.
    const written = await offset(primary, "master_repl_offset");
    await expect
      .poll(() => offset(replica, "slave_repl_offset"), { timeout: 30_000 })
      .toBeGreaterThanOrEqual(written);

    await revokeAndDeleteOnPrimaryAlone(a, users);
    expect(await entriesOn(primary, revoked)).toEqual([]);

    // The revoking instance stops: its journal of both goes with it, nothing will replay them.
    await a.close();
    expect(lines.filter((line) => line.msg.includes("Redis Cluster changed"))).toEqual([]);

    await failOver(primary, replica);
    // What the failover lost: the entries from before the revoke and the delete are back.
    expect(await entriesOn(replica, revoked)).toHaveLength(1);
    expect(await entriesOn(replica, deleted)).toHaveLength(1);

    // The other instance, many times.
    await expectNeverStale([b], users, stale);

    // The fence said so at warn, first naming the node connection it lost. A line is written
    // each time the fence is set: the slot map naming the new primary sets it again if this
    // instance had already caught up (read the Redis time) after the lost connection, so one
    // failover writes one or two lines, and nothing else does.
    const fenced = lines.filter((line) => line.msg.includes("Redis Cluster changed"));
    expect(fenced[0]).toEqual({
      level: 40,
      time: expect.any(String),
      component: "cache",
      msg: "token cache: the Redis Cluster changed under this instance; tokens cached before now are not served from here",
      why: `lost the connection to 127.0.0.1:${primary.port}`,
    });
    expect(fenced.slice(1).map((line) => line.why)).toEqual(
      fenced.length > 1 ? ["the cluster's slot map names other primaries"] : [],
    );
  }, 120_000);
});

/**
 * A primary that stops answering without closing its connections (SIGSTOP, a frozen VM): no
 * command to it fails fast and none is redirected (MOVED comes only from a node that answers), so
 * only a slot map asked again of the others finds the replica that took over.
 */
describe("Redis Cluster failover away from a primary that hangs", () => {
  let emulator: Emulator;
  let cluster: RedisClusterProcess;
  let a: App;
  let b: App;

  beforeAll(async () => {
    ({ emulator, cluster, a, b } = await clusterWithTwoGateways());
  }, 120_000);

  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await cluster?.stop();
    await emulator?.close();
  });

  it("serves from the replica that took over: hits resume and a revoke is confirmed", async () => {
    const userId = (await ok<{ createUser: { id: string } }>(a, CREATE)).createUser.id;
    const { primary, replicas } = await cluster.ownersOf(`probe${hashTag(userId)}`);
    const replica = replicas[0]!;
    const before = await cachedToken(a, userId);
    expect(await cachedToken(b, userId)).toBe(before);

    await primary.pause();
    try {
      await replica.client().cluster("FAILOVER", "TAKEOVER");
      await expect
        .poll(async () => (await replica.client().call("ROLE")) as string[], { timeout: 30_000 })
        .toContain("master");
      // Each instance finds the new primary: a revoke is recorded (confirmed), and the token
      // minted after it is then served from the cache.
      for (const app of [a, b]) {
        await eventually(
          async () => !(await run(app, REVOKE, { userId })).errors,
          "a confirmed revoke",
          30_000,
        );
        let fresh: string | undefined;
        await eventually(
          async () => {
            fresh = await cachedToken(app, userId);
            const calls = await upstreamAttempts(app);
            return (
              (await cachedToken(app, userId)) === fresh && (await upstreamAttempts(app)) === calls
            );
          },
          "a token served from the cache again",
          30_000,
        );
        expect(fresh).not.toBe(before);
      }
    } finally {
      await primary.resume();
    }
  }, 120_000);
});

/**
 * Behind one endpoint (a primary with a replica, as Sentinel or a managed Redis runs it), a revoke
 * is confirmed only once the replica connected to the primary acknowledged it.
 */
describe("a single Redis endpoint whose primary has a replica", () => {
  let emulator: Emulator;
  let primary: RedisProcess;
  let replica: RedisProcess;
  let app: App;

  beforeAll(async () => {
    [emulator, primary] = await Promise.all([startTestEmulator(), startRedis()]);
    replica = await startRedis({ args: ["--replicaof", "127.0.0.1", String(primary.port)] });
    await eventually(
      async () =>
        ((await primary.client().call("ROLE")) as [string, number, unknown[]])[2].length === 1,
      "the replica to connect to its primary",
      30_000,
    );
    app = await startGateway({
      COMMUNICATION_SERVICES_CONNECTION_STRING: emulator.connectionString,
      REDIS_URL: primary.url,
    });
  }, 60_000);

  afterAll(async () => {
    await app?.close();
    await Promise.all([replica?.stop(), primary?.stop()]);
    await emulator?.close();
  });

  it("keeps serving other users' cached tokens while a revoke waits for a lagging replica, and after", async () => {
    const create = async () =>
      (await ok<{ createUser: { id: string } }>(app, CREATE)).createUser.id;
    const [revoked, other] = [await create(), await create()];
    const cached = async (userId: string) =>
      (await ok<{ issueToken: { token: string } }>(app, ISSUE, { userId, scopes: ["VOIP"] }))
        .issueToken.token;
    await cached(revoked);
    const otherToken = await cached(other);
    const callsBefore = await upstreamAttempts(app);

    await replica.pause();
    try {
      // The revoke waits for an acknowledgement that cannot come; the other user's requests,
      // sent meanwhile, must not wait behind it (nor fall back to ACS).
      const [revoke, during] = await Promise.all([
        run(app, REVOKE, { userId: revoked }),
        Promise.all(Array.from({ length: 20 }, () => cached(other))),
      ]);
      expect(revoke.errors?.[0]?.extensions?.code).toBe("REVOCATION_UNCONFIRMED");
      expect(new Set(during)).toEqual(new Set([otherToken]));
      // The revoked user is journaled until a replica takes it; nobody else is held back.
      for (let i = 0; i < 10; i++) {
        expect(await cached(other)).toBe(otherToken);
      }
      // One ACS call: the revoke. None for the other user's 30 requests.
      expect((await upstreamAttempts(app)) - callsBefore).toBe(1);
    } finally {
      await replica.resume();
    }
  });

  it("many revokes during a replica's lag, and their replays, leave the other users' reads on the cache", async () => {
    // Each revoke's WAIT holds the revoke connection up to WAIT's timeout, one after another: with
    // 20 of them (and the journal replaying all 20 every 500 ms) most time out there. That is the
    // revoke connection waiting, not Redis failing: no breaker for everyone's reads.
    const create = async () =>
      (await ok<{ createUser: { id: string } }>(app, CREATE)).createUser.id;
    const revoked = await Promise.all(Array.from({ length: 20 }, create));
    const other = await create();
    const cached = async (userId: string) =>
      (await ok<{ issueToken: { token: string } }>(app, ISSUE, { userId, scopes: ["VOIP"] }))
        .issueToken.token;
    await cached(other);
    const breakerOpened = async () =>
      (await app.metrics.cacheBreakerOpened.get()).values.reduce((sum, v) => sum + v.value, 0);
    const opened = await breakerOpened();
    const waits = async () =>
      Number(
        /cmdstat_wait:calls=(\d+)/.exec(await primary.client().info("commandstats"))?.[1] ?? 0,
      );

    await replica.pause();
    try {
      const waitsBefore = await waits();
      const revokes = await Promise.all(revoked.map((userId) => run(app, REVOKE, { userId })));
      expect(revokes.map((r) => r.errors?.[0]?.extensions?.code)).toEqual(
        revoked.map(() => "REVOCATION_UNCONFIRMED"),
      );
      // Reads of the other user go on through a replay of all 20 (20 more WAITs)...
      await eventually(
        async () => {
          await cached(other);
          return (await waits()) >= waitsBefore + 40;
        },
        "a replay of the 20 journaled revokes",
        60_000,
      );
      // ...the breaker never opened for them (a read that timed out on a loaded machine may
      // still have gone to ACS on its own)...
      expect(await breakerOpened()).toBe(opened);
      // ...and they are served from the cache: two reads, one token, no ACS call between.
      const served = await cached(other);
      const callsBefore = await upstreamAttempts(app);
      expect(await cached(other)).toBe(served);
      expect((await upstreamAttempts(app)) - callsBefore).toBe(0);
    } finally {
      await replica.resume();
    }
  }, 120_000);

  it("confirms a revoke the replica acknowledged, and not one it could not", async () => {
    const userId = (await ok<{ createUser: { id: string } }>(app, CREATE)).createUser.id;
    await ok(app, ISSUE, { userId, scopes: ["CHAT"] });
    // A replica that acknowledges within WAIT's 100 ms: on a busy machine one attempt may miss
    // that bound (then the answer is REVOCATION_UNCONFIRMED, correctly); a later one is confirmed.
    await expect
      .poll(async () => (await run(app, REVOKE, { userId })).errors, { timeout: 30_000 })
      .toBeUndefined();

    await replica.pause();
    try {
      const unconfirmed = await run(app, REVOKE, { userId });
      expect(unconfirmed.errors?.[0]?.extensions?.code).toBe("REVOCATION_UNCONFIRMED");
    } finally {
      await replica.resume();
    }
    // Once the replica caught up, revokes are confirmed again (the journaled one replays).
    await expect
      .poll(async () => (await run(app, REVOKE, { userId })).errors, { timeout: 30_000 })
      .toBeUndefined();
  });
});
