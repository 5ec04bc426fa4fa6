/**
 * A keyed promise map: concurrent `run(key, start)` calls with the same key share ONE call of
 * `start` while it is in flight; once it settles the key is free again (no result is cached).
 * Used by the token cache (keys include the user's epoch, see token-cache-coordinator.ts).
 */
export interface Singleflight<T> {
  run(key: string, start: () => Promise<T>): Promise<T>;
  /** Calls in flight right now. */
  size(): number;
  /** Later callers of every key start their own call; flights already running finish as they are. */
  clear(): void;
  /** As `clear`, for the keys that start with `prefix` only. */
  forget(prefix: string): void;
}

export function createSingleflight<T>(): Singleflight<T> {
  const flights = new Map<string, Promise<T>>();
  return {
    run(key, start) {
      const existing = flights.get(key);
      if (existing) {
        return existing;
      }
      let flight: Promise<T>;
      try {
        flight = start();
      } catch (error) {
        return Promise.reject(error);
      }
      const tracked = flight.finally(() => {
        // Only our own entry: after clear() a newer flight may own the key.
        if (flights.get(key) === tracked) {
          flights.delete(key);
        }
      });
      flights.set(key, tracked);
      return tracked;
    },
    size: () => flights.size,
    clear() {
      flights.clear();
    },
    forget(prefix) {
      // Flights in progress at once are few (one per key being minted): a scan is cheap.
      for (const key of flights.keys()) {
        if (key.startsWith(prefix)) {
          flights.delete(key);
        }
      }
    },
  };
}
