import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Emulator } from "@acs-identity-gateway/emulator";
import { createTestCa, startTestEmulator, type TestCa } from "../helpers/emulator.js";
import { compileScript } from "../helpers/scripts.js";
import { jsSdkSuiteEnv } from "./js-sdk-suite-env.js";

/**
 * The JavaScript SDK's suite over HTTPS in both of the Azure SDK's live-test modes: the connection
 * string (HMAC) and Entra ID (a managed-identity credential minted by the emulator itself).
 */
const suite = fileURLToPath(new URL("./js-sdk-suite.ts", import.meta.url));

let ca: TestCa;
let emulator: Emulator;
const seen: string[] = [];

beforeAll(async () => {
  ca = createTestCa();
  emulator = await startTestEmulator({ tls: { cert: ca.cert, key: ca.key }, entra: "on" });
  emulator.hooks.beforeRespond = (_operation, info) => {
    seen.push(`${info.auth} ${info.apiVersion ?? ""}`);
  };
});

afterAll(async () => {
  await emulator?.close();
  ca?.remove();
});

async function runSuite(
  mode: "hmac" | "entra",
  extraEnv: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const env: Record<string, string> = {
    ...jsSdkSuiteEnv({ caFile: ca.caFile, connectionString: emulator.connectionString }),
    ...extraEnv,
  };
  const compiled = await compileScript(suite);
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [compiled, mode],
      { env, timeout: 120_000, cwd: fileURLToPath(new URL("../..", import.meta.url)) },
      (error, stdout, stderr) =>
        resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const calls = (stdout: string) =>
  stdout
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as Record<string, unknown>);

const EXPECTED = [
  { call: "createUser" },
  { call: "createUserAndToken", minutes: 60 },
  { call: "getToken", minutes: 1440 },
  { call: "revokeTokens" },
  { call: "getTokenForTeamsUser", parts: 3 },
  { call: "getToken(59)", refused: { status: 400, code: "ValidationError" } },
  { call: "deleteUser" },
];

// Child processes (Node and SDK start-up, MSAL retries) on a shared 2-core machine: generous
// timeouts.
describe("the JavaScript SDK over HTTPS", { timeout: 120_000 }, () => {
  it("passes with the connection string, trusting the test CA only through NODE_EXTRA_CA_CERTS", async () => {
    expect(emulator.endpoint).toMatch(/^https:/);
    const before = { ...emulator.counters };
    seen.length = 0;
    const run = await runSuite("hmac");
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(calls(run.stdout)).toMatchObject(EXPECTED);
    expect(emulator.counters.createIdentity - before.createIdentity).toBe(2);
    expect(new Set(seen)).toEqual(new Set(["hmac 2023-10-01"]));
    expect(
      emulator.counters.exchangeTeamsUserAccessToken - before.exchangeTeamsUserAccessToken,
    ).toBe(1);
  });

  it("passes with Entra ID: ManagedIdentityCredential against the emulator's own endpoint", async () => {
    const before = { ...emulator.counters };
    seen.length = 0;
    const run = await runSuite("entra", {
      IDENTITY_ENDPOINT: emulator.managedIdentity!.endpoint,
      IDENTITY_HEADER: emulator.managedIdentity!.header,
    });
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(calls(run.stdout)).toMatchObject(EXPECTED);
    expect(emulator.counters.deleteIdentity - before.deleteIdentity).toBe(2);
    // Every operation answered (refusals never reach the hook) authenticated with the bearer token.
    expect(seen).toHaveLength(7);
    expect(new Set(seen)).toEqual(new Set(["bearer 2023-10-01"]));
  });

  it("fails in Entra mode when the managed-identity secret is wrong", async () => {
    const run = await runSuite("entra", {
      IDENTITY_ENDPOINT: emulator.managedIdentity!.endpoint,
      IDENTITY_HEADER: "not-the-secret",
    });
    expect(run.code).not.toBe(0);
    expect(run.stdout).toBe("");
  });

  it("fails without the test CA: the SDK does not fall back to trusting the emulator", async () => {
    const run = await runSuite("hmac", { NODE_EXTRA_CA_CERTS: "" });
    expect(run.code).not.toBe(0);
    expect(run.stderr).toMatch(/self[- ]signed|unable to (get|verify)|UNABLE_TO|certificate/i);
  });
});
