import type { GraphQLResponse } from "@apollo/server";
import type { OperationDefinitionNode } from "graphql";
import { context, SpanKind, SpanStatusCode, trace, type Span } from "@opentelemetry/api";
import type { IncomingHttpHeaders } from "node:http";
import { extractContext, recordFailure, tracer, tracingActive } from "../../telemetry/tracing.js";

/**
 * The request and operation spans of `/graphql`. Two pieces, because an Apollo plugin can observe
 * a request but cannot make a span the active context of its resolvers:
 * - `traceGraphQLHandler` wraps the route handler: it continues the caller's trace from
 *   `traceparent`, opens the HTTP server span and, inside it, the operation span, and runs the
 *   handler with the operation span active, so the cache, Redis and ACS spans become its children;
 * - `annotateOperationSpan`, called by the request plugin (request-plugin.ts), names that
 *   operation span once Apollo knows the operation (`mutation issueToken`) and records the error
 *   codes.
 * Neither records the document, the variables, or any header: they may carry tokens.
 */

const OPERATION_SPAN = "graphql.operation";

interface RequestLike {
  headers: IncomingHttpHeaders;
  method: string;
  routeOptions?: { url?: string | undefined };
}

interface ReplyLike {
  statusCode: number;
}

export function traceGraphQLHandler<This, Request extends RequestLike, Reply extends ReplyLike, T>(
  handler: (this: This, request: Request, reply: Reply) => T,
): (this: This, request: Request, reply: Reply) => Promise<Awaited<T>> {
  return function traced(this: This, request, reply) {
    if (!tracingActive()) {
      return Promise.resolve(handler.call(this, request, reply)) as Promise<Awaited<T>>;
    }
    const route = request.routeOptions?.url ?? "/graphql";
    const parent = extractContext(request.headers);
    return tracer().startActiveSpan(
      `${request.method} ${route}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          "http.request.method": request.method,
          "http.route": route,
          "url.path": route,
        },
      },
      parent,
      async (serverSpan): Promise<Awaited<T>> => {
        try {
          const result = await withOperationSpan(
            async (): Promise<Awaited<T>> => await handler.call(this, request, reply),
          );
          serverSpan.setAttribute("http.response.status_code", reply.statusCode);
          if (reply.statusCode >= 500) {
            serverSpan.setStatus({ code: SpanStatusCode.ERROR });
          }
          return result;
        } catch (error) {
          recordFailure(serverSpan, error);
          throw error;
        } finally {
          serverSpan.end();
        }
      },
    );
  };
}

/**
 * Runs `fn` with a fresh operation span active: the HTTP path above, and in-process execution
 * (`HttpServer.execute`) which has no HTTP span but whose resolvers still deserve a parent.
 */
export function withOperationSpan<T>(
  fn: () => Promise<T>,
  headers?: IncomingHttpHeaders,
): Promise<T> {
  if (!tracingActive()) {
    return fn();
  }
  const parent = headers ? extractContext(headers) : context.active();
  return tracer().startActiveSpan(
    OPERATION_SPAN,
    { kind: SpanKind.INTERNAL },
    parent,
    async (span) => {
      try {
        return await fn();
      } catch (error) {
        recordFailure(span, error);
        throw error;
      } finally {
        span.end();
      }
    },
  );
}

/**
 * Names the active operation span once Apollo knows the operation (`mutation issueToken`) and
 * records the error codes a client sees (after formatError: docs/errors.md). Called from the
 * request plugin's `willSendResponse`; does nothing when no span records (tracing off).
 */
export function annotateOperationSpan(request: {
  operation?: OperationDefinitionNode | null | undefined;
  operationName?: string | null | undefined;
  response: GraphQLResponse;
}): void {
  const span: Span | undefined = trace.getActiveSpan();
  if (!span || !span.isRecording()) {
    return;
  }
  const { operation, operationName } = request;
  if (operation) {
    const type = operation.operation;
    span.updateName(operationName ? `${type} ${operationName}` : type);
    span.setAttribute("graphql.operation.type", type);
    if (operationName) {
      span.setAttribute("graphql.operation.name", operationName);
    }
  }
  const body = request.response.body;
  const errors = body.kind === "single" ? body.singleResult.errors : undefined;
  if (!errors || errors.length === 0) {
    return;
  }
  const codes = [
    ...new Set(
      errors.map((error) => {
        const code = error.extensions?.code;
        return typeof code === "string" ? code : "INTERNAL_SERVER_ERROR";
      }),
    ),
  ];
  span.setAttribute("acsgw.graphql.error_codes", codes);
  span.setStatus({ code: SpanStatusCode.ERROR, message: codes.join(",") });
}
