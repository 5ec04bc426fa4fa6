import { Gauge, type Registry } from "prom-client";
import type { TokenCache } from "../cache/token-cache.js";

/**
 * `acsgw_token_cache_ready`: the cache's state at each scrape, 0 while Redis is unreachable or the
 * cache's breaker is open. Read when scraped rather than pushed on change, so it cannot go stale.
 */
export function registerCacheReadyGauge(
  registry: Registry,
  cache: Pick<TokenCache, "isReady">,
): void {
  new Gauge({
    name: "acsgw_token_cache_ready",
    help: "1 when the token cache's store can be used now; 0 while Redis is unreachable or the cache's breaker is open.",
    registers: [registry],
    async collect() {
      this.set((await cache.isReady().catch(() => false)) ? 1 : 0);
    },
  });
}
