import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import { ANONYMOUS_ADMIN } from "../../src/auth/caller.js";
import type { Emulator } from "@acs-identity-gateway/emulator";
import pg from "pg";
import { mappingResourceOf } from "../../src/app/mapping-store.js";
import { createPostgresDb } from "../../src/directory/index.js";
import { createProvisioner } from "../../src/identity/provisioning.js";
import { createSqlUserMappingStore } from "../../src/identity/sql-user-mapping-store.js";
import { createLogger } from "../../src/logger.js";
import { startTestEmulator } from "../helpers/emulator.js";
import { identityProviderFor, ok, startGateway } from "../helpers/gateway.js";
import { startPostgres, type PostgresServer } from "../helpers/postgres.js";
import { startRedis, type RedisProcess } from "../helpers/redis.js";
import { directoryDataDir } from "../helpers/directory-folder.js";

/**
 * A gateway process killed between the provisioning steps (ACSGW_TEST_EXIT_AFTER_STEP makes it
 * exit right after the step, without any clean-up, as a crash would), then a gateway restarted on
 * the same stores: the identity the dead process created is found and confirmed, never orphaned
 * and never duplicated. Identities are counted at the emulator, which outlives both gateways.
 */

let emulator: Emulator;
let redis: RedisProcess;
let postgres: PostgresServer;
const apps: App[] = [];
const folders: { remove(): void }[] = [];
/** Every identity the emulator created, in order. */
const created: string[] = [];

beforeAll(async () => {
  [emulator, redis, postgres] = await Promise.all([
    startTestEmulator(),
    startRedis(),
    startPostgres(),
  ]);
  emulator.hooks.beforeRespond = (operation, info) => {
    if (operation === "createIdentity" && info.identityId) {
      created.push(info.identityId);
    }
  };
}, 60_000);
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
  folders.splice(0).forEach((folder) => folder.remove());
});
afterAll(async () => {
  await Promise.all([emulator.close(), redis.stop(), postgres.stop()]);
});

const liveIdentities = () => emulator.counters.createIdentity - emulator.counters.deleteIdentity;

const ISSUE_MY = `mutation { issueMyToken(scopes: [CHAT]) { token user { id } } }`;

/**
 * Starts `src/main.ts` in a child process with `env`, sends one issueMyToken, and resolves with
 * the child's exit code once it exited (the hook makes it exit inside that request).
 */
async function crashGatewayDuringIssueMyToken(env: Record<string, string>): Promise<number | null> {
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
    cwd: process.cwd(),
    env: {
      PATH: process.env.PATH,
      NODE_ENV: "test",
      HOST: "127.0.0.1",
      PORT: "0",
      // Not the repository's .data/directory, which other test processes may open too.
      DIRECTORY_DATA_DIR: "memory",
      LOG_LEVEL: "info",
      COMMUNICATION_SERVICES_CONNECTION_STRING: emulator.connectionString,
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => resolve(code)),
  );
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.on("line", (line) => {
      try {
        const entry = JSON.parse(line) as { url?: string };
        if (entry.url) {
          resolve(entry.url);
        }
      } catch {
        // not a log line
      }
    });
    void exited.then((code) =>
      reject(new Error(`gateway exited (${code}) before listening: ${stderr}`)),
    );
  });
  const answer = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ query: ISSUE_MY }),
  }).then(
    (response) => `answered ${response.status}`,
    () => "connection lost",
  );
  expect(answer).toBe("connection lost");
  return exited;
}

describe.each([
  [
    "PostgreSQL",
    async () => ({ DATABASE_URL: await postgres.newDatabase(), REDIS_URL: redis.url }),
  ],
  [
    "the embedded database in a folder",
    async () => {
      const folder = await directoryDataDir();
      folders.push(folder);
      return { REDIS_URL: redis.url, DIRECTORY_DATA_DIR: folder.dir };
    },
  ],
] as const)("a crash between create and confirm (%s)", (_name, stores) => {
  it("leaves the identity recorded; the restarted gateway confirms it and creates no second one", async () => {
    const env = await stores();
    const createdBefore = created.length;
    const liveBefore = liveIdentities();

    expect(
      await crashGatewayDuringIssueMyToken({ ...env, ACSGW_TEST_EXIT_AFTER_STEP: "recorded" }),
    ).toBe(86);
    expect(created.length - createdBefore).toBe(1);
    const identity = created.at(-1)!;

    const restarted = await startGateway({
      COMMUNICATION_SERVICES_CONNECTION_STRING: emulator.connectionString,
      ...env,
    });
    apps.push(restarted);
    // Recorded in the database the dead process wrote (the restart confirms it in the background):
    // the caller's mapping is the dead process's identity, pending or confirmed.
    expect(await restarted.ownership.userIdOf(ANONYMOUS_ADMIN.key)).toBe(identity);
    const data = await ok(restarted, ISSUE_MY);
    expect(data.issueMyToken.user.id).toBe(identity);
    expect(created.length - createdBefore).toBe(1);
    expect(liveIdentities() - liveBefore).toBe(1);
  }, 60_000);
});

describe("a crash after the reservation, before ACS was called", () => {
  it("creates nothing at ACS, and blocks the caller for the request timeout (the lease), no longer", async () => {
    // A request timeout no other setting has: the lease the dead process wrote must be this one.
    const env = { DATABASE_URL: await postgres.newDatabase(), HTTP_REQUEST_TIMEOUT_MS: "7300" };
    const requestTimeoutMs = 7300;
    const createdBefore = created.length;
    const sent = Date.now();
    expect(
      await crashGatewayDuringIssueMyToken({ ...env, ACSGW_TEST_EXIT_AFTER_STEP: "reserved" }),
    ).toBe(86);
    const died = Date.now();
    expect(created.length - createdBefore).toBe(0);

    // The reservation the dead process left: its lease ends one request timeout after it was
    // made, which was after the request was sent and before the process exited. (Both bounds
    // follow from the order of events, whatever the machine's speed.)
    const pool = new pg.Pool({ connectionString: env.DATABASE_URL, max: 2 });
    pool.on("error", () => {});
    try {
      const { rows } = await pool.query<{ lease_until: string }>(
        `SELECT lease_until FROM acsgw_identity_mapping
          WHERE resource = $1 AND subject_key = $2 AND state = 'reserved'`,
        [mappingResourceOf(emulator.endpoint), ANONYMOUS_ADMIN.key],
      );
      expect(rows).toHaveLength(1);
      const leaseUntil = Number(rows[0]!.lease_until);
      expect(leaseUntil).toBeGreaterThanOrEqual(sent + requestTimeoutMs);
      expect(leaseUntil).toBeLessThanOrEqual(died + requestTimeoutMs);

      // The restarted gateway sees a reservation whose lease is still running (its owner might be
      // alive): the caller is told to try again instead of getting an identity twice.
      const restarted = await startGateway({
        COMMUNICATION_SERVICES_CONNECTION_STRING: emulator.connectionString,
        ...env,
      });
      apps.push(restarted);
      expect(await restarted.ownership.userIdOf(ANONYMOUS_ADMIN.key)).toBeUndefined();
      expect(created.length - createdBefore).toBe(0);

      // The caller's next call, on a clock the test holds (set to the moment the process was
      // seen dead): it waits for the lease and takes the reservation over the moment it ends, so
      // the time it was blocked is measured exactly, and is at most the request timeout.
      const db = createPostgresDb(pool);
      const clock = { now: died };
      const next = createProvisioner({
        store: createSqlUserMappingStore({ db, resource: mappingResourceOf(emulator.endpoint) }),
        identity: identityProviderFor(emulator),
        logger: createLogger({ level: "silent" }),
        now: () => clock.now,
        leaseMs: requestTimeoutMs,
        sleep: async (ms) => {
          clock.now += ms;
        },
      });
      const userId = await next.identityOf(ANONYMOUS_ADMIN.key);
      next.close();
      expect(clock.now).toBe(leaseUntil);
      expect(clock.now - died).toBeLessThanOrEqual(requestTimeoutMs);
      expect(created.length - createdBefore).toBe(1);
      expect(created.at(-1)).toBe(userId);
      expect(await restarted.ownership.userIdOf(ANONYMOUS_ADMIN.key)).toBe(userId);
    } finally {
      await pool.end();
    }
  }, 60_000);
});
