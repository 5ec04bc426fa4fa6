import type { IdentityProvider } from "../identity/identity-provider.js";
import { UpstreamError } from "../identity/upstream-error.js";
import { wrapMethods } from "../wrap-methods.js";

/**
 * What /readyz reports. `ready` is whether THIS instance can serve: ACS reachable and accepting the
 * gateway's credentials. The cache is reported but never makes an instance unready: every instance
 * shares one Redis, so failing them all at once would turn a degraded service (tokens still come
 * straight from ACS) into an outage. The database (the self-service mappings and the directory)
 * likewise: shared by every instance, and admin calls and cache hits go on without it. It is
 * `unavailable` while its open has failed (unreachable, refused, an unwritable folder; retried),
 * which makes the status `degraded`; `opening` is not (a fresh PGlite takes seconds).
 */
export interface ReadinessReport {
  ready: boolean;
  /** `ok`; `degraded` (serving, cache down); `unavailable` (ACS unreachable); `misconfigured`. */
  status: "ok" | "degraded" | "unavailable" | "misconfigured";
  checks: {
    upstream: "ok" | "unreachable" | "credentials-rejected";
    cache: "ok" | "unavailable";
    /** Only for a gateway with a database of its own (not a `createApp` kept in memory). */
    database?: "ok" | "opening" | "unavailable";
  };
}

export interface Readiness {
  report(): Promise<ReadinessReport>;
  /** Wraps the ACS client so that a refused credential (and its recovery) is noticed. */
  track(identity: IdentityProvider): IdentityProvider;
}

export function createReadiness(options: {
  /** Any HTTP answer from here means ACS is reachable (ACS has no ping call). */
  acsEndpoint: string;
  cacheReady(): Promise<boolean>;
  /** The database's open (app/directory.ts); none without a database. */
  databaseState?: () => "idle" | "opening" | "open" | "failed";
  /** @default 2000 */
  probeTimeoutMs?: number;
}): Readiness {
  let credentialsRejected = false;

  async function reachable(): Promise<boolean> {
    try {
      const response = await fetch(new URL("/", options.acsEndpoint), {
        method: "HEAD",
        signal: AbortSignal.timeout(options.probeTimeoutMs ?? 2000),
      });
      await response.body?.cancel();
      return true;
    } catch {
      return false;
    }
  }

  function observe<T>(call: Promise<T>): Promise<T> {
    return call.then(
      (value) => {
        credentialsRejected = false;
        return value;
      },
      (error: unknown) => {
        if (error instanceof UpstreamError) {
          // Any answer but 401/403 Denied proves the credentials work.
          credentialsRejected = error.failure === "unauthorized";
        }
        throw error;
      },
    );
  }

  return {
    async report() {
      const [upstreamUp, cacheUp] = await Promise.all([
        reachable(),
        options.cacheReady().catch(() => false),
      ]);
      const upstream = !upstreamUp
        ? "unreachable"
        : credentialsRejected
          ? "credentials-rejected"
          : "ok";
      const state = options.databaseState?.();
      const database =
        state === undefined
          ? undefined
          : state === "failed"
            ? "unavailable"
            : state === "opening"
              ? "opening"
              : "ok";
      const status =
        upstream === "credentials-rejected"
          ? "misconfigured"
          : upstream === "unreachable"
            ? "unavailable"
            : cacheUp && database !== "unavailable"
              ? "ok"
              : "degraded";
      return {
        ready: upstream === "ok",
        status,
        checks: {
          upstream,
          cache: cacheUp ? "ok" : "unavailable",
          ...(database ? { database } : {}),
        },
      };
    },

    // Every ACS call alike (a new one too). A Teams exchange's 401 is about the Teams token
    // (invalid_teams_token), never ours, so it clears the flag like any other answer.
    track(identity) {
      return wrapMethods(identity, (_operation, call) => observe(call()));
    },
  };
}

/**
 * An identity of no resource (all-zero GUIDs): revoking its tokens changes nothing anywhere, and
 * ACS answers it only after checking the request's signature. So the answer tells a wrong access
 * key (401 Denied) apart from a working one (401 IdentityNotOwned, or 404).
 */
export const PROBE_USER_ID =
  "8:acs:00000000-0000-0000-0000-000000000000_00000000-0000-0000-0000-000000000000";

/**
 * Checks at start that ACS accepts the gateway's credentials, so a wrong key stops the process
 * with a clear message before any user is served. Unreachable ACS is not a start-up error (it may
 * come back); readiness reports it. The probe's expected 401/404 is not counted in the upstream
 * metrics: a healthy start must not add to the 4xx series the documented alert fires on.
 */
export async function checkAcsCredentials(
  identity: IdentityProvider,
): Promise<"ok" | "rejected" | "unreachable"> {
  try {
    await identity.revokeTokens(PROBE_USER_ID, { probe: true });
    return "ok";
  } catch (error) {
    if (!(error instanceof UpstreamError)) {
      throw error;
    }
    switch (error.failure) {
      case "unauthorized":
        return "rejected";
      case "unavailable":
      case "throttled":
        return "unreachable";
      default:
        return "ok";
    }
  }
}
