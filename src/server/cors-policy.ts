// Pure policy (no Fastify import): config/browsers.ts reads CORS_ORIGINS into a CorsPolicy.

/**
 * Who may call `/graphql` from a browser page:
 * - `list`: exactly these origins (`CORS_ORIGINS`);
 * - `loopback`: any `http://localhost:<port>` / `http://127.0.0.1:<port>` page (development
 *   default, so a Vite dev server works without configuration);
 * - `none`: no browser origin (production default); server-to-server calls are unaffected.
 */
export type CorsPolicy =
  { mode: "list"; origins: readonly string[] } | { mode: "loopback" } | { mode: "none" };

/** A page served from this machine over http (any port): the development default's origins. */
const LOOPBACK_ORIGIN = /^http:\/\/(localhost|127\.0\.0\.1|\[::1\])(:\d{1,5})?$/;

export function isOriginAllowed(policy: CorsPolicy, origin: string): boolean {
  switch (policy.mode) {
    case "list":
      return policy.origins.includes(origin);
    case "loopback":
      return LOOPBACK_ORIGIN.test(origin);
    case "none":
      return false;
  }
}
