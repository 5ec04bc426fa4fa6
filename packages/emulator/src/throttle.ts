import { AcsError } from "./errors.js";

/**
 * The published ACS Identity limits, per resource and 30 seconds (docs/acs-wire-facts.md, "Service
 * behaviour").
 * Creating an identity with a token is its own bucket on the real service, so it is one here too.
 */
export const ACS_THROTTLE_LIMITS = {
  createIdentity: 1000,
  createIdentityWithToken: 1000,
  issueAccessToken: 1000,
  revokeAccessTokens: 500,
  deleteIdentity: 500,
  exchangeTeamsUserAccessToken: 500,
} as const;

export type ThrottleBucket = keyof typeof ACS_THROTTLE_LIMITS;
export type ThrottleLimits = Record<ThrottleBucket, number>;

export const ACS_THROTTLE_WINDOW_MS = 30_000;

export interface Throttle {
  /** Counts one call in `bucket`'s current window, or throws the 429 when the window is full. */
  admit(bucket: ThrottleBucket, now: number): void;
}

export interface ThrottleSettings {
  limits: ThrottleLimits;
  windowMs: number;
}

/**
 * Fixed windows aligned to the epoch (emulator's choice: the real service's exact windowing is not
 * published). Aligned windows make a test's injected clock predictable: the window ends at the next
 * multiple of the window, and `Retry-After` says how many whole seconds remain until then.
 * `undefined` settings: no throttling.
 */
export function createThrottle(settings: ThrottleSettings | undefined): Throttle {
  if (!settings) {
    return { admit() {} };
  }
  const { limits, windowMs } = settings;
  const windows = new Map<ThrottleBucket, { start: number; count: number }>();
  return {
    admit(bucket, now) {
      const start = Math.floor(now / windowMs) * windowMs;
      let window = windows.get(bucket);
      if (!window || window.start !== start) {
        window = { start, count: 0 };
        windows.set(bucket, window);
      }
      if (window.count >= limits[bucket]) {
        const retryAfter = Math.max(1, Math.ceil((start + windowMs - now) / 1000));
        throw new AcsError(
          429,
          "TooManyRequests",
          `Rate limit of ${limits[bucket]} requests per ${windowMs / 1000} seconds exceeded. Try again in ${retryAfter} seconds.`,
          { headers: { "Retry-After": String(retryAfter) } },
        );
      }
      window.count += 1;
    },
  };
}
