import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Emulator, RespondInfo } from "@acs-identity-gateway/emulator";
import { entraCredentialOptions } from "../../src/identity/entra-credential.js";
import { createTestCa, startTestEmulator, type TestCa } from "../helpers/emulator.js";
import { startSourceGateway } from "../helpers/source-gateway.js";
import { createUserWithToken } from "../helpers/processes.js";

/**
 * The gateway itself (`node --import tsx src/main.ts`, a real process) authenticating to the
 * emulator with Entra ID through the emulator's own token authority: ACS_ENDPOINT is the emulator's
 * https endpoint, the credential settings are exactly the AZURE_* lines the emulator prints, and
 * the process trusts the test CA through NODE_EXTRA_CA_CERTS. No managed identity is offered, so
 * DefaultAzureCredential's EnvironmentCredential (a client secret) must do it, which works only
 * because the gateway turns instance discovery off for an authority host outside Microsoft's.
 */
let ca: TestCa;
let emulator: Emulator;
const seen: { operation: string; info: RespondInfo }[] = [];

beforeAll(async () => {
  ca = createTestCa();
  emulator = await startTestEmulator({ tls: { cert: ca.cert, key: ca.key }, entra: "on" });
  emulator.hooks.beforeRespond = (operation, info) => {
    seen.push({ operation, info });
  };
});

afterAll(async () => {
  await emulator?.close();
  ca?.remove();
});

describe("entraCredentialOptions", () => {
  it("turns instance discovery off for an authority host outside Microsoft's clouds only", () => {
    expect(entraCredentialOptions(undefined)).toEqual({});
    for (const host of [
      "https://login.microsoftonline.com",
      "https://login.microsoftonline.us/",
      "https://LOGIN.chinacloudapi.cn",
    ]) {
      expect(entraCredentialOptions(host)).toEqual({});
    }
    for (const host of ["https://127.0.0.1:10500", "https://adfs.contoso.test/adfs"]) {
      expect(entraCredentialOptions(host)).toEqual({ disableInstanceDiscovery: true });
    }
  });
});

describe("the gateway with the emulator's AZURE_* settings", { timeout: 120_000 }, () => {
  it("gets its ACS token from the emulator's authority and issues tokens with it", async () => {
    seen.length = 0;
    const gateway = await startSourceGateway({
      ACS_ENDPOINT: emulator.endpoint,
      ...emulator.entraAuthority!.settings,
      NODE_EXTRA_CA_CERTS: ca.caFile,
    });
    try {
      const { token } = await createUserWithToken(gateway.url);
      expect(token.split(".")).toHaveLength(3);
      expect(seen.map((s) => `${s.operation} ${s.info.auth}`)).toEqual(
        expect.arrayContaining(["createIdentity bearer", "issueAccessToken bearer"]),
      );
      expect(new Set(seen.map((s) => s.info.auth))).toEqual(new Set(["bearer"]));
      expect(gateway.output()).not.toContain(emulator.entraAuthority!.clientSecret);
    } finally {
      await gateway.stop();
    }
  });
});
