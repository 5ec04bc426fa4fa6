import type { ApolloServerPluginLandingPageLocalDefaultOptions } from "@apollo/server/plugin/landingPage/default";
import type { FastifyRequest } from "fastify";
import manifest from "@acs-identity-gateway/client/persisted-documents.json" with { type: "json" };
import type { Config } from "../config.js";

/**
 * The operation Apollo Sandbox opens with in development: a token for the caller's own identity,
 * the client package's own IssueMyToken text (src/client/operations.graphql) under two comments.
 */
export const SANDBOX_EXAMPLE_OPERATION = `# A token for your own ACS identity (created on first use), for the calling SDK.
# Press the Run button; then try scopes: [CHAT] or expiresInMinutes: 60.
${manifest.operations.find((operation) => operation.name === "IssueMyToken")!.body}
`;

/**
 * Sandbox's initial state: the example operation, and the headers this deployment requires, with
 * placeholders (never the configured values) so a developer sees what to fill in.
 */
export function createLandingPage(
  config: Readonly<Config>,
): ApolloServerPluginLandingPageLocalDefaultOptions {
  const headers: Record<string, string> = {};
  if (config.auth.mode === "jwt") {
    headers.Authorization = `Bearer <a JWT from ${config.auth.issuer} for audience ${config.auth.audience}>`;
  }
  if (config.routerSecret !== undefined) {
    headers["router-authorization"] = "<the gateway's ROUTER_SECRET>";
  }
  return {
    embed: true,
    includeCookies: false,
    document: SANDBOX_EXAMPLE_OPERATION,
    variables: { scopes: ["VOIP"] },
    headers,
  };
}

/**
 * A browser opening the endpoint as a page (address bar, link): GET, HTML accepted, and no
 * GraphQL parameters. In production there is no Sandbox, and Apollo's raw CSRF error would be the
 * answer, so the gateway says in one sentence what the endpoint is instead.
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
