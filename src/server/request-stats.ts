import { AsyncLocalStorage } from "node:async_hooks";

/**
 * What one GraphQL request cost, for its access log line: filled in by the cache's and the ACS
 * client's callbacks, which run deep below the resolvers and know nothing of requests. An
 * AsyncLocalStorage carries the request's counters there without threading them through every
 * layer's signature.
 */
export interface RequestStats {
  /** The request id (taken from `x-request-id` or made), echoed in the response. */
  requestId: string;
  cacheHits: number;
  cacheMisses: number;
  upstreamCalls: number;
}

const storage = new AsyncLocalStorage<RequestStats>();

/** Runs `fn` (the request's handling) with fresh counters for the request `requestId`. */
export function withRequestStats<T>(requestId: string, fn: () => T): T {
  return storage.run({ requestId, cacheHits: 0, cacheMisses: 0, upstreamCalls: 0 }, fn);
}

/** The current request's counters, if any (undefined outside a request: start-up probes, tests). */
export function currentRequestStats(): RequestStats | undefined {
  return storage.getStore();
}
