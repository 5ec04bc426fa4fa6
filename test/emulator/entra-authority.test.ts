import { spawn } from "node:child_process";
import { createPublicKey, generateKeyPairSync, verify, type JsonWebKey } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  EMULATOR_CLIENT_ID,
  EMULATOR_TENANT_ID,
  EMULATOR_USER_OBJECT_ID,
  EMULATOR_USERNAME,
  type Emulator,
  type RespondInfo,
} from "@acs-identity-gateway/emulator";
import { createTestCa, startTestEmulator, type TestCa } from "../helpers/emulator.js";
import {
  appToken,
  authorityToken,
  claimsOf,
  PRINTED_ENTRA_LINES,
  forgeToken,
  runEntraSuite,
  tlsRequest,
  userToken,
  type TlsResponse,
} from "./entra-helpers.js";
import { assertErrorShape } from "./spec.js";

/**
 * The emulator as the Entra ID token authority of its test tenant (`ACS_EMULATOR_ENTRA=on` with
 * TLS): OpenID discovery, client credentials and the password grant as MSAL Node asks for them
 * (through @azure/identity, `disableInstanceDiscovery: true`), Entra's error answers, and the ACS
 * operations accepting the authority's application tokens. The SDK calls run in child processes
 * (entra-sdk-suite.ts) that trust the test CA through NODE_EXTRA_CA_CERTS.
 */
const ACS = "https://communication.azure.com";
const signingKeyPem = generateKeyPairSync("rsa", { modulusLength: 2048 })
  .privateKey.export({ type: "pkcs8", format: "pem" })
  .toString();

let ca: TestCa;
let emulator: Emulator;
const seen: { operation: string; info: RespondInfo }[] = [];
/** The emulator's warnings, as written (pino writes each line synchronously). */
const warnings: { msg: string; failure?: string }[] = [];

beforeAll(async () => {
  ca = createTestCa();
  emulator = await startTestEmulator({
    tls: { cert: ca.cert, key: ca.key },
    entra: "on",
    signingKeyPem,
    logger: pino({ level: "warn" }, { write: (line: string) => warnings.push(JSON.parse(line)) }),
  });
  emulator.hooks.beforeRespond = (operation, info) => {
    seen.push({ operation, info });
  };
});

afterAll(async () => {
  await emulator?.close();
  ca?.remove();
});

const authority = () => emulator.entraAuthority!;
const tenantUrl = (path: string) => `${authority().authorityHost}/${EMULATOR_TENANT_ID}/${path}`;

function expectEntraError(res: TlsResponse, status: number, error: string, code: number) {
  expect(res.status, res.text).toBe(status);
  expect(res.json).toMatchObject({ error, error_codes: [code] });
  expect(res.json.error_description).toMatch(new RegExp(`^AADSTS${code}: `));
  expect(res.json.trace_id).toMatch(/^[0-9a-f-]{36}$/);
  expect(res.json.correlation_id).toMatch(/^[0-9a-f-]{36}$/);
}

const bearerCreate = (token: string) =>
  tlsRequest(new URL("/identities?api-version=2023-10-01", emulator.endpoint), ca.ca, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
  });

describe("the test tenant's authority", () => {
  it("describes itself: host, tenant, application, user and the AZURE_* settings", () => {
    const host = new URL(emulator.endpoint).origin;
    expect(authority()).toMatchObject({
      authorityHost: host,
      tenantId: EMULATOR_TENANT_ID,
      clientId: EMULATOR_CLIENT_ID,
      username: EMULATOR_USERNAME,
      userObjectId: EMULATOR_USER_OBJECT_ID,
    });
    expect(authority().clientSecret).toMatch(/^[A-Za-z0-9_-]{32,}$/);
    expect(authority().password).toMatch(/^[A-Za-z0-9_-]{16,}$/);
    expect(Object.entries(authority().settings)).toEqual([
      ["AZURE_TENANT_ID", EMULATOR_TENANT_ID],
      ["AZURE_CLIENT_ID", EMULATOR_CLIENT_ID],
      ["AZURE_CLIENT_SECRET", authority().clientSecret],
      ["AZURE_AUTHORITY_HOST", host],
      ["AZURE_USERNAME", EMULATOR_USERNAME],
      ["AZURE_PASSWORD", authority().password],
    ]);
  });

  it("keeps its secrets exactly as long as the signing key (a state or key file keeps both)", async () => {
    const again = await startTestEmulator({
      tls: { cert: ca.cert, key: ca.key },
      entra: "on",
      signingKeyPem,
    });
    const other = await startTestEmulator({ tls: { cert: ca.cert, key: ca.key }, entra: "on" });
    try {
      expect(again.entraAuthority!.clientSecret).toBe(authority().clientSecret);
      expect(again.entraAuthority!.password).toBe(authority().password);
      expect(other.entraAuthority!.clientSecret).not.toBe(authority().clientSecret);
      expect(other.entraAuthority!.password).not.toBe(authority().password);
    } finally {
      await Promise.all([again.close(), other.close()]);
    }
  });

  it("exists only with TLS and Entra on (MSAL refuses an authority that is not https)", async () => {
    const plain = await startTestEmulator({ entra: "on", signingKeyPem });
    const off = await startTestEmulator({ tls: { cert: ca.cert, key: ca.key }, signingKeyPem });
    try {
      expect(plain.entraAuthority).toBeUndefined();
      expect(off.entraAuthority).toBeUndefined();
      const res = await tlsRequest(
        new URL(`/${EMULATOR_TENANT_ID}/v2.0/.well-known/openid-configuration`, off.endpoint),
        ca.ca,
      );
      expect(res.status).toBe(404);
      assertErrorShape(res.json);
    } finally {
      await Promise.all([plain.close(), off.close()]);
    }
  });

  it("serves OpenID discovery and its signing keys, and knows no other tenant", async () => {
    const discovery = await tlsRequest(tenantUrl("v2.0/.well-known/openid-configuration"), ca.ca);
    expect(discovery.status).toBe(200);
    const issuer = `${authority().authorityHost}/${EMULATOR_TENANT_ID}/v2.0`;
    expect(discovery.json).toMatchObject({
      issuer,
      token_endpoint: tenantUrl("oauth2/v2.0/token"),
      jwks_uri: tenantUrl("discovery/v2.0/keys"),
      id_token_signing_alg_values_supported: ["RS256"],
    });
    expect(typeof discovery.json.authorization_endpoint).toBe("string");

    const keys = await tlsRequest(discovery.json.jwks_uri, ca.ca);
    expect(keys.status).toBe(200);
    const token = await appToken(emulator, ca.ca);
    const [header, payload, signature] = token.split(".");
    const kid = JSON.parse(Buffer.from(header!, "base64url").toString()).kid as string;
    const jwk = (keys.json.keys as (JsonWebKey & { kid: string })[]).find((k) => k.kid === kid);
    expect(jwk, "the token's key is published at jwks_uri").toBeDefined();
    const key = createPublicKey({ key: jwk!, format: "jwk" });
    expect(
      verify(
        "sha256",
        Buffer.from(`${header}.${payload}`),
        key,
        Buffer.from(signature!, "base64url"),
      ),
    ).toBe(true);

    const foreign = "0b1d0000-0000-4000-8000-00000000beef";
    const unknown = await tlsRequest(
      `${authority().authorityHost}/${foreign}/v2.0/.well-known/openid-configuration`,
      ca.ca,
    );
    expectEntraError(unknown, 400, "invalid_tenant", 90002);
    expectEntraError(
      await tlsRequest(tenantUrl("oauth2/v2.0/token"), ca.ca),
      400,
      "invalid_request",
      900561,
    );
  });

  it("issues client-credentials tokens with the claims of Entra's v2 application tokens", async () => {
    const res = await authorityToken(emulator, ca.ca, {
      grant_type: "client_credentials",
      client_secret: authority().clientSecret,
      scope: `${ACS}/.default`,
    });
    expect(res.status, res.text).toBe(200);
    expect(res.json).toMatchObject({ token_type: "Bearer", expires_in: 3600 });
    expect(res.headers["cache-control"]).toMatch(/no-store/);
    const claims = claimsOf(res.json.access_token);
    expect(claims).toMatchObject({
      aud: ACS,
      iss: `${authority().authorityHost}/${EMULATOR_TENANT_ID}/v2.0`,
      tid: EMULATOR_TENANT_ID,
      azp: EMULATOR_CLIENT_ID,
      azpacr: "1",
      idtyp: "app",
      ver: "2.0",
    });
    expect(claims.oid).toMatch(/^[0-9a-f-]{36}$/);
    expect(claims.sub).toBe(claims.oid);
    expect(claims.exp - claims.iat).toBe(3600);
    expect(claims.nbf).toBe(claims.iat);
    expect(claims).not.toHaveProperty("roles");
    expect(claims).not.toHaveProperty("scp");

    // The ACS SDK asks for `https://communication.azure.com//.default`: the resource with its
    // trailing slash, which Entra writes back in `aud`.
    const slashed = claimsOf(await appToken(emulator, ca.ca, `${ACS}//.default`));
    expect(slashed.aud).toBe(`${ACS}/`);
  });

  it("refuses a wrong or missing secret, an unknown application and a scope that is not /.default, as Entra does", async () => {
    const wrong = await authorityToken(emulator, ca.ca, {
      grant_type: "client_credentials",
      client_secret: "not-the-secret",
      scope: `${ACS}/.default`,
    });
    expectEntraError(wrong, 401, "invalid_client", 7000215);
    expect(wrong.json.error_description).toContain("Invalid client secret provided.");
    expect(wrong.text).not.toContain(authority().clientSecret);

    expectEntraError(
      await authorityToken(emulator, ca.ca, {
        grant_type: "client_credentials",
        scope: `${ACS}/.default`,
      }),
      401,
      "invalid_client",
      7000218,
    );
    expectEntraError(
      await tlsRequest(tenantUrl("oauth2/v2.0/token"), ca.ca, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({
          grant_type: "client_credentials",
          client_id: "0b1d0000-0000-4000-8000-00000000beef",
          client_secret: authority().clientSecret,
          scope: `${ACS}/.default`,
        }).toString(),
      }),
      400,
      "unauthorized_client",
      700016,
    );
    expectEntraError(
      await authorityToken(emulator, ca.ca, {
        grant_type: "client_credentials",
        client_secret: authority().clientSecret,
        scope: `${ACS}/clients/VoIP`,
      }),
      400,
      "invalid_scope",
      1002012,
    );
    expectEntraError(
      await authorityToken(emulator, ca.ca, {
        grant_type: "client_credentials",
        client_secret: authority().clientSecret,
        scope: "https://vault.azure.net/.default",
      }),
      400,
      "invalid_resource",
      500011,
    );
    expectEntraError(
      await authorityToken(emulator, ca.ca, { grant_type: "authorization_code" }),
      400,
      "unsupported_grant_type",
      70003,
    );
  });

  it("issues the test user's delegated tokens (password grant) with scp, an id token and client info", async () => {
    const res = await authorityToken(emulator, ca.ca, {
      grant_type: "password",
      username: authority().username.toUpperCase(),
      password: authority().password,
      scope: `${ACS}/clients/VoIP openid profile offline_access`,
      client_info: "1",
    });
    expect(res.status, res.text).toBe(200);
    expect(res.json.scope.split(" ")).toEqual([`${ACS}/clients/VoIP`, "openid", "profile"]);
    const claims = claimsOf(res.json.access_token);
    expect(claims).toMatchObject({
      aud: `${ACS}/clients`,
      scp: "VoIP",
      oid: EMULATOR_USER_OBJECT_ID,
      tid: EMULATOR_TENANT_ID,
      azp: EMULATOR_CLIENT_ID,
      azpacr: "0",
      preferred_username: EMULATOR_USERNAME,
      ver: "2.0",
    });
    expect(claims).not.toHaveProperty("idtyp");
    expect(claimsOf(res.json.id_token)).toMatchObject({
      aud: EMULATOR_CLIENT_ID,
      oid: EMULATOR_USER_OBJECT_ID,
      sub: claims.sub,
    });
    expect(JSON.parse(Buffer.from(res.json.client_info, "base64url").toString())).toEqual({
      uid: EMULATOR_USER_OBJECT_ID,
      utid: EMULATOR_TENANT_ID,
    });

    // `.default` grants every delegated permission of the resource.
    const all = claimsOf(
      await userToken(emulator, ca.ca, "https://auth.msft.communication.azure.com/.default"),
    );
    expect(all.scp.split(" ").sort()).toEqual(
      ["Teams.ManageCalls", "Teams.ManageChats", "TeamsExtension.ManageCalls"].sort(),
    );
  });

  it("refuses a wrong password (AADSTS50126), an unknown user and unknown scopes", async () => {
    const password = (fields: Record<string, string>) =>
      authorityToken(emulator, ca.ca, {
        grant_type: "password",
        username: authority().username,
        password: authority().password,
        scope: `${ACS}/clients/VoIP`,
        ...fields,
      });
    const wrong = await password({ password: "not-the-password" });
    expectEntraError(wrong, 400, "invalid_grant", 50126);
    expect(wrong.json.error_description).toContain("invalid username or password");
    expectEntraError(
      await password({ username: "nobody@acs-emulator.test" }),
      400,
      "invalid_grant",
      50034,
    );
    expectEntraError(
      await password({ scope: `${ACS}/clients/Mail.Send` }),
      400,
      "invalid_scope",
      70011,
    );
    expectEntraError(
      await password({
        scope: `${ACS}/clients/VoIP https://auth.msft.communication.azure.com/Teams.ManageCalls`,
      }),
      400,
      "invalid_scope",
      28000,
    );
    // The ACS data plane is called as an application: no delegated permission to consent to.
    expectEntraError(await password({ scope: `${ACS}/.default` }), 400, "invalid_grant", 65001);
  });
});

describe("the ACS operations with the authority's tokens", () => {
  it("accept its application tokens for ACS as they accept managed-identity tokens", async () => {
    seen.length = 0;
    const res = await bearerCreate(await appToken(emulator, ca.ca));
    expect(res.status, res.text).toBe(201);
    expect(seen).toMatchObject([{ operation: "createIdentity", info: { auth: "bearer" } }]);
  });

  it("refuse its tokens for another audience, expired ones, and tokens of another tenant or issuer", async () => {
    const sample = await appToken(emulator, ca.ca);
    const claims = claimsOf(sample);
    const now = Math.floor(Date.now() / 1000);
    /** Refused with 401 Denied, and the reason the emulator logs for it. */
    const denied = async (token: string, failure: string) => {
      warnings.length = 0;
      const res = await bearerCreate(token);
      expect(res.status, res.text).toBe(401);
      expect(res.json.error.code).toBe("Denied");
      expect(warnings).toEqual([
        expect.objectContaining({ msg: "emulator refused a bearer token", failure }),
      ]);
    };
    // Each variant differs from an accepted token in one claim, and is signed by the same key.
    expect((await bearerCreate(forgeToken(sample, claims, signingKeyPem))).status).toBe(201);
    await denied(await userToken(emulator, ca.ca), "wrong-audience");
    await denied(
      forgeToken(
        sample,
        { ...claims, iat: now - 7200, nbf: now - 7200, exp: now - 1 },
        signingKeyPem,
      ),
      "expired",
    );
    await denied(forgeToken(sample, { ...claims, nbf: now + 600 }, signingKeyPem), "not-yet-valid");
    const foreign = "0b1d0000-0000-4000-8000-00000000beef";
    await denied(forgeToken(sample, { ...claims, tid: foreign }, signingKeyPem), "wrong-tenant");
    // Signed by the emulator but by neither of its Entra endpoints: its issuer is unknown.
    await denied(
      forgeToken(
        sample,
        { ...claims, tid: foreign, iss: `${authority().authorityHost}/${foreign}/v2.0` },
        signingKeyPem,
      ),
      "wrong-issuer",
    );
    await denied(
      forgeToken(
        sample,
        { ...claims, iss: `https://login.microsoftonline.com/${EMULATOR_TENANT_ID}/v2.0` },
        signingKeyPem,
      ),
      "wrong-issuer",
    );
    // The right claims under another key, and no JWT at all.
    const otherKey = generateKeyPairSync("rsa", { modulusLength: 2048 })
      .privateKey.export({ type: "pkcs8", format: "pem" })
      .toString();
    await denied(forgeToken(sample, claims, otherKey), "bad-signature");
    await denied("not-a-jwt", "malformed-token");
  });
});

describe("@azure/identity against the authority (child processes)", { timeout: 120_000 }, () => {
  const entraEnv = () => ({
    ACS_TEST_ENDPOINT: emulator.endpoint,
    ENTRA_AUTHORITY_HOST: authority().authorityHost,
    ENTRA_TENANT_ID: authority().tenantId,
    ENTRA_CLIENT_ID: authority().clientId,
    ENTRA_CLIENT_SECRET: authority().clientSecret,
  });

  it("ClientSecretCredential gets an ACS token the identity client works with; a wrong secret is invalid_client", async () => {
    seen.length = 0;
    const run = await runEntraSuite("client-secret", ca.caFile, entraEnv());
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.steps.token.claims).toMatchObject({
      aud: ACS,
      tid: EMULATOR_TENANT_ID,
      azp: EMULATOR_CLIENT_ID,
      idtyp: "app",
    });
    expect(run.steps.identity.id).toMatch(/^8:acs:[0-9a-f-]{36}_[0-9a-f-]{36}$/);
    expect(run.steps.identity.issuedScope).toBe("chat");
    expect(run.steps["wrong-secret"].name).toMatch(
      /^(AuthenticationRequiredError|AuthenticationError|CredentialUnavailableError)$/,
    );
    expect(run.steps["wrong-secret"].message).toContain("AADSTS7000215");
    expect(run.steps["wrong-secret"].message).toContain("invalid_client");
    // create, issue, revoke, delete: each authenticated with the authority's bearer token.
    expect(seen.map((s) => `${s.operation} ${s.info.auth}`)).toEqual([
      "createIdentity bearer",
      "issueAccessToken bearer",
      "revokeAccessTokens bearer",
      "deleteIdentity bearer",
    ]);
  });

  it("DefaultAzureCredential works with exactly the printed AZURE_* settings (EnvironmentCredential)", async () => {
    seen.length = 0;
    const run = await runEntraSuite("default", ca.caFile, {
      ACS_TEST_ENDPOINT: emulator.endpoint,
      ...authority().settings,
    });
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.steps.token.claims).toMatchObject({ aud: ACS, idtyp: "app" });
    expect(run.steps.identity.id).toMatch(/^8:acs:/);
    expect(seen).toHaveLength(4);
    expect(new Set(seen.map((s) => s.info.auth))).toEqual(new Set(["bearer"]));
  });
});

/** `npm run emulator` (the command's source) with exactly `env`; resolves with its first `n` lines. */
function emulatorCommand(env: Record<string, string>, n: number) {
  const child = spawn(process.execPath, ["--import", "tsx", "packages/emulator/src/main.ts"], {
    cwd: fileURLToPath(new URL("../..", import.meta.url)),
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const lines = new Promise<string[]>((resolve, reject) => {
    child.stdout!.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      const all = stdout.split("\n");
      if (all.length > n) {
        resolve(all.slice(0, n));
      }
    });
    void exited.then(() => reject(new Error(`the emulator exited: ${stdout}${stderr}`)));
  });
  const stop = async () => {
    child.kill("SIGTERM");
    await exited;
  };
  return { lines, stop };
}

describe("the command's lines (ACS_EMULATOR_ENTRA=on with TLS)", { timeout: 120_000 }, () => {
  it("prints the AZURE_* lines after the connection string; they work as printed, and survive a --state restart", async () => {
    const dir = mkdtempSync(join(tmpdir(), "acs-emulator-entra-"));
    const env = {
      ACS_EMULATOR_TLS_CERT: ca.certFile,
      ACS_EMULATOR_TLS_KEY: ca.keyFile,
      ACS_EMULATOR_ENTRA: "on",
      ACS_EMULATOR_PORT: "0",
      ACS_EMULATOR_STATE_FILE: join(dir, "state.json"),
      LOG_LEVEL: "warn",
    };
    const parse = (lines: string[]) =>
      lines.map((line) => {
        const at = line.indexOf("=");
        return [line.slice(0, at), line.slice(at + 1)] as [string, string];
      });
    try {
      const first = emulatorCommand(env, 9);
      let printed: [string, string][];
      try {
        printed = parse(await first.lines);
        expect(printed.map(([name]) => name)).toEqual([
          "COMMUNICATION_SERVICES_CONNECTION_STRING",
          ...PRINTED_ENTRA_LINES,
        ]);
        const values = Object.fromEntries(printed);
        const endpoint = /endpoint=([^;]+)/.exec(
          values.COMMUNICATION_SERVICES_CONNECTION_STRING!,
        )![1]!;
        expect(values.AZURE_AUTHORITY_HOST).toBe(new URL(endpoint).origin);
        // DefaultAzureCredential, given exactly the AZURE_* lines as printed.
        const azure = Object.fromEntries(printed.filter(([name]) => name.startsWith("AZURE_")));
        const run = await runEntraSuite("default", ca.caFile, {
          ACS_TEST_ENDPOINT: endpoint,
          ...azure,
        });
        expect(run.stderr).toBe("");
        expect(run.code).toBe(0);
        expect(run.steps.identity.id).toMatch(/^8:acs:/);
      } finally {
        await first.stop();
      }
      // The secrets are derived from the signing key, which the state file keeps.
      const second = emulatorCommand(env, 9);
      try {
        const again = Object.fromEntries(parse(await second.lines));
        const before = Object.fromEntries(printed);
        expect(again.AZURE_CLIENT_SECRET).toBe(before.AZURE_CLIENT_SECRET);
        expect(again.AZURE_PASSWORD).toBe(before.AZURE_PASSWORD);
        expect(again.IDENTITY_HEADER).not.toBe(before.IDENTITY_HEADER);
      } finally {
        await second.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
