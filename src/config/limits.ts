import type { Config } from "../config.js";
import { int, settings, unset } from "./fields.js";

/** Per-operation limits and the ACS call budget. */
export const limits = settings({
  MAX_QUERY_DEPTH: int(8, 1, 100),
  MAX_ALIASES: int(10, 0, 1000),
  MAX_ROOT_FIELDS: int(5, 1, 1000),
  MAX_BODY_BYTES: int(32 * 1024, 1024, 10 * 1024 * 1024),
  RATE_LIMIT_ACS_CALLS_PER_MINUTE: int(30, 1, 1_000_000),
  RATE_LIMIT_ADMIN_ACS_CALLS_PER_MINUTE: int(0, 0, 1_000_000),
  // Retired rather than dropped: a deployment still setting it would otherwise get the default
  // budget without a word, on a limit whose meaning changed.
  RATE_LIMIT_TOKENS_PER_MINUTE: unset(
    "renamed: the limit now counts ACS calls, not requests (cache hits are free); use RATE_LIMIT_ACS_CALLS_PER_MINUTE (end users) and RATE_LIMIT_ADMIN_ACS_CALLS_PER_MINUTE (admins)",
  ),
}).transform((s): Pick<Config, "limits"> => ({
  limits: {
    maxDepth: s.MAX_QUERY_DEPTH,
    maxAliases: s.MAX_ALIASES,
    maxRootFields: s.MAX_ROOT_FIELDS,
    bodyLimitBytes: s.MAX_BODY_BYTES,
    acsCallsPerWindow: s.RATE_LIMIT_ACS_CALLS_PER_MINUTE,
    adminAcsCallsPerWindow: s.RATE_LIMIT_ADMIN_ACS_CALLS_PER_MINUTE,
    rateLimitWindowSeconds: 60,
  },
}));
