import {
  abortReason,
  createGatewayClient,
  type AbortSignalLike,
  type GatewayClientOptions,
} from "./gateway-client.js";
import { GatewayClientError } from "./errors.js";
import { toTokenScope, type TokenScopeInput } from "./scopes.js";

export interface TokenRefresherOptions extends GatewayClientOptions {
  /**
   * What the token is for, at least one: as the ACS SDKs spell it (`["voip"]` for calling,
   * `["chat"]` for chat, `"chat.join"`, ...) or as the gateway's GraphQL enum does (`["VOIP"]`).
   */
  scopes: readonly TokenScopeInput[];
  /** 60 to 1440; the gateway's (ACS's) default of 1440 when omitted. */
  expiresInMinutes?: number;
  /**
   * A token for this ACS user (`issueToken`; an admin, or the user's own identity under JWT auth).
   * Omitted: the caller's own identity (`issueMyToken`), created on first use.
   */
  userId?: string;
  /**
   * How often a call is tried again: after a `RATE_LIMITED` / `UPSTREAM_THROTTLED` answer, once
   * its `retryAfterSeconds` are up; after a transient failure (`NETWORK_ERROR`,
   * `UPSTREAM_UNAVAILABLE`, or an HTTP 502, 503 or 504 from a proxy in front of the gateway),
   * after 1, 2, 4, ... seconds. The SDK's proactive refresh runs once per window and does not
   * reschedule after a failure, so one network blip must not end it.
   * @default 3
   */
  maxRetries?: number;
  /**
   * A retry that would wait longer than this is not attempted: the error is thrown at once, so a
   * caller is never stuck behind a long throttle window.
   * @default 60
   */
  maxRetryAfterSeconds?: number;
  /** @default Date.now (a page's fake clock is picked up through Date.now). */
  now?: () => number;
}

/** What `AzureCommunicationTokenCredential`'s `tokenRefresher` option takes. */
export type TokenRefresher = (abortSignal?: AbortSignalLike) => Promise<string>;

const THROTTLED = new Set(["RATE_LIMITED", "UPSTREAM_THROTTLED"]);
const TRANSIENT = new Set(["NETWORK_ERROR", "UPSTREAM_UNAVAILABLE"]);
const TRANSIENT_STATUS = new Set([502, 503, 504]);

/**
 * Seconds to wait before trying `error`'s call again (`attempt` = tries so far minus one), or
 * undefined when it is not worth another try.
 */
function retryDelaySeconds(error: unknown, attempt: number): number | undefined {
  if (!(error instanceof GatewayClientError)) {
    return undefined;
  }
  if (THROTTLED.has(error.code)) {
    return error.retryAfterSeconds ?? 1;
  }
  if (
    TRANSIENT.has(error.code) ||
    (error.code === "BAD_RESPONSE" && TRANSIENT_STATUS.has(error.status ?? 0))
  ) {
    return 2 ** attempt;
  }
  return undefined;
}

/** Waits `ms`, or rejects with the abort reason as soon as `signal` aborts. */
function delay(ms: number, signal: AbortSignalLike | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortReason(signal));
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortReason(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** The `exp` claim (ms since the epoch) of a JWT, or undefined when the token is not one. */
function jwtExpiry(token: string): number | undefined {
  const payload = token.split(".")[1];
  if (!payload) {
    return undefined;
  }
  try {
    const base64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(base64.padEnd(Math.ceil(base64.length / 4) * 4, "="))) as {
      exp?: unknown;
    };
    return typeof claims.exp === "number" ? claims.exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The `tokenRefresher` for `new AzureCommunicationTokenCredential({ tokenRefresher,
 * refreshProactively: true })` (calling and chat SDKs): asks the gateway for a token, honours the
 * SDK's AbortSignal, waits out `RATE_LIMITED` / `UPSTREAM_THROTTLED` answers as the gateway says,
 * tries again after a transient failure, and never hands the SDK a token that is already expired
 * (the SDK would throw, and a proactive refresh loop would call again at once). Failures are
 * GatewayClientErrors with the gateway's code; a failure of the app's own `getHeaders` is
 * rethrown as it is.
 */
export function createTokenRefresher(options: TokenRefresherOptions): TokenRefresher {
  if (!Array.isArray(options.scopes) || options.scopes.length === 0) {
    throw new TypeError("scopes must hold at least one scope");
  }
  const { expiresInMinutes, userId } = options;
  if (
    expiresInMinutes !== undefined &&
    (!Number.isInteger(expiresInMinutes) || expiresInMinutes < 60 || expiresInMinutes > 1440)
  ) {
    throw new TypeError("expiresInMinutes must be a whole number from 60 to 1440");
  }
  if (userId !== undefined && (typeof userId !== "string" || userId.length === 0)) {
    throw new TypeError("userId must be a non-empty string");
  }
  const maxRetries = options.maxRetries ?? 3;
  const maxRetryAfterSeconds = options.maxRetryAfterSeconds ?? 60;
  const now = options.now ?? (() => Date.now());
  const client = createGatewayClient(options);
  // Checked and converted once: a typo throws here, not on every refresh. Duplicates are harmless
  // (the gateway de-duplicates) and kept as given.
  const scopes = options.scopes.map(toTokenScope);
  /**
   * The identity of this refresher's first token (`issueMyToken`). The ACS clients fed by it
   * belong to that identity: if the gateway later answers with another (the first was deleted,
   * by `deleteMe` or an admin, and the caller given a new one), handing the SDK a token for a
   * different user would fail in the SDK in ways that do not say why.
   */
  let boundUserId: string | undefined;

  async function issue(signal: AbortSignalLike | undefined): Promise<unknown> {
    if (userId !== undefined) {
      const data = await client.request(
        "IssueToken",
        { userId, scopes, expiresInMinutes },
        { signal },
      );
      return data.issueToken;
    }
    const data = await client.request("IssueMyToken", { scopes, expiresInMinutes }, { signal });
    return data.issueMyToken;
  }

  return async function tokenRefresher(abortSignal?: AbortSignalLike): Promise<string> {
    for (let attempt = 0; ; attempt++) {
      if (abortSignal?.aborted) {
        throw abortReason(abortSignal);
      }
      try {
        // Read as unknown: whatever answered (a proxy, an older gateway) may not hold the shape.
        const issued = (await issue(abortSignal)) as
          { token?: unknown; expiresOn?: unknown } | null | undefined;
        const token = issued?.token;
        const expiry =
          typeof token === "string"
            ? (jwtExpiry(token) ??
              (typeof issued?.expiresOn === "string" ? Date.parse(issued.expiresOn) : NaN))
            : NaN;
        if (typeof token !== "string" || token.length === 0 || Number.isNaN(expiry)) {
          throw new GatewayClientError("BAD_RESPONSE", "The gateway answered without a token.");
        }
        if (expiry <= now()) {
          throw new GatewayClientError(
            "TOKEN_EXPIRED",
            "The gateway handed out a token that is already expired; check this machine's clock.",
          );
        }
        const issuedTo = (issued as { user?: { id?: unknown } }).user?.id;
        if (userId === undefined && typeof issuedTo === "string") {
          boundUserId ??= issuedTo;
          if (issuedTo !== boundUserId) {
            throw new GatewayClientError(
              "IDENTITY_CHANGED",
              "Your ACS identity was replaced (the old one was deleted): create the ACS clients again with a new credential.",
              { extensions: { previousUserId: boundUserId, userId: issuedTo } },
            );
          }
        }
        return token;
      } catch (error) {
        const wait = retryDelaySeconds(error, attempt);
        if (wait === undefined || attempt >= maxRetries || wait > maxRetryAfterSeconds) {
          throw error;
        }
        await delay(wait * 1000, abortSignal);
      }
    }
  };
}
