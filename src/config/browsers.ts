import { z } from "zod";
import type { Config } from "../config.js";
import type { CorsPolicy } from "../server/cors-policy.js";
import type { Decisions } from "./decisions.js";
import { bool, settings } from "./fields.js";
import { url } from "./url.js";

/**
 * `CORS_ORIGINS`: exactly these origins, comma-separated, each through the one URL parser as a
 * bare origin. Unset: no browser origin in production, any loopback page in development (so a
 * Vite dev server works without configuration). In production an http:// page off loopback would
 * carry tokens in clear text, so only https:// (and http:// on loopback) is accepted.
 */
const corsOrigins = (production: boolean) => {
  const origin = url({
    protocols: production ? ["https"] : ["https", "http"],
    allowLoopbackHttp: production,
    origin: true,
    why: "an http:// page off loopback would carry tokens in clear text",
  });
  return z
    .string()
    .optional()
    .transform((value, ctx): CorsPolicy => {
      if (value === undefined) {
        return production ? { mode: "none" } : { mode: "loopback" };
      }
      const origins: string[] = [];
      for (const item of value
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean)) {
        if (item.includes("*")) {
          ctx.addIssue("no wildcards: list each origin exactly (scheme://host[:port])");
          return z.NEVER;
        }
        const parsed = origin.safeParse(item);
        if (!parsed.success) {
          // The item is an origin the operator wrote for browsers to see: safe to quote.
          ctx.addIssue(`"${item}": ${parsed.error.issues[0]?.message ?? "invalid"}`);
          return z.NEVER;
        }
        origins.push(parsed.data);
      }
      if (origins.length === 0) {
        ctx.addIssue("lists no origin");
        return z.NEVER;
      }
      return { mode: "list", origins };
    });
};

/** What browser pages may call, and which operations run. */
export const browsers = ({ production }: Decisions) =>
  settings({
    CORS_ORIGINS: corsOrigins(production),
    PERSISTED_DOCUMENTS_ONLY: bool(false),
  }).transform((s): Pick<Config, "cors" | "persistedDocumentsOnly"> => ({
    cors: s.CORS_ORIGINS,
    persistedDocumentsOnly: s.PERSISTED_DOCUMENTS_ONLY,
  }));
