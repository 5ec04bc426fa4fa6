import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Emulator } from "@acs-identity-gateway/emulator";
import type { App } from "../../src/app.js";
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
    [emulator, cluster] = await Promise.all([
      startTestEmulator(),
      // A long node timeout: the test, not the cluster's own failure detection, decides when the
      // replica takes over (CLUSTER FAILOVER TAKEOVER), however slow the machine is.
      startRedisCluster(3, { replicas: 1, nodeTimeoutMs: 60_000 }),
    ]);
    const env = {
      COMMUNICATION_SERVICES_CONNECTION_STRING: emulator.connectionString,
      REDIS_CLUSTER_NODES: cluster.hosts.map((h) => `${h.host}:${h.port}`).join(","),
    };
    [a, b] = [await startGateway(env), await startGateway(env)];
  }, 120_000);

  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await cluster?.stop();
    await emulator?.close();
  });

  const issue = async (app: App, userId: string) =>
    run<{ issueToken: { token: string } }>(app, ISSUE, { userId, scopes: ["VOIP"] });

  /** Users until two live on the same primary (one third of users per primary). */
  async function twoUsersOnOnePrimary(): Promise<{
    revoked: string;
    deleted: string;
    primary: RedisProcess;
    replica: RedisProcess;
  }> {
    const first = (await ok<{ createUser: { id: string } }>(a, CREATE)).createUser.id;
    const owners = await cluster.ownersOf(`probe${hashTag(first)}`);
    for (let i = 0; i < 50; i++) {
      const other = (await ok<{ createUser: { id: string } }>(a, CREATE)).createUser.id;
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

  it("serves neither the pre-revoke token nor the deleted identity's token afterwards, on either instance", async () => {
    const { revoked, deleted, primary, replica } = await twoUsersOnOnePrimary();
    const staleRevoked = (
      await ok<{ issueToken: { token: string } }>(a, ISSUE, {
        userId: revoked,
        scopes: ["VOIP"],
      })
    ).issueToken.token;
    const staleDeleted = (
      await ok<{ issueToken: { token: string } }>(a, ISSUE, {
        userId: deleted,
        scopes: ["VOIP"],
      })
    ).issueToken.token;
    // Both cached, and seen by the other instance too.
    expect((await ok(b, ISSUE, { userId: revoked, scopes: ["VOIP"] })).issueToken.token).toBe(
      staleRevoked,
    );
    expect((await ok(b, ISSUE, { userId: deleted, scopes: ["VOIP"] })).issueToken.token).toBe(
      staleDeleted,
    );

    // The replication link breaks: the replica is frozen and the primary drops its connection,
    // so the writes that follow reach the primary only.
    await replica.pause();
    await primary.client().client("KILL", "TYPE", "replica");

    // ACS revokes and deletes; the cache's writes land on the primary alone. No replica
    // acknowledged them, so neither may be answered as confirmed.
    const revoke = await run(a, REVOKE, { userId: revoked });
    expect(revoke.errors?.[0]?.extensions?.code).toBe("REVOCATION_UNCONFIRMED");
    const del = await run(a, DELETE, { userId: deleted });
    expect(del.errors?.[0]?.extensions?.code).toBe("REVOCATION_UNCONFIRMED");

    // The primary dies; the replica, which never saw those writes, takes over.
    await primary.kill();
    await replica.resume();
    await replica.client().cluster("FAILOVER", "TAKEOVER");
    await expect
      .poll(async () => (await replica.client().call("ROLE")) as string[], { timeout: 30_000 })
      .toContain("master");

    // Both instances, many times: a fresh token or NOT_FOUND, never what was cached before.
    let served = 0;
    for (let round = 0; round < 20; round++) {
      for (const app of [a, b]) {
        const afterRevoke = await issue(app, revoked);
        if (afterRevoke.data?.issueToken) {
          expect(afterRevoke.data.issueToken.token).not.toBe(staleRevoked);
          served++;
        } else {
          // The cluster may still be settling: an unavailable cache is not a stale token.
          expect(afterRevoke.errors?.[0]?.extensions?.code).not.toBe("INTERNAL_SERVER_ERROR");
        }
        const afterDelete = await issue(app, deleted);
        expect(afterDelete.data?.issueToken?.token).not.toBe(staleDeleted);
        expect(afterDelete.errors?.[0]?.extensions?.code).toBe("NOT_FOUND");
      }
    }
    expect(served).toBeGreaterThan(0);
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
