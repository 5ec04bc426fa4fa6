import { execFile } from "node:child_process";
import { sign } from "node:crypto";
import { request } from "node:https";
import { fileURLToPath } from "node:url";
import type { Emulator } from "@acs-identity-gateway/emulator";
import { compileScript } from "../helpers/scripts.js";

/**
 * Helpers of the Entra ID tests (entra-authority, access-exchange): raw requests to an emulator
 * listening with TLS, trusting the test CA for that request only; tokens from the emulator's
 * authority; forged variants of them; and the SDK suite run in a child process (the SDKs trust a
 * CA only through NODE_EXTRA_CA_CERTS, read at process start).
 */
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
  emulator: Emulator,
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
  emulator: Emulator,
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
  emulator: Emulator,
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
