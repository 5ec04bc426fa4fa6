import { ApolloServer, type GraphQLRequest } from "@apollo/server";
import {
  ApolloServerPluginCacheControlDisabled,
  ApolloServerPluginInlineTraceDisabled,
  ApolloServerPluginLandingPageDisabled,
} from "@apollo/server/plugin/disabled";
import { fastifyApolloDrainPlugin, fastifyApolloHandler } from "@as-integrations/fastify";
import Fastify, { LogController } from "fastify";
import { randomUUID } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import type { GraphQLSchema } from "graphql";
import type { RedisClient } from "../redis/index.js";
import type { Config } from "../config.js";
import type { GatewayContext } from "../graphql/context.js";
import { createFormatError, isUnexpected } from "../graphql/errors.js";
import { MAX_DOCUMENT_TOKENS } from "../graphql/document-bounds.js";
import { createQueryLimitRules } from "../graphql/query-limits.js";
import { createLineWriter, quieter, type Logger } from "../logger.js";
import { createCors, registerPreflightRoute } from "./cors.js";
import { createExplorer } from "./explorer.js";
import { isBrowserPageRequest, PRODUCTION_GET_MESSAGE } from "./landing-page.js";
import { createDocumentStore } from "./document-store.js";
import type { Metrics } from "./metrics.js";
import { createAccessLog } from "./plugins/access-log.js";
import type { RequestHeaders } from "./plugins/authentication.js";
import { documentBoundsRule } from "./plugins/document-bounds.js";
import { createErrorLogger } from "./plugins/error-logging.js";
import { registerHostCheck } from "./plugins/host-check.js";
import { operationsEndpoints } from "./plugins/operations-endpoints.js";
import type { Readiness } from "./readiness.js";
import {
  APQ_TTL_SECONDS,
  createApqCache,
  createTrustedDocumentsHandler,
  loadTrustedDocuments,
  type TrustedDocuments,
} from "./persisted-documents.js";
import { createRequestPlugin } from "./plugins/request-plugin.js";
import { traceGraphQLHandler, withOperationSpan } from "./plugins/tracing.js";

export interface HttpServerDeps {
  config: Readonly<Config>;
  schema: GraphQLSchema;
  /** Builds the per-request context from the request headers; throws a GraphQLError to refuse. */
  createContext(request: RequestHeaders, requestId: string): Promise<GatewayContext>;
  readiness: Readiness;
  metrics: Metrics;
  logger: Logger;
  /** Shared store for automatic persisted queries; in-process (bounded) when undefined. */
  redis?: RedisClient;
  /** The operations PERSISTED_DOCUMENTS_ONLY allows. @default the manifest `npm run codegen` writes */
  trustedDocuments?: TrustedDocuments;
}

const REQUEST_ID = /^[\w.:-]{1,128}$/;

function createFastify(config: Readonly<Config>, logger: Logger) {
  return Fastify({
    // Fastify's own info lines (one "listening" line per interface) would bury the gateway's one
    // start-up line; its warnings and errors still come through.
    loggerInstance: logger.child({ component: "http" }, { level: quieter(logger.level, "warn") }),
    // Fastify's own request lines are off: the access-log plugin writes one richer line per
    // GraphQL request. And no child logger per request (Fastify's default): every line that
    // matters carries the request id itself, and the child would cost each cached token.
    logController: new LogController({ disableRequestLogging: true }),
    childLoggerFactory: (parent) => parent,
    bodyLimit: config.limits.bodyLimitBytes,
    trustProxy: false,
    return503OnClosing: true,
    // A caller's (or the router's) x-request-id is kept when it is a sane token, so one id follows
    // the request through logs; anything else gets a fresh id. Echoed in every response.
    requestIdHeader: false,
    genReqId: (request) => {
      const given = request.headers["x-request-id"];
      return typeof given === "string" && REQUEST_ID.test(given) ? given : randomUUID();
    },
    // Node's defaults let a client that sends part of a request and then nothing hold the
    // connection for minutes (Fastify's request and connection timeouts default to none).
    requestTimeout: config.http.requestTimeoutMs,
    keepAliveTimeout: config.http.keepAliveTimeoutMs,
    http: {
      headersTimeout: config.http.headersTimeoutMs,
      // How often Node looks for requests past their timeouts (30 s by default): the timeouts
      // are only as precise as this.
      connectionsCheckingInterval: Math.min(1000, config.http.headersTimeoutMs),
    },
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
  fastify.server.maxConnections = config.http.maxConnections;

  const formatError = createFormatError({ production: config.production });
  const validationRules = [documentBoundsRule, ...createQueryLimitRules(config.limits)];
  const logErrors = createErrorLogger(logger, (error) => isUnexpected(error.toJSON(), error));
  const accessLog = createAccessLog({
    lines: createLineWriter(logger, { component: "access" }),
    metrics: deps.metrics,
  });
  const apollo = new ApolloServer<GatewayContext>({
    schema: deps.schema,
    introspection: !config.production,
    csrfPrevention: true,
    // main.ts owns the signals: Apollo's own SIGTERM handler would stop the server (and, through
    // the drain plugin, close the listener) at once, defeating SHUTDOWN_DRAIN_DELAY_MS.
    stopOnTerminationSignals: false,
    includeStacktraceInErrorResponses: !config.production,
    // Not `hideSchemaDetailsFromClientErrors`: formatError (graphql/errors.ts) already drops
    // graphql-js's "Did you mean" hints in production, from every error, and Apollo's option would
    // add a second per-request plugin doing it again for validation errors.
    validationRules,
    // Bounds parsing itself: a 32 KB body can hold about 16,000 tokens; no operation needs 2,000.
    parseOptions: { maxTokens: MAX_DOCUMENT_TOKENS },
    formatError,
    // Bounded by what parsed documents really hold (see document-store.ts), not Apollo's JSON size.
    documentStore: createDocumentStore(),
    // Apollo's info lines (e.g. "Enabling inline tracing") are start-up noise for operators.
    logger: logger.child({ component: "apollo" }, { level: quieter(logger.level, "warn") }),
    persistedQueries: {
      cache: createApqCache({
        redis: deps.redis,
        keyPrefix: `${config.redisKeyPrefix}apq:v1:`,
        logger: logger.child({ component: "apq" }),
      }),
      ttl: APQ_TTL_SECONDS,
    },
    plugins: [
      fastifyApolloDrainPlugin(fastify),
      createRequestPlugin({ accessLog, logErrors }),
      // Not used by this subgraph, and each costs every request some set-up: federated (ftv1)
      // traces for Apollo Studio (OpenTelemetry covers tracing) and cache-control hints (no
      // answer here may be cached by a CDN: tokens are secrets).
      ApolloServerPluginInlineTraceDisabled(),
      ApolloServerPluginCacheControlDisabled(),
      // In development too: browsers opening /graphql get the explorer (explorer.ts), answered
      // before Apollo, and Apollo's Sandbox page is served at /sandbox. Without this, Apollo would
      // install Sandbox at /graphql itself whenever NODE_ENV is not production.
      ApolloServerPluginLandingPageDisabled(),
    ],
  });
  await apollo.start();

  const graphqlHandler = fastifyApolloHandler(apollo, {
    context: (request) => deps.createContext(request.raw, request.id),
  });

  // Hooks on every request are callback-style where they need not wait: an async hook costs each
  // request a promise and a microtask turn.
  fastify.addHook("onRequest", (request, reply, done) => {
    reply.header("x-request-id", request.id);
    done();
  });
  // AUTH_MODE=none: requests addressed to a foreign name (DNS rebinding) get 421, on every route.
  registerHostCheck(fastify, config);

  const explorer = config.production ? undefined : await createExplorer(config);
  if (explorer !== undefined && !explorer.files.installed) {
    logger.warn(
      { reason: explorer.files.reason },
      "the GraphiQL explorer's files are not installed (npm install without --omit=dev adds them); / answers how to fix it",
    );
  }

  const trusted = config.persistedDocumentsOnly
    ? createTrustedDocumentsHandler(deps.trustedDocuments ?? loadTrustedDocuments())
    : undefined;
  // CORS lives in its own encapsulated context, so its hook touches /graphql only (not /metrics).
  const applyCors = createCors(config.cors);
  await fastify.register(async (graphql) => {
    registerPreflightRoute(graphql);
    // One hook for both, as each hook costs every request a step of Fastify's hook runner: CORS
    // (a preflight is answered here), then a browser opening /graphql: the explorer in
    // development; in production, one sentence on what the endpoint is instead of Apollo's raw
    // CSRF error.
    graphql.addHook("onRequest", (request, reply, done) => {
      if (applyCors(request, reply)) {
        return;
      }
      if (!isBrowserPageRequest(request)) {
        done();
        return;
      }
      if (explorer !== undefined) {
        explorer.sendPage(reply);
        return;
      }
      reply
        .code(200)
        .header("cache-control", "no-store")
        .type("text/plain; charset=utf-8")
        .send(PRODUCTION_GET_MESSAGE);
    });
    if (trusted) {
      graphql.addHook("preHandler", trusted);
    }
    graphql.route({
      url: "/graphql",
      // No OPTIONS: preflights are answered by the CORS hook; Apollo would refuse them as CSRF.
      method: ["GET", "POST"],
      handler: traceGraphQLHandler(graphqlHandler),
    });
  });

  // Development: the explorer at / (and its files), Apollo Sandbox at /sandbox. Production has no
  // route at / (a 404), and neither page.
  if (explorer !== undefined) {
    await fastify.register(explorer.routes);
  }

  await fastify.register(operationsEndpoints, {
    readiness: deps.readiness,
    metrics: deps.metrics,
  });

  return {
    fastify,
    apollo,
    execute(request, headers = {}) {
      const rawHeaders = Object.entries(headers).flatMap(([name, value]) =>
        (Array.isArray(value) ? value : [value]).map((v) => [name, String(v)]).flat(),
      );
      return withOperationSpan(async () => {
        const contextValue = await deps.createContext({ headers, rawHeaders }, randomUUID());
        return apollo.executeOperation(request, { contextValue });
      }, headers);
    },
  };
}
