import type { IncomingHttpHeaders } from "node:http";
import { expect } from "vitest";
import { createApp, type App, type AppDeps } from "../../src/app.js";
import { loadConfig } from "../../src/config.js";
import { createAcsIdentityProvider } from "../../src/identity/acs-identity-provider.js";
import type { IdentityProvider } from "../../src/identity/identity-provider.js";
import { createLogger } from "../../src/logger.js";
import { createMetrics } from "../../src/server/metrics.js";
import { testSigningKeyPem } from "./signing-keys.js";

/**
 * A gateway with the embedded emulator (port 0) unless `env` names an ACS connection string; the
 * embedded emulator signs with a key of the test pool (testSigningKeyPem) unless `deps` give one.
 */
export async function startGateway(
  env: Record<string, string | undefined> = {},
  deps: AppDeps = {},
): Promise<App> {
  const config = loadConfig({
    LOG_LEVEL: "silent",
    RATE_LIMIT_ACS_CALLS_PER_MINUTE: "100000",
    ...env,
  });
  const embedded = config.embeddedEmulator && { ...config.embeddedEmulator, ...deps.emulator };
  const emulator =
    embedded === undefined ||
    embedded.signingKeyPem !== undefined ||
    embedded.stateFile !== undefined
      ? deps.emulator
      : { ...deps.emulator, signingKeyPem: await testSigningKeyPem() };
  return createApp(config, { ...deps, emulator });
}

/**
 * Resolves once the gateway's database (DATABASE_URL or a DIRECTORY_DATA_DIR folder) is open and
 * migrated: it opens in the background, and a test that writes to its tables directly waits first.
 */
export async function databaseOpen(app: App): Promise<void> {
  const db = app.directoryDb?.db;
  if (!db || db.inMemory) {
    throw new Error("this gateway has no database of its own to wait for");
  }
  await db.ready;
}

export interface GraphQLResult<T = Record<string, unknown>> {
  data?: T | null;
  errors?: {
    message: string;
    extensions?: Record<string, unknown>;
    path?: readonly (string | number)[];
  }[];
}

/** In-process execution through the app's own context path (auth, limits, error formatting). */
export async function run<T = Record<string, any>>(
  app: App,
  query: string,
  variables: Record<string, unknown> = {},
  headers: IncomingHttpHeaders = {},
): Promise<GraphQLResult<T>> {
  const response = await app.server.execute({ query, variables }, headers);
  if (response.body.kind !== "single") {
    throw new Error("expected a single result");
  }
  return response.body.singleResult as GraphQLResult<T>;
}

/** The data of a result that must have succeeded. */
export async function ok<T = Record<string, any>>(
  app: App,
  query: string,
  variables: Record<string, unknown> = {},
  headers: IncomingHttpHeaders = {},
): Promise<T> {
  const result = await run<T>(app, query, variables, headers);
  expect(result.errors).toBeUndefined();
  return result.data as T;
}

/** The one error code of a result that must have failed. */
export async function errorCode(
  app: App,
  query: string,
  variables: Record<string, unknown> = {},
  headers: IncomingHttpHeaders = {},
): Promise<{ code: unknown; error: NonNullable<GraphQLResult["errors"]>[number] }> {
  const result = await run(app, query, variables, headers);
  expect(result.errors?.length).toBeGreaterThan(0);
  const error = result.errors![0]!;
  return { code: error.extensions?.code, error };
}

export const ISSUE = `mutation Issue($userId: ID, $scopes: [TokenScope!]!, $expiresInMinutes: Int) {
  issueToken(userId: $userId, scopes: $scopes, expiresInMinutes: $expiresInMinutes) {
    token expiresOn scopes user { id }
  }
}`;
export const CREATE = "mutation { createUser { id } }";
export const REVOKE =
  "mutation Revoke($userId: ID!) { revokeTokens(userId: $userId) { user { id } revokedAt } }";
export const DELETE =
  "mutation Delete($userId: ID!) { deleteUser(userId: $userId) { userId deletedAt } }";

export const ACS_ID = /^8:acs:[0-9a-f-]{36}_[0-9a-f-]+$/;

/** Every ACS call the gateway attempted, whatever the answer (its own upstream metric). */
export async function upstreamAttempts(app: App): Promise<number> {
  const metric = await app.metrics.upstreamRequests.get();
  return metric.values.reduce((sum, value) => sum + value.value, 0);
}

/**
 * The least a production gateway needs (no network is contacted at start with these): JWT auth
 * against an issuer that is never asked, and a connection string to a resource never called.
 */
export const PRODUCTION_SETTINGS = {
  NODE_ENV: "production",
  AUTH_MODE: "jwt",
  AUTH_JWKS_URL: "https://login.example.com/keys",
  AUTH_ISSUER: "https://login.example.com/",
  AUTH_AUDIENCE: "api://gateway",
  COMMUNICATION_SERVICES_CONNECTION_STRING: `endpoint=https://example.communication.azure.com/;accesskey=${Buffer.alloc(32, 1).toString("base64")}`,
} as const;

/** The gateway's own ACS client (the identity provider) pointed at an emulator, silent. */
export function identityProviderFor(emulator: {
  endpoint: string;
  accessKey: string;
}): IdentityProvider {
  return createAcsIdentityProvider({
    endpoint: emulator.endpoint,
    accessKey: emulator.accessKey,
    allowInsecureConnection: true,
    metrics: createMetrics(),
    logger: createLogger({ level: "silent" }),
  });
}
