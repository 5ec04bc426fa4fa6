import { spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Emulator } from "@acs-identity-gateway/emulator";
import { createTestCa, startTestEmulator, type TestCa } from "../helpers/emulator.js";
import { startSourceGateway } from "../helpers/source-gateway.js";
import { createUserWithToken, postGraphQL } from "../helpers/processes.js";

/**
 * The gateway authenticating to ACS with Entra ID (ACS_ENDPOINT, no access key), as a real process:
 * DefaultAzureCredential's managed-identity credential gets its token from the emulator's own
 * managed-identity endpoint (App Service protocol: IDENTITY_ENDPOINT and IDENTITY_HEADER), and the
 * ACS SDK sends it as a bearer token over TLS, which the emulator checks (ACS_EMULATOR_ENTRA=on).
 * The process trusts the emulator's throwaway CA through NODE_EXTRA_CA_CERTS, as a deployment
 * with a private CA would.
 */
let ca: TestCa;
let emulator: Emulator;

beforeAll(async () => {
  ca = createTestCa();
  emulator = await startTestEmulator({
    host: "127.0.0.1",
    tls: { cert: ca.cert, key: ca.key },
    entra: "on",
  });
});

afterAll(async () => {
  await emulator?.close();
  ca?.remove();
});

describe("Entra ID to ACS", () => {
  it("runs every mutation against ACS with a managed identity's bearer token over HTTPS", async () => {
    expect(emulator.endpoint).toMatch(/^https:/);
    const before = { ...emulator.counters };
    const gateway = await startSourceGateway({
      ACS_ENDPOINT: emulator.endpoint,
      IDENTITY_ENDPOINT: emulator.managedIdentity!.endpoint,
      IDENTITY_HEADER: emulator.managedIdentity!.header,
      NODE_EXTRA_CA_CERTS: ca.caFile,
    });
    try {
      const { id: userId } = await createUserWithToken(gateway.url);
      const fresh = await postGraphQL(
        gateway.url,
        "mutation { issueToken(scopes: [CHAT]) { user { id } } }",
      );
      expect(fresh.errors).toBeUndefined();
      const mine = await postGraphQL(
        gateway.url,
        "mutation { issueMyToken(scopes: [CHAT]) { token } }",
      );
      expect(mine.errors).toBeUndefined();
      const revoked = await postGraphQL(
        gateway.url,
        "mutation ($u: ID!) { revokeTokens(userId: $u) { revokedAt } }",
        { u: userId },
      );
      expect(revoked.errors).toBeUndefined();
      const deleted = await postGraphQL(
        gateway.url,
        "mutation ($u: ID!) { deleteUser(userId: $u) { deletedAt } }",
        { u: userId },
      );
      expect(deleted.errors).toBeUndefined();
      expect((await postGraphQL(gateway.url, "{ acsEndpoint }")).data.acsEndpoint).toBe(
        emulator.endpoint,
      );
      // Every call reached the emulator (nothing was answered by a cache or refused).
      expect(emulator.counters.createIdentity - before.createIdentity).toBeGreaterThanOrEqual(3);
      expect(emulator.counters.deleteIdentity - before.deleteIdentity).toBe(1);
      expect(gateway.output()).not.toContain(emulator.managedIdentity!.header);
    } finally {
      await gateway.stop();
    }
  });

  it("refuses to start when no credential can get a token, saying what to configure", async () => {
    // A managed-identity endpoint that refuses this header: the credential gets no token (and,
    // told where its endpoint is, never probes anything off this machine).
    const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
      env: {
        PATH: process.env.PATH ?? "",
        HOST: "127.0.0.1",
        PORT: "0",
        DIRECTORY_DATA_DIR: "memory",
        ACS_ENDPOINT: emulator.endpoint,
        IDENTITY_ENDPOINT: emulator.managedIdentity!.endpoint,
        IDENTITY_HEADER: "not-the-header",
        NODE_EXTRA_CA_CERTS: ca.caFile,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout!.on("data", (chunk) => (output += chunk));
    child.stderr!.on("data", (chunk) => (output += chunk));
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    expect(code).not.toBe(0);
    expect(output).toContain("no Entra ID credential could get a token");
    expect(output).toContain("AZURE_CLIENT_ID");
    expect(output).not.toContain("ready at");
  });
});
