import { execFile } from "node:child_process";
import { sign } from "node:crypto";
import { request } from "node:https";
import { fileURLToPath } from "node:url";
import { expect } from "vitest";
import {
  EMULATOR_TENANT_ID,
  EMULATOR_USER_OBJECT_ID,
  type Emulator,
} from "@acs-identity-gateway/emulator";
import { compileScript } from "../helpers/scripts.js";

/**
 * Helpers of the Entra ID tests (entra-authority, access-exchange, command): raw requests to an
 * emulator listening with TLS, trusting the test CA for that request only; tokens from the
 * emulator's authority; forged variants of them; and the SDK suite run in a child process (the SDKs
 * trust a CA only through NODE_EXTRA_CA_CERTS, read at process start). An emulator here is one in
 * process or the installed command, described by what it printed (only its authority is needed).
 */
/** The lines `--entra` adds after the connection string line, as printed (with TLS). */
export const PRINTED_ENTRA_LINES = [
  "AZURE_TENANT_ID",
  "AZURE_CLIENT_ID",
  "AZURE_CLIENT_SECRET",
  "AZURE_AUTHORITY_HOST",
  "IDENTITY_ENDPOINT",
  "IDENTITY_HEADER",
  "AZURE_USERNAME",
  "AZURE_PASSWORD",
];

export interface TlsResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any;
}

export function tlsRequest(
  url: string | URL,
  ca: string,
  init: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<TlsResponse> {
  const body = init.body === undefined ? undefined : Buffer.from(init.body);
  return new Promise((resolve, reject) => {
    const outgoing = request(
      url,
      {
        method: init.method ?? "GET",
        ca,
        headers: {
          ...(body === undefined ? {} : { "content-length": String(body.length) }),
          ...init.headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let json: unknown;
          try {
            json = text === "" ? undefined : JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    outgoing.on("error", reject);
    outgoing.end(body);
  });
}

/** The claims of a compact JWT (signature not checked). */
export function claimsOf(token: string): Record<string, any> {
  return JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString("utf8"));
}

/**
 * A token with `claims`, signed RS256 with `privateKeyPem` under the header of `sample` (a token the
 * emulator issued with that key): what an Entra token with other claims would look like, signed by
 * the same authority, so a test can check each claim the emulator verifies on its own.
 */
export function forgeToken(
  sample: string,
  claims: Record<string, unknown>,
  privateKeyPem: string,
): string {
  const input = `${sample.split(".")[0]}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}`;
  return `${input}.${sign("sha256", Buffer.from(input), privateKeyPem).toString("base64url")}`;
}

/** Asks the emulator's authority for a token (`grant`'s form fields), trusting `ca`. */
export function authorityToken(
  emulator: Pick<Emulator, "entraAuthority">,
  ca: string,
  form: Record<string, string>,
): Promise<TlsResponse> {
  const authority = emulator.entraAuthority!;
  return tlsRequest(`${authority.authorityHost}/${authority.tenantId}/oauth2/v2.0/token`, ca, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ client_id: authority.clientId, ...form }).toString(),
  });
}

/** An access token of the test application (client credentials) for `scope`. */
export async function appToken(
  emulator: Pick<Emulator, "entraAuthority">,
  ca: string,
  scope = "https://communication.azure.com/.default",
): Promise<string> {
  const res = await authorityToken(emulator, ca, {
    grant_type: "client_credentials",
    client_secret: emulator.entraAuthority!.clientSecret,
    scope,
  });
  if (res.status !== 200) {
    throw new Error(`client credentials refused: ${res.text}`);
  }
  return res.json.access_token as string;
}

/** An access token of the test user (password grant) for `scope`, with its whole answer. */
export async function userToken(
  emulator: Pick<Emulator, "entraAuthority">,
  ca: string,
  scope = "https://communication.azure.com/clients/VoIP",
): Promise<string> {
  const authority = emulator.entraAuthority!;
  const res = await authorityToken(emulator, ca, {
    grant_type: "password",
    username: authority.username,
    password: authority.password,
    scope,
  });
  if (res.status !== 200) {
    throw new Error(`password grant refused: ${res.text}`);
  }
  return res.json.access_token as string;
}

const suite = fileURLToPath(new URL("./entra-sdk-suite.ts", import.meta.url));

/**
 * Runs entra-sdk-suite.ts in `mode` in a child process with exactly `env` (plus PATH), trusting the
 * test CA through NODE_EXTRA_CA_CERTS. Resolves with its exit code, its steps (the JSON lines of
 * stdout, by step name) and stderr.
 */
export async function runEntraSuite(
  mode: "client-secret" | "default" | "exchange",
  caFile: string,
  env: Record<string, string>,
): Promise<{ code: number; steps: Record<string, any>; stderr: string }> {
  const compiled = await compileScript(suite);
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [compiled, mode],
      {
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", NODE_EXTRA_CA_CERTS: caFile, ...env },
        timeout: 120_000,
        cwd: fileURLToPath(new URL("../..", import.meta.url)),
      },
      (error, stdout, stderr) => {
        const steps: Record<string, any> = {};
        for (const line of stdout.split("\n")) {
          if (line.startsWith("{")) {
            const { step, ...fields } = JSON.parse(line) as { step: string };
            steps[step] = fields;
          }
        }
        resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, steps, stderr });
      },
    );
  });
}

/**
 * The real AzureCommunicationTokenCredential with Entra options (entra-sdk-suite.ts, `exchange`
 * mode) against `emulator` (Entra on, with TLS): UsernamePasswordCredential's token for the test
 * user exchanged at `/access/entra` (with and without scopes) and `/access/teamsExtension`, a wrong
 * password refused, and an expired token of the test user's (re-signed with `signingKeyPem`, the
 * emulator's signing key) surfacing the exchange's 401.
 */
export async function expectCredentialExchanges(
  emulator: Pick<Emulator, "endpoint" | "resourceId" | "entraAuthority">,
  ca: { ca: string; caFile: string },
  signingKeyPem: string,
): Promise<void> {
  const sample = await userToken(emulator, ca.ca);
  const now = Math.floor(Date.now() / 1000);
  const authority = emulator.entraAuthority!;
  const run = await runEntraSuite("exchange", ca.caFile, {
    ACS_TEST_ENDPOINT: emulator.endpoint,
    ENTRA_AUTHORITY_HOST: authority.authorityHost,
    ENTRA_TENANT_ID: authority.tenantId,
    ENTRA_CLIENT_ID: authority.clientId,
    ENTRA_USERNAME: authority.username,
    ENTRA_PASSWORD: authority.password,
    // Expired an hour ago, otherwise the test user's own.
    REFUSED_ENTRA_TOKEN: forgeToken(
      sample,
      { ...claimsOf(sample), iat: now - 7200, nbf: now - 7200, exp: now - 3600 },
      signingKeyPem,
    ),
  });
  expect(run.stderr).toBe("");
  expect(run.code).toBe(0);
  expect(run.steps["user-token"].claims).toMatchObject({
    aud: "https://communication.azure.com/clients",
    scp: "VoIP",
    oid: EMULATOR_USER_OBJECT_ID,
  });
  const entraId = `acs:${emulator.resourceId}_wf_${EMULATOR_TENANT_ID}_${EMULATOR_USER_OBJECT_ID}`;
  expect(run.steps.entra.claims).toMatchObject({ skypeid: entraId, acsScope: "voip" });
  expect(run.steps.entra.expiresOnTimestamp).toBe(run.steps.entra.claims.exp * 1000);
  // No scopes: the SDK's default, https://communication.azure.com/clients/.default.
  expect(run.steps["entra-default-scopes"].claims).toMatchObject({
    skypeid: entraId,
    acsScope: "voip,chat",
  });
  expect(run.steps["teams-extension"].claims).toMatchObject({
    skypeid: `acs:${emulator.resourceId}_${EMULATOR_TENANT_ID}_${EMULATOR_USER_OBJECT_ID}`,
    acsScope: "voip",
  });
  expect(run.steps["wrong-password"].message).toContain("AADSTS50126");
  expect(run.steps["wrong-password"].message).toContain("invalid_grant");
  expect(run.steps.refused.message).toContain("Status: 401");
  expect(run.steps.refused.message).toContain("InvalidAccessToken");
}
