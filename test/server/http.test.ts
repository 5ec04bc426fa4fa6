import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import { startGateway } from "../helpers/gateway.js";
import { startTestIssuer } from "../helpers/jwks.js";
import { compileScript } from "../helpers/scripts.js";

/** The gateway as HTTP clients see it: a started server on a free port. */
let app: App;
let url: string;

beforeAll(async () => {
  app = await startGateway({ HOST: "127.0.0.1" });
  url = await app.listen(0);
});
afterAll(async () => {
  await app?.close();
});

const post = (body: unknown, headers: Record<string, string> = {}) =>
  fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });

describe("the gateway over HTTP", () => {
  it("answers a createUser mutation at /graphql", async () => {
    const response = await post({ query: "mutation { createUser { id } }" });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { data: { createUser: { id: string } } };
    expect(body.data.createUser.id).toMatch(/^8:acs:/);
  });

  it("blocks CSRF-able requests: a simple GET or text/plain POST without a preflight header", async () => {
    const get = await fetch(`${url}?query=${encodeURIComponent("{ me { subject } }")}`);
    expect(get.status).toBe(400);
    expect(await get.text()).toMatch(/CSRF|preflight/i);
    const text = await fetch(url, {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: JSON.stringify({ query: "mutation { createUser { id } }" }),
    });
    expect(text.status).toBe(400);
    const allowed = await fetch(`${url}?query=${encodeURIComponent("{ me { subject } }")}`, {
      headers: { "apollo-require-preflight": "true" },
    });
    expect(allowed.status).toBe(200);
  });

  it("serves the GraphiQL explorer to browsers in development, and Apollo Sandbox at /sandbox", async () => {
    const response = await fetch(url, { headers: { accept: "text/html" } });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toContain("text/html");
    const page = await response.text();
    expect(page).toContain('src="/explorer/graphiql.js?v=');
    expect(page).not.toContain("embeddable-sandbox");
    const sandbox = await fetch(new URL("/sandbox", url), { headers: { accept: "text/html" } });
    expect(sandbox.status).toBe(200);
    expect(await sandbox.text()).toContain("embeddable-sandbox");
  });

  it("answers introspection in development", async () => {
    const response = await post({ query: "{ __schema { queryType { name } } }" });
    expect(((await response.json()) as any).data.__schema.queryType.name).toBe("Query");
  });

  it("answers a GraphQL error for malformed JSON and 413 for an oversized body", async () => {
    const malformed = await post("{ not json");
    expect(malformed.status).toBe(400);
    const huge = await post({ query: `{ me { subject } } #${"x".repeat(64 * 1024)}` });
    expect(huge.status).toBe(413);
  });

  it("reports liveness, readiness and Prometheus metrics", async () => {
    const base = new URL(url).origin;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({
      status: "ok",
      checks: { upstream: "ok", cache: "ok" },
    });
    await post({ query: "mutation { createUser { id } }" });
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toContain("acsgw_token_cache_requests_total");
    expect(metrics).toMatch(
      /acsgw_upstream_requests_total\{operation="createUser",status="201"\} \d+/,
    );
    expect(metrics).toContain("acsgw_upstream_request_duration_seconds_bucket");
  });
});

/** Runs a script as a child without blocking this process, which also serves the gateway. */
async function runScript(
  env: Record<string, string>,
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const quickstart = await compileScript(
    fileURLToPath(new URL("../../scripts/quickstart.ts", import.meta.url)),
  );
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [quickstart],
      { env: { ...process.env, ...env }, encoding: "utf8", timeout: 60_000 },
      (error, stdout, stderr) =>
        resolve({ status: error ? (error.code as number | null) : 0, stdout, stderr }),
    );
  });
}

describe("npm run quickstart", () => {
  it("runs the ACS quickstart flow against a running gateway and exits 0", async () => {
    const result = await runScript({ GATEWAY_URL: url });
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    for (const step of [
      "create a user",
      "issue a voip token",
      "revoke",
      "delete the user",
      "every step worked",
    ]) {
      expect(result.stdout).toContain(step);
    }
    expect(result.stdout).toMatch(/expires on \d{4}-\d{2}-\d{2}T/);
  });

  it("exits non-zero when a step fails", async () => {
    const result = await runScript({ GATEWAY_URL: "http://127.0.0.1:9/graphql" });
    expect(result.status).toBe(1);
    expect(result.stdout).toContain("failed");
  });
});

describe("the gateway in production", () => {
  it("serves no Sandbox, refuses introspection and masks schema hints", async () => {
    const dev = app; // an emulator to point the production gateway at
    const issuer = await startTestIssuer();
    const prod = await startGateway({
      NODE_ENV: "production",
      HOST: "127.0.0.1",
      COMMUNICATION_SERVICES_CONNECTION_STRING: `endpoint=${dev.acs.endpoint};accesskey=${dev.acs.accessKey}`,
      AUTH_MODE: "jwt",
      AUTH_JWKS_URL: issuer.jwksUrl,
      AUTH_ISSUER: issuer.issuer,
      AUTH_AUDIENCE: issuer.audience,
    });
    const authorization = `Bearer ${await issuer.sign({ roles: ["acs.admin"] })}`;
    try {
      const prodUrl = await prod.listen(0);
      const landing = await fetch(prodUrl, { headers: { accept: "text/html" } });
      expect(await landing.text()).not.toContain("embeddable-sandbox");
      const introspection = await fetch(prodUrl, {
        method: "POST",
        headers: { "content-type": "application/json", authorization },
        body: JSON.stringify({ query: "{ __schema { queryType { name } } }" }),
      });
      const body = (await introspection.json()) as { errors?: { message: string }[] };
      expect(body.errors?.[0]?.message).toMatch(/introspection/i);
      // No "Did you mean ...?" hints that would reveal the schema field by field.
      const typo = await fetch(prodUrl, {
        method: "POST",
        headers: { "content-type": "application/json", authorization },
        body: JSON.stringify({ query: "mutation { createUsr { id } }" }),
      });
      expect(JSON.stringify(await typo.json())).not.toContain("createUser");
    } finally {
      await prod.close();
      await issuer.close();
    }
  });
});
