import { Counter, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/**
 * One registry per app instance (never prom-client's global one), so two gateways in one test
 * process don't count into each other. Label values are fixed enums: no user ids, no tokens.
 */
export interface Metrics {
  registry: Registry;
  cacheRequests: Counter<"result">;
  upstreamRequests: Counter<"operation" | "status">;
  upstreamDuration: Histogram<"operation">;
  /** Creates that failed after ACS may have done them (5xx, timeout, connection lost): possible orphans. */
  upstreamCreateOutcomeUnknown: Counter<"operation">;
  rateLimited: Counter<"caller">;
  authRefusals: Counter<"reason">;
  graphqlRequests: Counter<"field" | "type" | "outcome">;
  graphqlDuration: Histogram<"field" | "type">;
  auditEvents: Counter<"event">;
  cacheWaits: Counter<"scope">;
  cacheBreakerOpened: Counter;
}

export function createMetrics(options: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (options.defaultMetrics) {
    collectDefaultMetrics({ register: registry, prefix: "acsgw_" });
  }
  return {
    registry,
    cacheRequests: new Counter({
      name: "acsgw_token_cache_requests_total",
      help: "Token cache lookups by result (hit: served from the cache; miss: minted upstream).",
      labelNames: ["result"],
      registers: [registry],
    }),
    upstreamRequests: new Counter({
      name: "acsgw_upstream_requests_total",
      help: "Calls to the ACS Identity API by operation and HTTP status (0: no answer).",
      labelNames: ["operation", "status"],
      registers: [registry],
    }),
    upstreamDuration: new Histogram({
      name: "acsgw_upstream_request_duration_seconds",
      help: "Duration of calls to the ACS Identity API.",
      labelNames: ["operation"],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    upstreamCreateOutcomeUnknown: new Counter({
      name: "acsgw_upstream_create_outcome_unknown_total",
      help: "Identity creates (createUser, createUserAndToken) that failed after ACS may have created the identity (5xx, timeout, connection lost after sending): an identity nobody can find again may exist. Creates are never retried.",
      labelNames: ["operation"],
      registers: [registry],
    }),
    rateLimited: new Counter({
      name: "acsgw_rate_limited_total",
      help: "ACS calls refused by the per-caller budget (RATE_LIMITED answers), by caller kind (user, admin).",
      labelNames: ["caller"],
      registers: [registry],
    }),
    graphqlRequests: new Counter({
      name: "acsgw_graphql_requests_total",
      help: "GraphQL requests by first root field, operation type and outcome (ok or the first error's code).",
      labelNames: ["field", "type", "outcome"],
      registers: [registry],
    }),
    graphqlDuration: new Histogram({
      name: "acsgw_graphql_request_duration_seconds",
      help: "GraphQL request duration by first root field and operation type.",
      labelNames: ["field", "type"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    cacheWaits: new Counter({
      name: "acsgw_token_cache_waits_total",
      help: "Cache misses that waited for another request's mint (singleflight) instead of calling ACS, by scope (process, instance).",
      labelNames: ["scope"],
      registers: [registry],
    }),
    cacheBreakerOpened: new Counter({
      name: "acsgw_token_cache_breaker_opened_total",
      help: "Times repeated Redis failures opened the cache's breaker (Redis skipped for a moment; tokens come straight from ACS).",
      registers: [registry],
    }),
    auditEvents: new Counter({
      name: "acsgw_audit_events_total",
      help: "Identity changes by event (identity.created, tokens.revoked, identity.deleted).",
      labelNames: ["event"],
      registers: [registry],
    }),
    authRefusals: new Counter({
      name: "acsgw_auth_refusals_total",
      help: "Requests refused before GraphQL by reason (missing, malformed, invalid, expired, unavailable, router).",
      labelNames: ["reason"],
      registers: [registry],
    }),
  };
}
