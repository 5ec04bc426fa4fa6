import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { App } from "../../src/app.js";
import { persistedOperations } from "@acs-identity-gateway/client";
import { loadConfig } from "../../src/config.js";
import { TRUSTED_DOCUMENTS_MANIFEST } from "../../src/server/persisted-documents.js";
import { PRODUCTION_SETTINGS, startGateway } from "../helpers/gateway.js";
import { startRedis, type RedisProcess } from "../helpers/redis.js";

const PAGE = "http://localhost:5173";

function preflight(app: App, origin: string) {
  return app.server.fastify.inject({
    method: "OPTIONS",
    url: "/graphql",
    headers: {
      origin,
      "access-control-request-method": "POST",
      "access-control-request-headers": "authorization,content-type,x-request-id",
    },
  });
}

function post(app: App, body: unknown, headers: Record<string, string> = {}) {
  return app.server.fastify.inject({
    method: "POST",
    url: "/graphql",
    headers: { "content-type": "application/json", ...headers },
    payload: JSON.stringify(body),
  });
}

const ME = "query Me { me { subject } }";
const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

describe("CORS for browser pages", () => {
  let dev: App;
  let listed: App;
  beforeAll(async () => {
    dev = await startGateway({ NODE_ENV: "development" });
    listed = await startGateway({ CORS_ORIGINS: "https://app.example.com,http://localhost:5173" });
  });
  afterAll(async () => {
    await Promise.all([dev?.close(), listed?.close()]);
  });

  it("answers a preflight from a localhost page in development with 204 and the headers a browser needs", async () => {
    const response = await preflight(dev, PAGE);
    expect(response.statusCode).toBe(204);
    expect(response.headers["access-control-allow-origin"]).toBe(PAGE);
    const allowed = String(response.headers["access-control-allow-headers"]).toLowerCase();
    for (const header of [
      "authorization",
      "content-type",
      "apollo-require-preflight",
      "x-request-id",
    ]) {
      expect(allowed.split(",").map((h) => h.trim())).toContain(header);
    }
    expect(String(response.headers["access-control-allow-methods"])).toContain("POST");
  });

  it("lets an allowed origin read the answer of a POST", async () => {
    const response = await post(dev, { query: ME }, { origin: "http://127.0.0.1:8080" });
    expect(response.statusCode).toBe(200);
    expect(response.headers["access-control-allow-origin"]).toBe("http://127.0.0.1:8080");
    expect(response.json().data.me.subject).toBe("anonymous");
  });

  it("sends no CORS header to an origin that is not allowed, and refuses its preflight", async () => {
    const refusedPreflight = await preflight(dev, "https://evil.example");
    expect(refusedPreflight.statusCode).not.toBe(204);
    expect(refusedPreflight.headers["access-control-allow-origin"]).toBeUndefined();
    const answer = await post(dev, { query: ME }, { origin: "https://evil.example" });
    expect(answer.headers["access-control-allow-origin"]).toBeUndefined();
  });

  it("allows exactly the CORS_ORIGINS list when it is set", async () => {
    expect((await preflight(listed, "https://app.example.com")).statusCode).toBe(204);
    expect(
      (await preflight(listed, "https://app.example.com")).headers["access-control-allow-origin"],
    ).toBe("https://app.example.com");
    const other = await preflight(listed, "http://localhost:3000");
    expect(other.headers["access-control-allow-origin"]).toBeUndefined();
  });

  it("keeps CSRF prevention for simple requests from any origin", async () => {
    const response = await dev.server.fastify.inject({
      method: "GET",
      url: `/graphql?query=${encodeURIComponent(ME)}`,
      headers: { origin: PAGE },
    });
    expect(response.statusCode).toBe(400);
    expect(response.body).toContain("CSRF");
  });

  it("serves the explorer at / in development", async () => {
    const response = await dev.server.fastify.inject({ method: "GET", url: "/" });
    expect(response.statusCode).toBe(200);
    expect(response.headers["content-type"]).toContain("text/html");
    expect(response.body).toContain('src="/explorer/graphiql.js?v=');
  });

  it("opens the explorer with an example operation", async () => {
    const response = await dev.server.fastify.inject({
      method: "GET",
      url: "/graphql",
      headers: { accept: "text/html" },
    });
    expect(response.statusCode).toBe(200);
    expect(response.body).toContain("issueMyToken");
  });
});

describe("the explorer and Sandbox when JWT auth and a router secret are on", () => {
  it("prefills the headers to add, with placeholders instead of the secret", async () => {
    const secret = "router-secret-value-0123456789";
    const app = await startGateway({
      AUTH_MODE: "jwt",
      AUTH_JWKS_URL: "http://127.0.0.1:1/keys",
      AUTH_ISSUER: "https://issuer.test/",
      AUTH_AUDIENCE: "api://acs-gateway",
      ROUTER_SECRET: secret,
    });
    try {
      for (const url of ["/graphql", "/sandbox"]) {
        const page = await app.server.fastify.inject({
          method: "GET",
          url,
          headers: { accept: "text/html" },
        });
        expect(page.statusCode, url).toBe(200);
        expect(page.body, url).toContain("Authorization");
        expect(page.body, url).toContain("Bearer \\u003ca JWT from https://issuer.test/");
        expect(page.body, url).toContain("router-authorization");
        expect(page.body, url).not.toContain(secret);
      }
    } finally {
      await app.close();
    }
  });
});

describe("configuration of CORS_ORIGINS and PERSISTED_DOCUMENTS_ONLY", () => {
  it("reads exact origins and the trusted-documents switch", () => {
    const config = loadConfig({
      CORS_ORIGINS: " https://app.example.com , http://localhost:5173",
      PERSISTED_DOCUMENTS_ONLY: "true",
    });
    expect(config.cors).toEqual({
      mode: "list",
      origins: ["https://app.example.com", "http://localhost:5173"],
    });
    expect(config.persistedDocumentsOnly).toBe(true);
    expect(loadConfig({}).cors).toEqual({ mode: "loopback" });
    expect(loadConfig({}).persistedDocumentsOnly).toBe(false);
  });

  it("refuses a clear-text origin off loopback in production, and a switch that is not a boolean", () => {
    expect(() =>
      loadConfig({ NODE_ENV: "production", CORS_ORIGINS: "http://app.example.com" }),
    ).toThrow(
      /CORS_ORIGINS: "http:\/\/app.example.com": must be https:\/\/ \(an http:\/\/ page off loopback would carry tokens in clear text\)/,
    );
    expect(() => loadConfig({ PERSISTED_DOCUMENTS_ONLY: "yes" })).toThrow(
      /PERSISTED_DOCUMENTS_ONLY: must be true or false/,
    );
  });

  it("refuses wildcards and paths", async () => {
    await expect(startGateway({ CORS_ORIGINS: "*" })).rejects.toThrow(/CORS_ORIGINS: no wildcards/);
    await expect(startGateway({ CORS_ORIGINS: "https://app.example.com/" })).rejects.toThrow(
      /CORS_ORIGINS/,
    );
  });
});

describe("automatic persisted queries across instances", () => {
  let redis: RedisProcess;
  let one: App;
  let two: App;
  beforeAll(async () => {
    redis = await startRedis();
    one = await startGateway({ REDIS_URL: redis.url });
    two = await startGateway({ REDIS_URL: redis.url });
  });
  afterAll(async () => {
    await Promise.all([one?.close(), two?.close()]);
    await redis?.stop();
  });

  it("answers PERSISTED_QUERY_NOT_FOUND for an unknown hash, then serves a text registered on the other instance", async () => {
    const query = `query ApqProbe { me { subject } }`;
    const extensions = { persistedQuery: { version: 1, sha256Hash: sha256(query) } };

    const unknown = await post(one, { extensions });
    expect(unknown.json().errors[0].extensions.code).toBe("PERSISTED_QUERY_NOT_FOUND");

    const registered = await post(one, { query, extensions });
    expect(registered.json()).toEqual({ data: { me: { subject: "anonymous" } } });
    // Apollo writes the registration after answering (it does not await the store): wait for it
    // (vi.waitFor's default second is short for a busy machine; the bound only stops a hang).
    await vi.waitFor(
      async () => {
        expect(await redis.client().exists(`acsgw:apq:v1:apq:${sha256(query)}`)).toBe(1);
      },
      { timeout: 15_000, interval: 20 },
    );

    const byHashElsewhere = await post(two, { extensions });
    expect(byHashElsewhere.json()).toEqual({ data: { me: { subject: "anonymous" } } });
  });
});

describe("trusted documents only", () => {
  let app: App;
  beforeAll(async () => {
    app = await startGateway({ PERSISTED_DOCUMENTS_ONLY: "true" });
  });
  afterAll(async () => {
    await app?.close();
  });

  it("still opens the explorer in a browser in development", async () => {
    const page = await app.server.fastify.inject({
      method: "GET",
      url: "/graphql",
      headers: { accept: "text/html" },
    });
    expect(page.statusCode).toBe(200);
    expect(page.headers["content-type"]).toContain("text/html");
  });

  it("refuses ad-hoc query text before parsing it", async () => {
    const response = await post(app, { query: "{ this is not even GraphQL" });
    expect(response.json().errors[0].extensions.code).toBe("PERSISTED_QUERY_ID_REQUIRED");
  });

  it("refuses an id outside the manifest", async () => {
    const response = await post(app, {
      extensions: {
        persistedQuery: { version: 1, sha256Hash: sha256("query X { me { subject } }") },
      },
    });
    expect(response.json().errors[0].extensions.code).toBe("PERSISTED_QUERY_NOT_IN_LIST");
    const byDocumentId = await post(app, { documentId: "nope" });
    expect(byDocumentId.json().errors[0].extensions.code).toBe("PERSISTED_QUERY_NOT_IN_LIST");
  });

  it("executes the manifest's operations by documentId and by Apollo's sha256Hash", async () => {
    const me = persistedOperations.Me;
    expect(TRUSTED_DOCUMENTS_MANIFEST.operations.map((op) => op.id)).toContain(me.id);
    const byDocumentId = await post(app, { documentId: me.id });
    expect(byDocumentId.json()).toEqual({
      data: { me: { subject: "anonymous", communicationUser: null } },
    });

    const issue = persistedOperations.IssueMyToken;
    const byHash = await post(app, {
      extensions: { persistedQuery: { version: 1, sha256Hash: issue.id } },
      variables: { scopes: ["VOIP"] },
    });
    expect(byHash.json().data.issueMyToken.scopes).toEqual(["VOIP"]);

    // What the client entry point sends: the text with its id; the manifest's text is what runs.
    const withText = await post(app, {
      query: issue.body,
      extensions: { persistedQuery: { version: 1, sha256Hash: issue.id } },
      variables: { scopes: ["CHAT"] },
    });
    expect(withText.json().data.issueMyToken.scopes).toEqual(["CHAT"]);
  });
});

describe("production GET /graphql from a browser", () => {
  let app: App;
  beforeAll(async () => {
    app = await startGateway(PRODUCTION_SETTINGS);
  });
  afterAll(async () => {
    await app?.close();
  });

  it("answers a short plain message instead of Apollo's CSRF error", async () => {
    const response = await app.server.fastify.inject({
      method: "GET",
      url: "/graphql",
      headers: { accept: "text/html,application/xhtml+xml" },
    });
    expect(response.statusCode).toBe(200);
    expect(response.headers["content-type"]).toContain("text/plain");
    expect(response.body).toContain("GraphQL endpoint");
    expect(response.body).not.toContain("CSRF");
  });

  it("sends no CORS header to a localhost page when CORS_ORIGINS is unset", async () => {
    const response = await preflight(app, PAGE);
    expect(response.headers["access-control-allow-origin"]).toBeUndefined();
  });
});
