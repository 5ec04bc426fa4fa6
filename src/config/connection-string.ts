import { z } from "zod";
import type { AcsConnection } from "../config.js";
import { BASE64 } from "./fields.js";
import { url } from "./url.js";

// http:// is accepted here: whether clear text may leave the machine is ACS_ALLOW_INSECURE's
// business, a rule between the two settings (src/config/upstream.ts).
const endpoint = url({
  protocols: ["https", "http"],
  normalize: true,
  problems: {
    notAUrl: "its endpoint is not a URL",
    protocol: "its endpoint must be an https:// URL",
  },
});

/**
 * `endpoint=https://x.communication.azure.com/;accesskey=BASE64` (keys case-insensitive, the form
 * the Azure portal shows). Its problems never quote the value: it holds the access key.
 */
export const connectionString = z.string().transform((value, ctx): AcsConnection => {
  const parts = new Map<string, string>();
  for (const segment of value.split(";")) {
    const at = segment.indexOf("=");
    if (at > 0) {
      parts.set(segment.slice(0, at).trim().toLowerCase(), segment.slice(at + 1).trim());
    }
  }
  const given = parts.get("endpoint");
  const accessKey = parts.get("accesskey");
  if (!given || !accessKey) {
    ctx.addIssue("must have the form endpoint=https://...;accesskey=...");
    return z.NEVER;
  }
  const parsed = endpoint.safeParse(given);
  if (!parsed.success) {
    ctx.addIssue(parsed.error.issues[0]!.message);
    return z.NEVER;
  }
  if (!BASE64.test(accessKey) || Buffer.from(accessKey, "base64").length < 16) {
    ctx.addIssue("its accesskey must be base64 (as the Azure portal shows it)");
    return z.NEVER;
  }
  return { endpoint: parsed.data, accessKey };
});

/** `connectionString` for callers outside the configuration: the connection, or its problem. */
export function parseConnectionString(value: string): AcsConnection | string {
  const result = connectionString.safeParse(value);
  return result.success ? result.data : result.error.issues[0]!.message;
}
