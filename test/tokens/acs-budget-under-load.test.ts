import { spawn, type ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import { createGatewayServices } from "../../src/app/gateway-services.js";
import { createRateLimiter } from "../../src/auth/rate-limiter.js";
import { createTokenCache, type TokenCache } from "../../src/cache/index.js";
import { loadConfig } from "../../src/config.js";
import { createAcsIdentityProvider } from "../../src/identity/acs-identity-provider.js";
import { createMemoryUserMappingStore } from "../../src/identity/user-mapping-store.js";
import { createLogger } from "../../src/logger.js";
import { createRedisClient, rateLimitKeyPrefix } from "../../src/redis/index.js";
import { createUpstreamBudget, type Actor } from "../../src/tokens/upstream-budget.js";
import { startTestEmulator } from "../helpers/emulator.js";
import { ISSUE, startGateway } from "../helpers/gateway.js";
import { startTestIssuer, type TestIssuer } from "../helpers/jwks.js";
import { startRedis, type RedisProcess } from "../helpers/redis.js";

/**
 * The ACS-call budget (RATE_LIMIT_ACS_CALLS_PER_MINUTE) is charged for ACS calls that happen, once
 * each. A request whose cache read fails (Redis paused, or a read that outlives the 250 ms command
 * timeout because both cores are busy) mints at ACS itself; identical mints of one caller that are
 * still being charged, not yet sent, share one ACS call and one charge, so 100 concurrent requests
 * that would have been cache hits do not spend 100 calls of the caller's budget.
 */
let issuer: TestIssuer;
let redis: RedisProcess;
const burners: ChildProcess[] = [];

beforeAll(async () => {
  [issuer, redis] = await Promise.all([startTestIssuer(), startRedis()]);
  // Both cores busy while the tests assert (the machine has two).
  for (let i = 0; i < 2; i++) {
    burners.push(spawn(process.execPath, ["-e", "for(;;){}"], { stdio: "ignore" }));
  }
});

afterAll(async () => {
  for (const burner of burners) {
    burner.kill("SIGKILL");
  }
  await redis?.resume().catch(() => undefined);
  await Promise.all([redis?.stop(), issuer?.close()]);
});

async function gatewayWithLimits(extra: Record<string, string> = {}): Promise<App> {
  return startGateway({
    HOST: "127.0.0.1",
    AUTH_MODE: "jwt",
    AUTH_JWKS_URL: issuer.jwksUrl,
    AUTH_ISSUER: issuer.issuer,
    AUTH_AUDIENCE: issuer.audience,
    REDIS_URL: redis.url,
    REDIS_KEY_PREFIX: `bl-${Math.random().toString(36).slice(2)}:`,
    // The defaults (30 ACS calls a minute for an end user, admins unlimited) unless `extra` says.
    RATE_LIMIT_ACS_CALLS_PER_MINUTE: undefined as unknown as string,
    ...extra,
  });
}

interface Gql {
  data?: any;
  errors?: { extensions?: Record<string, unknown> }[];
}

async function gql(
  url: string,
  query: string,
  variables: Record<string, unknown>,
  token: string,
): Promise<Gql> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  return (await response.json()) as Gql;
}

const codeOf = (result: Gql) => result.errors?.[0]?.extensions?.code;
const MINE = "mutation { issueMyToken(scopes: [CHAT, VOIP]) { token } }";

describe("the ACS-call budget with both cores busy", () => {
  it("100 concurrent identical requests whose cache read fails (Redis paused) share the ACS call not yet sent, and are charged once", async () => {
    // The gateway's token path, built as createApp builds it, with two test handles: the charge
    // waits for `hold` before the real rate limiter counts it, and the cache says when a request's
    // lookup gave up and asks ACS. The burst is released once all 100 wait, so the outcome does not
    // depend on how fast this machine gets them there.
    const logger = createLogger({ level: "silent" });
    const config = loadConfig({
      LOG_LEVEL: "silent",
      REDIS_URL: redis.url,
      REDIS_KEY_PREFIX: `bl-${Math.random().toString(36).slice(2)}:`,
    });
    const emulator = await startTestEmulator();
    const client = createRedisClient({ mode: "single", url: redis.url }, logger);
    const limiter = createRateLimiter({
      limit: 10,
      windowSeconds: 60,
      redis: client,
      keyPrefix: `${rateLimitKeyPrefix(config.redisKeyPrefix)}user:`,
      logger,
    });
    let hold: Promise<void> | undefined;
    let charges = 0;
    let refused = 0;
    const budget = createUpstreamBudget({
      endUser: {
        async consume(key) {
          charges++;
          await hold;
          return limiter.consume(key);
        },
      },
      onRefused: () => refused++,
    });
    const cache = createTokenCache(config, {
      logger,
      acs: { endpoint: emulator.endpoint, accessKey: emulator.accessKey },
      redisClient: client,
    });
    let minting = 0;
    let everyoneMinting: (() => void) | undefined;
    const watched: TokenCache = {
      ...cache,
      getOrMint: (key, mint) =>
        cache.getOrMint(key, () => {
          if (++minting === 100) {
            everyoneMinting?.();
          }
          return mint();
        }),
    };
    const { services, provisioner } = createGatewayServices({
      identity: createAcsIdentityProvider({
        endpoint: emulator.endpoint,
        accessKey: emulator.accessKey,
        allowInsecureConnection: true,
      }),
      budget,
      cache: watched,
      mappings: createMemoryUserMappingStore(),
      logger,
    });
    const grace: Actor = { key: "grace", isAdmin: false };
    try {
      if (client.status !== "ready") {
        await new Promise<void>((resolve) => client.once("ready", () => resolve()));
      }
      // Two ACS calls: grace's identity and her first token (now cached, and her mapping known).
      await services.selfService.issueMyToken(grace, ["chat", "voip"]);
      const issuedBefore = emulator.counters.issueAccessToken;
      const chargesBefore = charges;

      let release!: () => void;
      hold = new Promise<void>((resolve) => (release = resolve));
      minting = 0;
      const allMinting = new Promise<void>((resolve) => (everyoneMinting = resolve));
      let answers: ({ token: string } | { error: unknown })[];
      await redis.pause();
      try {
        const asks = Array.from({ length: 100 }, () =>
          services.selfService.issueMyToken(grace, ["chat", "voip"]).then(
            (grant) => ({ token: grant.token }),
            (error: unknown) => ({ error }),
          ),
        );
        let released = false;
        const answeredEarly = Promise.race(asks).then((first) => {
          if (!released) {
            throw new Error(`answered before the burst was released: ${JSON.stringify(first)}`);
          }
        });
        // Every read failed (Redis is paused) and every request asked ACS: all wait for the charge.
        await Promise.race([allMinting, answeredEarly]);
        released = true;
        release();
        answers = await Promise.all(asks);
      } finally {
        release();
        await redis.resume();
      }

      expect(answers.filter((answer) => "error" in answer)).toEqual([]);
      // One ACS call, charged once, shared by all 100: a token ACS issued in this burst (no read
      // succeeded), well within the 8 calls left of 10 (2 spent above).
      expect(emulator.counters.issueAccessToken - issuedBefore).toBe(1);
      expect(charges - chargesBefore).toBe(1);
      expect(new Set(answers.map((answer) => (answer as { token: string }).token)).size).toBe(1);
      expect(refused).toBe(0);
    } finally {
      hold = undefined;
      provisioner.close();
      await cache.close();
      await limiter.close();
      client.disconnect();
      await emulator.close();
    }
  });

  it("with the defaults, never limits an admin minting for 300 users nor 100 concurrent cache hits", async () => {
    const gateway = await gatewayWithLimits();
    try {
      const url = await gateway.listen(0);
      const backend = await issuer.sign({ roles: ["acs.admin"] }, { subject: "backend" });
      const minted: Gql[] = [];
      for (let batch = 0; batch < 300; batch += 50) {
        minted.push(
          ...(await Promise.all(
            Array.from({ length: 50 }, () => gql(url, ISSUE, { scopes: ["VOIP"] }, backend)),
          )),
        );
      }
      expect(minted.map(codeOf).filter((code) => code !== undefined)).toEqual([]);
      const frank = await issuer.sign({}, { subject: "frank" });
      expect((await gql(url, MINE, {}, frank)).errors).toBeUndefined();
      const hits = await Promise.all(Array.from({ length: 100 }, () => gql(url, MINE, {}, frank)));
      expect(hits.map(codeOf).filter((code) => code !== undefined)).toEqual([]);
    } finally {
      await gateway.close();
    }
  });
});
