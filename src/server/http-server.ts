import { ApolloServer, type GraphQLRequest } from "@apollo/server";
import { ApolloServerPluginLandingPageDisabled } from "@apollo/server/plugin/disabled";
import { ApolloServerPluginLandingPageLocalDefault } from "@apollo/server/plugin/landingPage/default";
import { fastifyApolloDrainPlugin, fastifyApolloHandler } from "@as-integrations/fastify";
import Fastify, { LogController } from "fastify";
import type { IncomingHttpHeaders } from "node:http";
import type { GraphQLSchema } from "graphql";
import type { Config } from "../config.js";
import type { GatewayContext } from "../graphql/context.js";
import { createFormatError } from "../graphql/errors.js";
import { createQueryLimitRules } from "../graphql/query-limits.js";
import { quieter, type Logger } from "../logger.js";
import { createDocumentStore } from "./document-store.js";
import type { Metrics } from "./metrics.js";

export interface ReadinessReport {
  ready: boolean;
  checks: Record<string, boolean>;
}

export interface HttpServerDeps {
  config: Readonly<Config>;
  schema: GraphQLSchema;
  /** Builds the per-request context from the request headers; throws a GraphQLError to refuse. */
  createContext(headers: IncomingHttpHeaders): Promise<GatewayContext>;
  readiness(): Promise<ReadinessReport>;
  metrics: Metrics;
  logger: Logger;
}

function createFastify(config: Readonly<Config>, logger: Logger) {
  return Fastify({
    // Fastify's own info lines (one "listening" line per interface) would bury the gateway's one
    // start-up line; its warnings and errors still come through.
    loggerInstance: logger.child({ component: "http" }, { level: quieter(logger.level, "warn") }),
    // A line per request would double the cost of a cached token; errors are logged where they happen.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.limits.bodyLimitBytes,
    trustProxy: false,
    return503OnClosing: true,
    requestIdHeader: "x-request-id",
  });
}

export interface HttpServer {
  fastify: ReturnType<typeof createFastify>;
  apollo: ApolloServer<GatewayContext>;
  /** In-process execution through the same context path as HTTP (for tests and scripts). */
  execute(
    request: GraphQLRequest,
    headers?: IncomingHttpHeaders,
  ): ReturnType<ApolloServer<GatewayContext>["executeOperation"]>;
}

export async function createHttpServer(deps: HttpServerDeps): Promise<HttpServer> {
  const { config, logger } = deps;
  const fastify = createFastify(config, logger);

  const apollo = new ApolloServer<GatewayContext>({
    schema: deps.schema,
    introspection: !config.production,
    csrfPrevention: true,
    includeStacktraceInErrorResponses: !config.production,
    hideSchemaDetailsFromClientErrors: config.production,
    validationRules: createQueryLimitRules(config.limits),
    // Bounded by what parsed documents really hold (see document-store.ts), not Apollo's JSON size.
    documentStore: createDocumentStore(),
    formatError: createFormatError({ production: config.production, logger }),
    // Apollo's info lines (e.g. "Enabling inline tracing") are start-up noise for operators.
    logger: logger.child({ component: "apollo" }, { level: quieter(logger.level, "warn") }),
    plugins: [
      fastifyApolloDrainPlugin(fastify),
      config.production
        ? ApolloServerPluginLandingPageDisabled()
        : ApolloServerPluginLandingPageLocalDefault({ embed: true, includeCookies: false }),
    ],
  });
  await apollo.start();

  fastify.route({
    url: "/graphql",
    method: ["GET", "POST", "OPTIONS"],
    handler: fastifyApolloHandler(apollo, {
      context: async (request) => deps.createContext(request.headers),
    }),
  });

  fastify.get("/healthz", async (_request, reply) => {
    reply.header("cache-control", "no-store");
    return { status: "ok" };
  });

  fastify.get("/readyz", async (_request, reply) => {
    const report = await deps.readiness();
    reply.header("cache-control", "no-store");
    reply.code(report.ready ? 200 : 503);
    return { status: report.ready ? "ready" : "unavailable", checks: report.checks };
  });

  fastify.get("/metrics", async (_request, reply) => {
    reply.header("content-type", deps.metrics.registry.contentType);
    return deps.metrics.registry.metrics();
  });

  return {
    fastify,
    apollo,
    async execute(request, headers = {}) {
      const contextValue = await deps.createContext(headers);
      return apollo.executeOperation(request, { contextValue });
    },
  };
}
