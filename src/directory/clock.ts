/**
 * Time as the directory and the webhook dispatcher see it. Injected so that tests drive leases,
 * backoff and give-up with a fake clock instead of waiting: every "is it due yet?" decision compares
 * against `now()`, and every wait goes through `setTimeout`.
 *
 * Leases and schedules are stored as this clock's time, not the database's `now()`: instances on
 * different hosts therefore assume roughly synchronised clocks (NTP). A skew of a few seconds only
 * shifts when an expired lease is taken over, which the lease lengths (tens of seconds) absorb.
 */
export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
  /** Runs `fn` once after `ms`; the handle is only ever given back to `clearTimeout`. */
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    // Unref'd: a pending poll or retry never keeps a stopping process alive.
    return setTimeout(fn, Math.max(0, ms)).unref();
  },
  clearTimeout(handle) {
    clearTimeout(handle as NodeJS.Timeout);
  },
};

/** A promise that resolves after `ms` on `clock`. */
export function sleep(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => clock.setTimeout(resolve, ms));
}

export const iso = (ms: number): string => new Date(ms).toISOString();
