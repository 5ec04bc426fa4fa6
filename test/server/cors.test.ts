import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import { startGateway } from "../helpers/gateway.js";

/**
 * The exact CORS answers of /graphql, header by header: what a browser decides on. The caller-
 * facing cases (a page's preflight and POST) are in test/client/http.test.ts; this file pins the
 * edges too (a preflight without its method, another path, no Origin at all).
 */
const PAGE = "https://app.example.com";
const CORS_HEADERS = [
  "access-control-allow-origin",
  "access-control-allow-methods",
  "access-control-allow-headers",
  "access-control-allow-credentials",
  "access-control-expose-headers",
  "access-control-max-age",
  "vary",
];

function corsOf(headers: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    CORS_HEADERS.filter((name) => headers[name] !== undefined).map((name) => [name, headers[name]]),
  );
}

describe("CORS on /graphql", () => {
  let app: App;
  beforeAll(async () => {
    app = await startGateway({ CORS_ORIGINS: `${PAGE},http://localhost:5173` });
  });
  afterAll(async () => {
    await app?.close();
  });

  const send = (method: "OPTIONS" | "POST", url: string, headers: Record<string, string>) =>
    app.server.fastify.inject({
      method,
      url,
      headers,
      ...(method === "POST" ? { payload: JSON.stringify({ query: "{ __typename }" }) } : {}),
    });

  it("answers an allowed origin's preflight 204 with empty body and the policy's headers", async () => {
    const response = await send("OPTIONS", "/graphql", {
      origin: PAGE,
      "access-control-request-method": "POST",
      "access-control-request-headers": "authorization,content-type",
    });
    expect(response.statusCode).toBe(204);
    expect(response.body).toBe("");
    expect(response.headers["content-length"]).toBe("0");
    expect(corsOf(response.headers)).toEqual({
      "access-control-allow-origin": PAGE,
      "access-control-allow-methods": "GET, POST",
      "access-control-allow-headers":
        "authorization, content-type, apollo-require-preflight, x-apollo-operation-name, x-request-id",
      "access-control-expose-headers": "x-request-id",
      "access-control-max-age": "600",
      vary: "Origin",
    });
  });

  it("refuses a preflight without Access-Control-Request-Method with 400", async () => {
    const response = await send("OPTIONS", "/graphql", { origin: PAGE });
    expect(response.statusCode).toBe(400);
    expect(response.body).toBe("Invalid Preflight Request");
    expect(response.headers["content-type"]).toMatch(/^text\/plain/);
  });

  it("answers 404 with no CORS header to a preflight from another origin, or with no origin", async () => {
    const preflights: Record<string, string>[] = [
      { origin: "https://evil.example", "access-control-request-method": "POST" },
      { origin: "null", "access-control-request-method": "POST" },
      { "access-control-request-method": "POST" },
    ];
    for (const headers of preflights) {
      const response = await send("OPTIONS", "/graphql", headers);
      expect(response.statusCode).toBe(404);
      expect(corsOf(response.headers)).toEqual({ vary: "Origin" });
    }
  });

  it("lets an allowed origin read a POST's answer, and tells every other caller nothing", async () => {
    const allowed = await send("POST", "/graphql", {
      origin: PAGE,
      "content-type": "application/json",
    });
    expect(allowed.statusCode).toBe(200);
    expect(corsOf(allowed.headers)).toEqual({
      "access-control-allow-origin": PAGE,
      "access-control-expose-headers": "x-request-id",
      vary: "Origin",
    });
    const others: Record<string, string>[] = [{ origin: "https://evil.example" }, {}];
    for (const headers of others) {
      const other = await send("POST", "/graphql", {
        ...headers,
        "content-type": "application/json",
      });
      expect(other.statusCode).toBe(200);
      // Vary on every answer: a shared cache must not serve one origin's answer to another.
      expect(corsOf(other.headers)).toEqual({ vary: "Origin" });
    }
  });

  it("answers an allowed origin's preflight for another path too, and leaves the probes alone", async () => {
    const preflight = await send("OPTIONS", "/elsewhere", {
      origin: PAGE,
      "access-control-request-method": "POST",
    });
    expect(preflight.statusCode).toBe(204);
    expect(preflight.headers["access-control-allow-origin"]).toBe(PAGE);
    const health = await app.server.fastify.inject({
      method: "GET",
      url: "/healthz",
      headers: { origin: PAGE },
    });
    expect(corsOf(health.headers)).toEqual({});
  });
});
