import type { ApolloServerPlugin } from "@apollo/server";
import {
  execute,
  type GraphQLError,
  Kind,
  parse,
  specifiedRules,
  validate,
  type DocumentNode,
  type GraphQLFormattedError,
  type GraphQLSchema,
  type OperationDefinitionNode,
  type ValidationRule,
} from "graphql";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { GatewayContext } from "../graphql/context.js";
import type { RequestHeaders } from "./plugins/authentication.js";
import { firstErrorCode, type AccessLog } from "./plugins/access-log.js";
import { tracingActive } from "../telemetry/tracing.js";

/**
 * The direct path for the client's token operations.
 *
 * A cache-hit token through Apollo's request pipeline cost about 1.85x the CPU of a bare Apollo
 * Server answering `{ hello }` (BENCHMARKS.md): the pipeline's per-request work (query hash,
 * content negotiation, a dozen plugin hook rounds, response assembly) was most of the difference.
 * The operations a frontend repeats all day are the client package's own documents
 * (`packages/client/src/operations.graphql`): `createTokenRefresher` sends the manifest's text
 * byte for byte with the automatic-persisted-query extension naming its id, or (`send: "id"`) the
 * id alone.
 * For exactly those requests this module does what Apollo would, with everything per-document
 * done once at start:
 * the document is parsed and validated against the schema with the same rules, and each request
 * is only authenticated and executed by graphql-js (`execute`, the function Apollo calls), through
 * the same rights-wrapped resolvers, error formatter, error logger and access line.
 *
 * Anything else goes to Apollo, untouched: another text (even one space apart), a hash that is not
 * the text's, any other extension, GET, batches, an `accept` header outside the few below, tracing
 * on, a stopping server. One difference is deliberate: the id alone of a manifest operation is
 * answered even before Apollo's APQ cache holds its text (Apollo would ask for the text first with
 * PERSISTED_QUERY_NOT_FOUND); the manifest already vouches for it. A
 * request whose credential is refused, or whose variables do not coerce, is handed to Apollo with
 * what was already computed (nothing ran), so its answer is Apollo's own. An execution that ends in
 * errors is answered here, formatted as Apollo formats them (`formatResult` below);
 * `test/server/direct-operations.test.ts` compares every case with Apollo's answer for the same
 * document sent one space apart.
 */

/** The operations of the client's manifest that take this path: the token path. */
export const DIRECT_OPERATION_NAMES = ["IssueToken", "IssueMyToken"] as const;

const JSON_TYPE = "application/json; charset=utf-8";
const GRAPHQL_RESPONSE_TYPE = "application/graphql-response+json; charset=utf-8";

/**
 * `accept` values answered here, with the type Apollo's negotiation picks for each (its server
 * preference is JSON, but an accept header's own order wins between equal weights). Any other
 * value is negotiated by Apollo.
 */
const CONTENT_TYPES = new Map<string | undefined, string>([
  [undefined, JSON_TYPE],
  ["*/*", JSON_TYPE],
  ["application/json", JSON_TYPE],
  // createTokenRefresher and the client package
  ["application/graphql-response+json, application/json", GRAPHQL_RESPONSE_TYPE],
  // Apollo Client 3.8+
  ["application/graphql-response+json,application/json;q=0.9", GRAPHQL_RESPONSE_TYPE],
]);

interface Operation {
  document: DocumentNode;
  operation: OperationDefinitionNode;
  name: string;
  text: string;
}

/** What this path already did for a request it hands to Apollo (see `createContext`). */
type HandOff = { context: GatewayContext } | { failure: unknown };

export interface DirectOperations {
  /** Answers the request and resolves true, or resolves false: Apollo must answer it. */
  handle(request: FastifyRequest, reply: FastifyReply): Promise<boolean>;
  /**
   * Apollo's context function: the context this path already built for a handed-off request (or
   * its refusal, thrown again), so a credential is never checked twice; `create` otherwise.
   */
  contextFor(
    request: FastifyRequest,
    create: () => Promise<GatewayContext>,
  ): Promise<GatewayContext>;
  /** Stops taking requests once Apollo begins to stop (Apollo then answers them as it does). */
  plugin: ApolloServerPlugin<GatewayContext>;
}

export function createDirectOperations(deps: {
  schema: GraphQLSchema;
  /** The client's persisted-documents manifest: each operation's name, id (sha256) and text. */
  documents: readonly { name: string; id: string; body: string }[];
  /** The validation rules Apollo applies on top of graphql-js's own. */
  validationRules: readonly ValidationRule[];
  createContext(request: RequestHeaders, requestId: string): Promise<GatewayContext>;
  /** Apollo's `formatError`. */
  formatError(formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError;
  /** Apollo's `includeStacktraceInErrorResponses`. */
  includeStacktrace: boolean;
  logErrors(errors: readonly GraphQLError[], operationName: string | null | undefined): void;
  accessLog: AccessLog;
  /** Counted per answered request. */
  onAnswered?: () => void;
}): DirectOperations {
  const byText = new Map<string, Operation>();
  const byId = new Map<string, Operation>();
  for (const name of DIRECT_OPERATION_NAMES) {
    const entry = deps.documents.find((d) => d.name === name);
    if (entry === undefined) {
      throw new Error(`the client manifest has no ${name} operation`);
    }
    const text = entry.body;
    const document = parse(text);
    const errors = validate(deps.schema, document, [...specifiedRules, ...deps.validationRules]);
    if (errors.length > 0) {
      throw new Error(`the client's ${name} operation does not validate: ${errors[0]!.message}`);
    }
    const operation = document.definitions.find(
      (d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION,
    )!;
    const known = { document, operation, name, text };
    byText.set(text, known);
    byId.set(entry.id, known);
  }
  const handedOff = new WeakMap<FastifyRequest, HandOff>();
  let open = true;

  /** The request's operation when this path may take it, else undefined. */
  function match(request: FastifyRequest): Operation | undefined {
    if (!open || request.method !== "POST" || tracingActive()) {
      return undefined;
    }
    const body = request.body as Record<string, unknown> | null | undefined;
    // Fastify parses only application/json into an object: Apollo's CSRF check would pass too.
    if (typeof body !== "object" || body === null || Array.isArray(body)) {
      return undefined;
    }
    const { query, extensions } = body;
    let operation: Operation | undefined;
    if (extensions === undefined) {
      operation = typeof query === "string" ? byText.get(query) : undefined;
    } else {
      // The client package's shape: the text (or, with `send: "id"`, only its id) with the
      // automatic-persisted-query extension naming the manifest's id of that very text.
      operation = byId.get(persistedQueryId(extensions) ?? "");
      if (operation !== undefined && query !== undefined && query !== operation.text) {
        return undefined;
      }
    }
    if (operation === undefined) {
      return undefined;
    }
    for (const key in body) {
      if (
        key !== "query" &&
        key !== "variables" &&
        key !== "operationName" &&
        key !== "extensions"
      ) {
        return undefined; // documentId, anything else Apollo may act on
      }
    }
    const { variables, operationName } = body;
    if (
      (variables !== undefined &&
        variables !== null &&
        (typeof variables !== "object" || Array.isArray(variables))) ||
      (operationName !== undefined && operationName !== null && operationName !== operation.name)
    ) {
      return undefined;
    }
    return operation;
  }

  /** `{ persistedQuery: { version: 1, sha256Hash } }` and nothing else: its hash. */
  function persistedQueryId(extensions: unknown): string | undefined {
    if (typeof extensions !== "object" || extensions === null || Array.isArray(extensions)) {
      return undefined;
    }
    let persisted: unknown;
    for (const key in extensions) {
      if (key !== "persistedQuery") {
        return undefined;
      }
      persisted = (extensions as Record<string, unknown>)[key];
    }
    if (typeof persisted !== "object" || persisted === null) {
      return undefined;
    }
    const { version, sha256Hash } = persisted as Record<string, unknown>;
    for (const key in persisted) {
      if (key !== "version" && key !== "sha256Hash") {
        return undefined;
      }
    }
    return version === 1 && typeof sha256Hash === "string" ? sha256Hash : undefined;
  }

  /** Apollo's error normalisation (errorNormalize.ts) and then `formatError`, per error. */
  function formatResult(errors: readonly GraphQLError[]): {
    formatted: GraphQLFormattedError[];
    status: number | undefined;
    headers: Map<string, string>;
  } {
    let status: number | undefined;
    const headers = new Map<string, string>();
    const formatted = errors.map((error) => {
      const extensions: Record<string, unknown> = {
        ...error.extensions,
        code: error.extensions.code ?? "INTERNAL_SERVER_ERROR",
      };
      // An HTTP status (and headers) an error asks for, taken out of its extensions.
      const http = extensions.http as { status?: unknown; headers?: unknown } | undefined;
      if (
        typeof http === "object" &&
        http !== null &&
        (!("status" in http) || typeof http.status === "number") &&
        (!("headers" in http) || http.headers instanceof Map)
      ) {
        if (http.status) {
          status = http.status as number;
        }
        for (const [name, value] of (http.headers as Map<string, string> | undefined) ?? []) {
          headers.set(name, value);
        }
        delete extensions.http;
      }
      if (deps.includeStacktrace) {
        extensions.stacktrace = error.stack?.split("\n");
      }
      try {
        return deps.formatError({ ...error.toJSON(), extensions }, error);
      } catch {
        // A formatter that throws: the answer Apollo gives in production.
        return { message: "Internal server error", extensions: { code: "INTERNAL_SERVER_ERROR" } };
      }
    });
    return { formatted, status, headers };
  }

  return {
    async handle(request, reply) {
      const found = match(request);
      const contentType = CONTENT_TYPES.get(request.headers.accept);
      if (found === undefined || contentType === undefined) {
        return false;
      }
      const started = performance.now();
      const body = request.body as { variables?: Record<string, unknown> | null };
      let contextValue: GatewayContext;
      try {
        contextValue = await deps.createContext(request.raw, request.id);
      } catch (failure) {
        handedOff.set(request, { failure });
        return false;
      }
      const result = await execute({
        schema: deps.schema,
        document: found.document,
        variableValues: body.variables ?? undefined,
        contextValue,
      });
      if (result.data === undefined) {
        // Variables that do not coerce: nothing ran; Apollo answers (400) as it always does.
        handedOff.set(request, { context: contextValue });
        return false;
      }
      let status = 200;
      let payload: { errors?: GraphQLFormattedError[]; data: unknown };
      if (result.errors?.length) {
        deps.logErrors(result.errors, found.name);
        const formatted = formatResult(result.errors);
        status = formatted.status ?? 200;
        for (const [name, value] of formatted.headers) {
          void reply.header(name, value);
        }
        payload = { errors: formatted.formatted, data: result.data };
      } else {
        payload = { data: result.data };
      }
      deps.onAnswered?.();
      deps.accessLog.record({
        contextValue,
        operation: found.operation,
        operationName: found.name,
        errorCode: firstErrorCode(payload.errors),
        seconds: (performance.now() - started) / 1000,
      });
      // Apollo's body: errors before data, a newline at the end.
      await reply
        .code(status)
        .header("content-type", contentType)
        .send(`${JSON.stringify(payload)}\n`);
      return true;
    },

    async contextFor(request, create) {
      const handed = handedOff.get(request);
      if (handed === undefined) {
        return create();
      }
      handedOff.delete(request);
      if ("failure" in handed) {
        throw handed.failure;
      }
      return handed.context;
    },

    plugin: {
      async serverWillStart() {
        return {
          async serverWillStop() {
            open = false;
          },
        };
      },
    },
  };
}
