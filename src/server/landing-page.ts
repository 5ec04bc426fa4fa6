import type { GraphQLServerContext } from "@apollo/server";
import {
  ApolloServerPluginLandingPageLocalDefault,
  type ApolloServerPluginLandingPageLocalDefaultOptions,
} from "@apollo/server/plugin/landingPage/default";
import type { FastifyRequest } from "fastify";
import manifest from "@acs-identity-gateway/client/persisted-documents.json" with { type: "json" };
import type { Config } from "../config.js";

/**
 * The operation the explorer (GraphiQL, explorer.ts) and Apollo Sandbox open with in development:
 * a token for the caller's own identity, the client package's own IssueMyToken text
 * (packages/client/src/operations.graphql) under two comments.
 */
export const SANDBOX_EXAMPLE_OPERATION = `# A token for your own ACS identity (created on first use), for the calling SDK.
# Press Ctrl+Enter (or the Run button); then try scopes: [CHAT] or expiresInMinutes: 60.
${manifest.operations.find((operation) => operation.name === "IssueMyToken")!.body}
`;

/** The example operation's variables, in both pages. */
export const EXAMPLE_VARIABLES: Readonly<{ scopes: readonly string[] }> = { scopes: ["VOIP"] };

/**
 * The headers this deployment requires, with placeholders (never the configured values) so a
 * developer sees what to fill in: the pages are served to anyone who can reach the gateway.
 */
export function requiredHeaderPlaceholders(config: Readonly<Config>): Record<string, string> {
  const headers: Record<string, string> = {};
  if (config.auth.mode === "jwt") {
    headers.Authorization = `Bearer <a JWT from ${config.auth.issuer} for audience ${config.auth.audience}>`;
  }
  if (config.routerSecret !== undefined) {
    headers["router-authorization"] = "<the gateway's ROUTER_SECRET>";
  }
  return headers;
}

/** Sandbox's initial state: the example operation and the required headers' placeholders. */
export function createLandingPage(
  config: Readonly<Config>,
): ApolloServerPluginLandingPageLocalDefaultOptions {
  return {
    embed: true,
    includeCookies: false,
    document: SANDBOX_EXAMPLE_OPERATION,
    variables: EXAMPLE_VARIABLES,
    headers: requiredHeaderPlaceholders(config),
  };
}

/** The line of Apollo's page that aims Sandbox at the page's own address. */
const SANDBOX_ENDPOINT_LINE = "var initialEndpoint = window.location.href;";
const GRAPHQL_ENDPOINT_LINE =
  'var initialEndpoint = new URL("/graphql", window.location.href).href;';

/**
 * Apollo's own Sandbox page (development), for GET /sandbox. /graphql answers browsers with the
 * explorer, which works offline, so Apollo's landing page plugin is not installed in the server;
 * its page is rendered here instead, once per request (each render has a fresh CSP nonce).
 * Apollo's page aims Sandbox at the address it is served from: that line is rewritten to /graphql.
 * An @apollo/server upgrade that changes the line fails the /sandbox request (and its test), not
 * the gateway's start.
 */
export async function createSandboxPage(config: Readonly<Config>): Promise<() => Promise<string>> {
  const plugin = ApolloServerPluginLandingPageLocalDefault(createLandingPage(config));
  // The plugin's hook reads nothing of the server it would be installed in.
  const listener = await plugin.serverWillStart?.({} as GraphQLServerContext);
  const render = listener?.renderLandingPage;
  if (render === undefined) {
    throw new Error("Apollo's landing page plugin rendered no page");
  }
  return async () => {
    const { html } = await render();
    const page = typeof html === "string" ? html : await html();
    if (!page.includes(SANDBOX_ENDPOINT_LINE)) {
      throw new Error(
        "Apollo Sandbox's page no longer has the endpoint line /sandbox rewrites to /graphql (was @apollo/server upgraded?)",
      );
    }
    return page.replace(SANDBOX_ENDPOINT_LINE, GRAPHQL_ENDPOINT_LINE);
  };
}

/**
 * A browser opening the endpoint as a page (address bar, link): GET, HTML accepted, and no
 * GraphQL parameters. Development answers with the explorer; in production Apollo's raw CSRF
 * error would be the answer, so the gateway says in one sentence what the endpoint is instead.
 */
export function isBrowserPageRequest(request: FastifyRequest): boolean {
  if (request.method !== "GET") {
    return false;
  }
  const accept = request.headers.accept ?? "";
  const query = request.query as Record<string, unknown> | undefined;
  const hasGraphQLParams =
    query !== undefined &&
    (query.query !== undefined || query.extensions !== undefined || query.documentId !== undefined);
  return accept.includes("text/html") && !hasGraphQLParams;
}

export const PRODUCTION_GET_MESSAGE =
  "This is the ACS Identity Gateway's GraphQL endpoint. Send GraphQL operations with POST and content-type application/json.\n";
