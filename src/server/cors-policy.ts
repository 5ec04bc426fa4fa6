// Pure policy (no Fastify import), so the config module can parse CORS_ORIGINS with it.

/**
 * Who may call `/graphql` from a browser page:
 * - `list`: exactly these origins (`CORS_ORIGINS`);
 * - `loopback`: any `http://localhost:<port>` / `http://127.0.0.1:<port>` page (development
 *   default, so a Vite dev server works without configuration);
 * - `none`: no browser origin (production default); server-to-server calls are unaffected.
 */
export type CorsPolicy =
  { mode: "list"; origins: readonly string[] } | { mode: "loopback" } | { mode: "none" };

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

/** `CORS_ORIGINS` -> a policy; a problem string for a bad value (the config module reports it). */
export function parseCorsOrigins(
  value: string | undefined,
  production: boolean,
): CorsPolicy | string {
  if (value === undefined) {
    return production ? { mode: "none" } : { mode: "loopback" };
  }
  const origins: string[] = [];
  for (const item of value
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)) {
    if (item.includes("*")) {
      return "no wildcards: list each origin exactly (scheme://host[:port])";
    }
    let url: URL;
    try {
      url = new URL(item);
    } catch {
      return `"${item}" is not an origin (scheme://host[:port])`;
    }
    if ((url.protocol !== "https:" && url.protocol !== "http:") || url.origin !== item) {
      return `"${item}" is not an origin (scheme://host[:port], no path or trailing slash)`;
    }
    if (production && url.protocol === "http:" && !LOOPBACK_ORIGIN.test(item)) {
      return `"${item}": an http:// page off loopback would carry tokens in clear text; use https://`;
    }
    origins.push(item);
  }
  if (origins.length === 0) {
    return "lists no origin";
  }
  return { mode: "list", origins };
}
