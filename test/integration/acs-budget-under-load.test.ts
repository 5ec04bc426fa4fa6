import { spawn, type ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
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
  it("100 concurrent requests whose cache read fails (Redis paused) share the ACS calls not yet sent, and are charged only for those", async () => {
    const gateway = await gatewayWithLimits({ RATE_LIMIT_ACS_CALLS_PER_MINUTE: "10" });
    try {
      const url = await gateway.listen(0);
      const grace = await issuer.sign({}, { subject: "grace" });
      // Two ACS calls: grace's identity and her first token (now cached, and her mapping known).
      expect((await gql(url, MINE, {}, grace)).errors).toBeUndefined();
      const issuedBefore = gateway.emulator!.counters.issueAccessToken;

      await redis.pause();
      let answers: Gql[];
      try {
        answers = await Promise.all(Array.from({ length: 100 }, () => gql(url, MINE, {}, grace)));
      } finally {
        await redis.resume();
      }

      expect(answers.map(codeOf).filter((code) => code !== undefined)).toEqual([]);
      const acsCalls = gateway.emulator!.counters.issueAccessToken - issuedBefore;
      // Every answer is a token ACS issued in this burst (no read succeeded), from a few shared
      // calls, each charged once: within the 8 calls left of 10 (2 spent above).
      expect(acsCalls).toBeGreaterThanOrEqual(1);
      expect(acsCalls).toBeLessThanOrEqual(8);
      const rateLimited = await gateway.metrics.rateLimited.get();
      expect(rateLimited.values.reduce((sum, value) => sum + value.value, 0)).toBe(0);
    } finally {
      await gateway.close();
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
