import { execFile, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Emulator } from "@acs-identity-gateway/emulator";
import { createTestCa, startTestEmulator, type TestCa } from "../helpers/emulator.js";
import { unsignedJwt } from "./jwt.js";

/**
 * Microsoft's Python SDK (Debian's python3-azure, azure-communication-identity 1.3.x) against the
 * emulator over HTTPS: it speaks api-version 2022-10-01 and `from_connection_string` always uses
 * https. Debian's interpreter, not the pyenv one on PATH: only it has the distribution's packages.
 */
const PYTHON = "/usr/bin/python3";
const probe = spawnSync(PYTHON, ["-c", "import azure.communication.identity, aiohttp"], {
  encoding: "utf8",
});
const pythonReady = probe.status === 0;
if (!pythonReady) {
  console.warn(
    `skipping the Python SDK tests: ${PYTHON} cannot import azure.communication.identity and aiohttp (${(probe.stderr || probe.error?.message || "").trim().split("\n").pop()})`,
  );
}

const script = (name: string) => fileURLToPath(new URL(`../python/${name}`, import.meta.url));

function runPython(
  file: string,
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      PYTHON,
      [script(file)],
      // A clean environment: nothing of the developer's (proxies, Azure variables) leaks in.
      {
        env: { PATH: "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp", ...env },
        timeout: 120_000,
      },
      (error, stdout, stderr) =>
        resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

let ca: TestCa;
let emulator: Emulator;
const versions: string[] = [];

beforeAll(async () => {
  if (!pythonReady) {
    return;
  }
  ca = createTestCa();
  emulator = await startTestEmulator({ tls: { cert: ca.cert, key: ca.key } });
  emulator.hooks.beforeRespond = (_operation, info) => {
    if (info.apiVersion) {
      versions.push(info.apiVersion);
    }
  };
});

afterAll(async () => {
  await emulator?.close();
  ca?.remove();
});

// Child processes on a shared 2-core machine: generous timeouts.
describe.skipIf(!pythonReady)(
  "the Python SDK (python3-azure) over HTTPS",
  { timeout: 120_000 },
  () => {
    it("runs the access-token quickstart unchanged with its default api-version", async () => {
      expect(emulator.endpoint).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/$/);
      const before = { ...emulator.counters };
      const run = await runPython("quickstart.py", {
        COMMUNICATION_SERVICES_CONNECTION_STRING: emulator.connectionString,
        REQUESTS_CA_BUNDLE: ca.caFile,
      });
      expect(run.stderr).toBe("");
      expect(run.code).toBe(0);
      expect(run.stdout).toMatch(/Created an identity with ID: 8:acs:/);
      expect(run.stdout).toContain("QUICKSTART OK");
      expect(emulator.counters.createIdentity - before.createIdentity).toBe(2);
      expect(emulator.counters.issueAccessToken - before.issueAccessToken).toBe(2);
      expect(emulator.counters.revokeAccessTokens - before.revokeAccessTokens).toBe(1);
      expect(emulator.counters.deleteIdentity - before.deleteIdentity).toBe(2);
      expect(new Set(versions)).toEqual(new Set(["2022-10-01"]));
    });

    it("refuses the quickstart when the client does not trust the emulator's CA", async () => {
      const run = await runPython("quickstart.py", {
        COMMUNICATION_SERVICES_CONNECTION_STRING: emulator.connectionString,
      });
      expect(run.code).not.toBe(0);
      expect(run.stderr).toMatch(/CERTIFICATE_VERIFY_FAILED|SSLError/);
    });

    it("answers every method of the sync and aio clients", async () => {
      const appId = "2f6a5b5e-1c55-4d8f-9f0d-3a3b6c9a7e11";
      const userId = "9c7d3f1a-7b6e-4f0b-8e2a-5d4c3b2a1f00";
      const exp = Math.floor(Date.now() / 1000) + 3600;
      const before = { ...emulator.counters };
      const run = await runPython("all_methods.py", {
        COMMUNICATION_SERVICES_CONNECTION_STRING: emulator.connectionString,
        REQUESTS_CA_BUNDLE: ca.caFile,
        SSL_CERT_FILE: ca.caFile,
        TEAMS_AAD_TOKEN: unsignedJwt({ appid: appId, oid: userId, exp }),
        TEAMS_APP_ID: appId,
        TEAMS_USER_ID: userId,
      });
      expect(run.stderr).toBe("");
      expect(run.code).toBe(0);
      const calls = run.stdout
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as { mode: string; method: string; status?: number });
      expect(calls.map((c) => `${c.mode} ${c.method}`)).toEqual([
        "sync create_user",
        "sync get_token",
        "sync get_token(1h)",
        "sync create_user_and_token",
        "sync revoke_tokens",
        "sync get_token_for_teams_user",
        "sync get_token(59m)",
        "sync delete_user",
        "sync get_token(deleted)",
        "aio create_user",
        "aio get_token",
        "aio create_user_and_token",
        "aio revoke_tokens",
        "aio get_token_for_teams_user",
        "aio delete_user",
      ]);
      expect(calls.find((c) => c.method === "get_token(deleted)")?.status).toBe(404);
      expect(run.stdout).toContain("ALL METHODS OK");
      const delta = (op: keyof Emulator["counters"]) => emulator.counters[op] - before[op];
      expect(delta("createIdentity")).toBe(4);
      expect(delta("issueAccessToken")).toBe(3);
      expect(delta("revokeAccessTokens")).toBe(2);
      expect(delta("deleteIdentity")).toBe(4);
      expect(delta("exchangeTeamsUserAccessToken")).toBe(2);
    });
  },
);
