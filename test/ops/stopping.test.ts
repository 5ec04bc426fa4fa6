import Fastify from "fastify";
import { describe, expect, it } from "vitest";
import { registerStoppingReadiness } from "../../src/server/plugins/stopping.js";

function server() {
  const fastify = Fastify();
  fastify.get("/readyz", async () => ({ status: "ready" }));
  fastify.get("/healthz", async () => ({ status: "ok" }));
  return fastify;
}

describe("readiness while stopping", () => {
  it("leaves /readyz alone until stopping begins", async () => {
    const fastify = server();
    const stopping = registerStoppingReadiness(fastify);
    expect(stopping.stopping).toBe(false);
    const response = await fastify.inject({ url: "/readyz" });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ status: "ready" });
    await fastify.close();
  });

  it("then answers /readyz 503 stopping, and serves everything else as before", async () => {
    const fastify = server();
    const stopping = registerStoppingReadiness(fastify);
    stopping.begin();
    expect(stopping.stopping).toBe(true);
    const readiness = await fastify.inject({ url: "/readyz" });
    expect(readiness.statusCode).toBe(503);
    expect(readiness.headers["cache-control"]).toBe("no-store");
    expect(readiness.json()).toEqual({ status: "stopping" });
    const health = await fastify.inject({ url: "/healthz" });
    expect(health.statusCode).toBe(200);
    // A query string does not dodge it: the route, not the raw URL, is compared.
    expect((await fastify.inject({ url: "/readyz?x=1" })).statusCode).toBe(503);
    await fastify.close();
  });
});
