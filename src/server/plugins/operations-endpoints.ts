import type { FastifyPluginAsync } from "fastify";
import type { Metrics } from "../metrics.js";
import type { Readiness } from "../readiness.js";

/**
 * `/healthz` (the process answers), `/readyz` (this instance can serve: 200, or 503 with the
 * reason; a degraded cache is 200 with `status: "degraded"`), `/metrics` (Prometheus). They are
 * unauthenticated: keep them on the internal network (docs/operations.md, "Probes").
 */
export const operationsEndpoints: FastifyPluginAsync<{
  readiness: Readiness;
  metrics: Metrics;
}> = async (fastify, deps) => {
  fastify.get("/healthz", async (_request, reply) => {
    reply.header("cache-control", "no-store");
    return { status: "ok" };
  });

  fastify.get("/readyz", async (_request, reply) => {
    const report = await deps.readiness.report();
    reply.header("cache-control", "no-store");
    reply.code(report.ready ? 200 : 503);
    return { status: report.status, checks: report.checks };
  });

  fastify.get("/metrics", async (_request, reply) => {
    reply.header("content-type", deps.metrics.registry.contentType);
    return deps.metrics.registry.metrics();
  });
};
