/**
 * In-process singleflight, keyed by user and entry. A flight remembers the user's epoch it began
 * under (once known), so a caller whose lookup saw a newer epoch (a revoke happened in between)
 * does not join a flight that may return a pre-revoke token; it starts its own.
 */
export interface Flight<T> {
  /** The user's epoch this flight reads and writes under; `undefined` until known. */
  epoch: string | undefined;
  promise: Promise<T>;
}

export interface Flights<T> {
  get(userId: string, suffix: string): Flight<T> | undefined;
  set(userId: string, suffix: string, flight: Flight<T>): void;
  /** Forget `flight` if it is still the current one for its entry. */
  end(userId: string, suffix: string, flight: Flight<T>): void;
  /** New callers for this user start new flights (used around invalidations). */
  dropUser(userId: string): void;
  size(): number;
}

export function createFlights<T>(): Flights<T> {
  const byUser = new Map<string, Map<string, Flight<T>>>();
  return {
    get: (userId, suffix) => byUser.get(userId)?.get(suffix),
    set(userId, suffix, flight) {
      let entries = byUser.get(userId);
      if (!entries) {
        entries = new Map();
        byUser.set(userId, entries);
      }
      entries.set(suffix, flight);
    },
    end(userId, suffix, flight) {
      const entries = byUser.get(userId);
      if (entries?.get(suffix) === flight) {
        entries.delete(suffix);
        if (entries.size === 0) {
          byUser.delete(userId);
        }
      }
    },
    dropUser(userId) {
      byUser.delete(userId);
    },
    size() {
      let n = 0;
      for (const entries of byUser.values()) {
        n += entries.size;
      }
      return n;
    },
  };
}
