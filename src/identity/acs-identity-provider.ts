import { setTimeout as sleep } from "node:timers/promises";
import type { PipelinePolicy } from "@azure/core-rest-pipeline";
import type { TokenCredential } from "@azure/identity";
import { CommunicationIdentityClient } from "@azure/communication-identity";
import { SpanKind } from "@opentelemetry/api";
import type { Logger } from "../logger.js";
import { withSpan } from "../telemetry/tracing.js";
import type { Metrics } from "../server/metrics.js";
import type { AcsScope } from "../tokens/scopes.js";
import type { IdentityProvider, IssuedToken } from "./identity-provider.js";
import { UpstreamError, type UpstreamFailure } from "./upstream-error.js";

export interface AcsIdentityProviderOptions {
  endpoint: string;
  /** HMAC authentication with the resource's access key, or ... */
  accessKey?: string | undefined;
  /** ... Entra ID (e.g. `DefaultAzureCredential`); one of the two. */
  credential?: TokenCredential | undefined;
  /** Needed for an http:// endpoint (the emulator, or ACS_ALLOW_INSECURE). */
  allowInsecureConnection?: boolean;
  /** Per attempt. @default 10000 */
  timeoutMs?: number;
  /**
   * Extra attempts after a network error or 5xx (never after 4xx or 429), for the operations that
   * may be sent twice (see `RETRIED`); creates are never retried. @default 1
   */
  retries?: number;
  metrics?: Metrics;
  logger?: Logger;
}

type Operation =
  | "createUser"
  | "createUserAndToken"
  | "issueToken"
  | "revokeTokens"
  | "deleteUser"
  | "exchangeTeamsToken";

/**
 * The operations that get the quick retry after a network error or 5xx: sending them twice does
 * no harm. A revoke or a delete done twice has the effect of one (a delete's retry may answer 404
 * when the first attempt did the work: that is `not_found`, which `deleteMe` already treats as
 * gone). An issue or a Teams exchange changes nothing at ACS: a lost first answer leaves at most a
 * token nobody holds, which expires. A create is NOT retried: ACS may have created the identity
 * before the answer was lost, and api-version 2023-10-01 has no list call and no idempotent create
 * (`customId` is preview only), so a second attempt would leave an identity nobody can find.
 */
const RETRIED: ReadonlySet<Operation> = new Set<Operation>([
  "issueToken",
  "revokeTokens",
  "deleteUser",
  "exchangeTeamsToken",
]);

/** Network errors raised before the request reached ACS: nothing was sent, so nothing was done. */
const NOT_SENT_CODES: ReadonlySet<string> = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EADDRNOTAVAIL",
]);

/**
 * May ACS have done the work of a call that failed this way? Yes after a 5xx or 408 (ACS failed
 * after or while doing it), a timeout, or a connection lost after sending; no after any other 4xx,
 * a 429, or a connection that was refused or never resolved.
 */
export function mayHaveBeenDone(error: UpstreamError): boolean {
  const { status, acsCode } = error.options;
  if (status === undefined) {
    return acsCode === undefined || !NOT_SENT_CODES.has(acsCode);
  }
  return status === 408 || status >= 500;
}

/**
 * `@azure/identity`'s errors for an Entra ID token it could not get (by name: the package is
 * loaded only in Entra ID mode). The ACS request is sent only with a token, so it was not sent.
 * `AuthenticationError` carries the token endpoint's status (a 503 there is not an ACS 503).
 */
const CREDENTIAL_ERRORS: ReadonlySet<string> = new Set([
  "CredentialUnavailableError",
  "AuthenticationError",
  "AuthenticationRequiredError",
  "AggregateAuthenticationError",
]);

function isCredentialError(error: unknown): boolean {
  let e: unknown = error;
  for (let depth = 0; depth < 5 && e instanceof Error; depth++, e = e.cause) {
    if (CREDENTIAL_ERRORS.has(e.name)) {
      return true;
    }
  }
  return false;
}

/**
 * May a create that failed with `error` have created the identity at ACS (its outcome is then
 * unknown: counted and logged)? Only if the request was sent to ACS. `sent` says whether it
 * reached the HTTP client, after authentication (see `markSent`), when that is known: not sent,
 * nothing was created, whatever the error. Otherwise by the error: never after a credential error
 * (no Entra ID token, so no request); after an ACS answer, when it was a 2xx (created, though the
 * answer could not be read), a 408 or a 5xx; without one, unless the connection was refused or
 * the host never resolved (a reset, a timeout or an abort may have come after ACS did the work).
 */
export function createOutcomeUnknown(error: unknown, sent?: boolean): boolean {
  if (sent === false || isCredentialError(error)) {
    return false;
  }
  if (error instanceof UpstreamError) {
    return mayHaveBeenDone(error);
  }
  const e = (error ?? {}) as RestErrorLike;
  const status =
    typeof e.statusCode === "number"
      ? e.statusCode
      : typeof e.response?.status === "number"
        ? e.response.status
        : undefined;
  if (status !== undefined) {
    return status < 300 || status === 408 || status >= 500;
  }
  return typeof e.code !== "string" || !NOT_SENT_CODES.has(e.code);
}

/**
 * Per ACS call attempt: did its request get past authentication to the HTTP client? Each attempt
 * passes its own abort signal, which the SDK puts on the pipeline request as it is, so the signal
 * names the attempt. Not an AsyncLocalStorage: in Node 20 the first `run` turns on promise hooks
 * for the whole process, and every promise of every request (cache hits included) then paid for
 * them, about 7% of a cache hit's CPU in a profile.
 */
const sentAttempts = new WeakSet<object>();

/**
 * The pipeline's last policy (after the Sign phase, so after the auth policy got a token and
 * signed the request): whatever fails from here on, the request may have reached ACS.
 */
const markSent: PipelinePolicy = {
  name: "acsgwMarkSent",
  sendRequest(request, next) {
    if (request.abortSignal !== undefined) {
      sentAttempts.add(request.abortSignal);
    }
    return next(request);
  },
};

/**
 * The customId of a create attempt, by its abort signal (as `sentAttempts`, no AsyncLocalStorage).
 * @azure/communication-identity 1.3.1 has no customId option: `withCustomId` rewrites that one
 * request instead.
 */
const customIds = new WeakMap<object, string>();

/** ACS's first api-version with `customId` on create (the emulator has it too). */
export const CUSTOM_ID_API_VERSION = "2025-03-02-preview";

/**
 * A per-call policy (before signing, so the HMAC covers the rewritten body): a create whose
 * attempt carries a customId is sent at CUSTOM_ID_API_VERSION with `customId` in its body. The
 * answer's shape (`identity.id`) is the same in both versions, so the SDK reads it unchanged.
 */
const withCustomId: PipelinePolicy = {
  name: "acsgwCustomId",
  sendRequest(request, next) {
    const customId = request.abortSignal ? customIds.get(request.abortSignal) : undefined;
    if (customId !== undefined) {
      const url = new URL(request.url);
      url.searchParams.set("api-version", CUSTOM_ID_API_VERSION);
      request.url = url.href;
      const body: Record<string, unknown> =
        typeof request.body === "string" && request.body !== "" ? JSON.parse(request.body) : {};
      body.customId = customId;
      request.body = JSON.stringify(body);
      request.headers.set("content-type", "application/json");
    }
    return next(request);
  },
};

interface RestErrorLike {
  name?: string;
  statusCode?: number;
  code?: string;
  message?: string;
  response?: { status?: number; headers: { get(name: string): string | undefined } };
}

/**
 * The one place an ACS failure becomes an `UpstreamError`. The ACS message is kept for logs, but
 * nothing here ever includes a token or the access key (the SDK's RestError may carry the request,
 * whose Authorization header is an HMAC signature: it is not copied).
 */
export function toUpstreamError(error: unknown): UpstreamError {
  if (error instanceof UpstreamError) {
    return error;
  }
  const e = (error ?? {}) as RestErrorLike;
  const status = typeof e.statusCode === "number" ? e.statusCode : undefined;
  const acsCode = typeof e.code === "string" ? e.code : undefined;
  let failure: UpstreamFailure;
  if (status === undefined) {
    failure = "unavailable"; // no answer: refused, reset, DNS, timeout
  } else if (status === 404) {
    failure = "not_found";
  } else if (status === 401 && acsCode === "IdentityNotOwned") {
    failure = "not_owned";
  } else if (status === 401 && acsCode === "InvalidAccessToken") {
    // Only the Teams exchange answers this: the Entra token it was given, not ours, was refused.
    failure = "invalid_teams_token";
  } else if (status === 401 || status === 403) {
    failure = "unauthorized";
  } else if (status === 429) {
    failure = "throttled";
  } else if (status === 408 || status >= 500) {
    failure = "unavailable";
  } else if (status >= 400) {
    failure = "invalid";
  } else {
    failure = "unavailable";
  }
  const retryAfterSeconds = status === 429 ? parseRetryAfter(e.response?.headers) : undefined;
  const message =
    status === undefined
      ? "ACS could not be reached"
      : `ACS answered ${status}${acsCode ? ` ${acsCode}` : ""}`;
  return new UpstreamError(failure, message, { status, acsCode, retryAfterSeconds });
}

/** `Retry-After` (seconds or HTTP date), or the millisecond variants ACS services also send. */
export function parseRetryAfter(
  headers: { get(name: string): string | undefined } | undefined,
  now = Date.now(),
): number {
  const fallback = 1;
  if (!headers) {
    return fallback;
  }
  for (const name of ["retry-after-ms", "x-ms-retry-after-ms"]) {
    const ms = Number(headers.get(name));
    if (Number.isFinite(ms) && ms >= 0 && headers.get(name) !== undefined) {
      return Math.max(1, Math.ceil(ms / 1000));
    }
  }
  const value = headers.get("retry-after");
  if (value === undefined) {
    return fallback;
  }
  const seconds = Number(value);
  if (Number.isFinite(seconds)) {
    return Math.max(1, Math.ceil(seconds));
  }
  const date = Date.parse(value);
  return Number.isNaN(date) ? fallback : Math.max(1, Math.ceil((date - now) / 1000));
}

/**
 * `IdentityProvider` over the official `@azure/communication-identity` client.
 *
 * The SDK's own retries are off: its throttling policy would sleep for a 429's `Retry-After`
 * (up to 30 s for the Identity limits) while a GraphQL request waits. Instead a 429 is reported
 * at once as `throttled` with `retryAfterSeconds`, so the frontend decides, and only network
 * errors and 5xx get one quick retry here, for the operations in `RETRIED` (never a create).
 */
export function createAcsIdentityProvider(options: AcsIdentityProviderOptions): IdentityProvider {
  const clientOptions = {
    allowInsecureConnection: options.allowInsecureConnection ?? false,
    retryOptions: { maxRetries: 0 },
    userAgentOptions: { userAgentPrefix: "acs-identity-gateway" },
    additionalPolicies: [
      { policy: withCustomId, position: "perCall" as const },
      { policy: markSent, position: "perRetry" as const },
    ],
  };
  const client = options.credential
    ? new CommunicationIdentityClient(options.endpoint, options.credential, clientOptions)
    : new CommunicationIdentityClient(
        `endpoint=${options.endpoint};accesskey=${options.accessKey}`,
        clientOptions,
      );
  const timeoutMs = options.timeoutMs ?? 10_000;
  const retries = options.retries ?? 1;
  const { metrics, logger } = options;
  const acsHost = new URL(options.endpoint).host;

  /** `probe`: the start-up credential check (readiness.ts), kept out of the upstream metrics. */
  async function call<T>(
    operation: Operation,
    run: (signal: AbortSignal) => Promise<T>,
    { probe = false }: { probe?: boolean } = {},
  ): Promise<T> {
    const maxRetries = RETRIED.has(operation) ? retries : 0;
    for (let attempt = 0; ; attempt++) {
      const started = performance.now();
      let status = 0;
      /** The attempt's own error (before it becomes an UpstreamError), and whether it was sent. */
      let failed: { error: unknown; sent: boolean } | undefined;
      try {
        // A span per attempt (a retry is a second HTTP call): the ACS host and the outcome only,
        // never the user id, the token or the signed request.
        const result = await withSpan(
          `acs ${operation}`,
          { "acsgw.acs.operation": operation, "server.address": acsHost, "acsgw.attempt": attempt },
          async (span) => {
            const signal = AbortSignal.timeout(timeoutMs);
            try {
              const value = await run(signal);
              status =
                operation === "createUser" || operation === "createUserAndToken"
                  ? 201
                  : operation === "issueToken" || operation === "exchangeTeamsToken"
                    ? 200
                    : 204;
              span.setAttribute("http.response.status_code", status);
              return value;
            } catch (error) {
              failed = { error, sent: sentAttempts.has(signal) };
              const upstream = toUpstreamError(error);
              if (upstream.options.status !== undefined) {
                span.setAttribute("http.response.status_code", upstream.options.status);
              }
              throw upstream;
            }
          },
          { kind: SpanKind.CLIENT },
        );
        return result;
      } catch (error) {
        const upstream = toUpstreamError(error);
        status = upstream.options.status ?? 0;
        if (upstream.failure !== "unavailable" || attempt >= maxRetries) {
          if (
            (operation === "createUser" || operation === "createUserAndToken") &&
            (failed
              ? createOutcomeUnknown(failed.error, failed.sent)
              : createOutcomeUnknown(upstream))
          ) {
            // No secret here: the operation, the status and ACS's error code only.
            metrics?.upstreamCreateOutcomeUnknown.inc({ operation });
            logger?.warn(
              { operation, status, acsCode: upstream.options.acsCode },
              "ACS create failed after it may have created the identity: an identity whose answer was lost may exist (not retried; it cannot be listed with api-version 2023-10-01)",
            );
          } else if (upstream.failure === "unauthorized") {
            // Not an outage: the access key (or Entra identity) is wrong or lacks the role. Every
            // call will fail the same way until an operator fixes the configuration.
            logger?.error(
              { operation, status, acsCode: upstream.options.acsCode },
              "ACS refused the gateway's credentials: check COMMUNICATION_SERVICES_CONNECTION_STRING (or the Entra ID role)",
            );
          } else if (upstream.failure === "unavailable") {
            logger?.warn(
              { operation, status, acsCode: upstream.options.acsCode },
              "ACS call failed",
            );
          }
          throw upstream;
        }
        await sleep(50 + Math.floor(Math.random() * 100));
      } finally {
        if (!probe) {
          metrics?.upstreamRequests.inc({ operation, status: String(status) });
          metrics?.upstreamDuration.observe({ operation }, (performance.now() - started) / 1000);
        }
      }
    }
  }

  const lifetime = (minutes: number | undefined) =>
    minutes === undefined ? {} : { tokenExpiresInMinutes: minutes };

  return {
    createUser: (options) =>
      call("createUser", async (abortSignal) => {
        if (options?.customId !== undefined) {
          customIds.set(abortSignal, options.customId);
        }
        const user = await client.createUser({ abortSignal });
        return user.communicationUserId;
      }),
    createUserAndToken: (scopes, expiresInMinutes) =>
      call("createUserAndToken", async (abortSignal) => {
        const result = await client.createUserAndToken(scopes as AcsScope[], {
          abortSignal,
          ...lifetime(expiresInMinutes),
        });
        return {
          userId: result.user.communicationUserId,
          token: { token: result.token, expiresOn: result.expiresOn.getTime() },
        };
      }),
    issueToken: (userId, scopes, expiresInMinutes): Promise<IssuedToken> =>
      call("issueToken", async (abortSignal) => {
        const result = await client.getToken(
          { communicationUserId: userId },
          scopes as AcsScope[],
          {
            abortSignal,
            ...lifetime(expiresInMinutes),
          },
        );
        return { token: result.token, expiresOn: result.expiresOn.getTime() };
      }),
    revokeTokens: (userId, options) =>
      call(
        "revokeTokens",
        (abortSignal) => client.revokeTokens({ communicationUserId: userId }, { abortSignal }),
        { probe: options?.probe },
      ),
    deleteUser: (userId) =>
      call("deleteUser", (abortSignal) =>
        client.deleteUser({ communicationUserId: userId }, { abortSignal }),
      ),
    exchangeTeamsToken: ({ teamsToken, appId, userObjectId }) =>
      call("exchangeTeamsToken", async (abortSignal) => {
        const result = await client.getTokenForTeamsUser({
          teamsUserAadToken: teamsToken,
          clientId: appId,
          userObjectId,
          abortSignal,
        });
        return { token: result.token, expiresOn: result.expiresOn.getTime() };
      }),
  };
}
