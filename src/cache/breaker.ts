/**
 * A minimal circuit breaker for the cache's Redis calls. After `failureThreshold` consecutive
 * failures it opens: callers skip Redis (and go straight to ACS) for `openMs`. After that, calls
 * may try again (half-open); the first success closes it, a failure re-opens it at once.
 */
export interface BreakerOptions {
  /** @default 5 */
  failureThreshold?: number;
  /** @default 1000 */
  openMs?: number;
  now?: () => number;
}

export interface Breaker {
  /** May a Redis call be attempted now (closed, or open long enough to probe)? Changes nothing. */
  canTry(): boolean;
  /**
   * As `canTry`, for a call about to be made: once the breaker has been open long enough, the
   * first caller gets the probe and the others are refused for another `openMs`, so a Redis that
   * still does not answer costs one timeout per `openMs`, not one per call meanwhile.
   */
  claim(): boolean;
  isOpen(): boolean;
  success(): void;
  /** @returns true when this failure opened the breaker */
  failure(): boolean;
}

export function createBreaker(options: BreakerOptions = {}): Breaker {
  const threshold = options.failureThreshold ?? 5;
  const openMs = options.openMs ?? 1000;
  const now = options.now ?? Date.now;
  let failures = 0;
  let open = false;
  let openUntil = 0;
  return {
    canTry: () => !open || now() >= openUntil,
    claim() {
      if (!open) {
        return true;
      }
      if (now() < openUntil) {
        return false;
      }
      openUntil = now() + openMs;
      return true;
    },
    isOpen: () => open,
    success() {
      failures = 0;
      open = false;
    },
    failure() {
      failures += 1;
      if (open) {
        openUntil = now() + openMs;
        return false;
      }
      if (failures >= threshold) {
        open = true;
        openUntil = now() + openMs;
        return true;
      }
      return false;
    },
  };
}
