import { z } from "zod";
import type { Config } from "../config.js";
import { BASE64, bool, settings, whenParsed } from "./fields.js";
import { url } from "./url.js";

/** Where the embedded directory lives when `loadConfig` reads the process's own environment. */
export const DEFAULT_DIRECTORY_DATA_DIR = ".data/directory";

/**
 * `whsec_` and base64 of 24 to 64 bytes: the Standard Webhooks secret format (what the
 * `standardwebhooks` libraries of every receiver expect). The value is never echoed in a problem.
 */
const webhookSecret = z.string().refine((value) => {
  if (!value.startsWith("whsec_")) {
    return false;
  }
  const body = value.slice("whsec_".length);
  const bytes = BASE64.test(body) ? Buffer.from(body, "base64").length : 0;
  return bytes >= 24 && bytes <= 64;
}, "must be whsec_ followed by base64 of 24 to 64 bytes (a Standard Webhooks secret)");

/**
 * Each receiver: TLS, or plain HTTP to loopback only (the events name users, and the signature
 * protects integrity, not confidentiality), and no `user:password@` (fetch refuses it). The one URL parser, so no problem echoes a URL (a path
 * or query may carry a credential).
 */
const receiver = url({ protocols: ["https"], allowLoopbackHttp: true, noCredentials: true });
const webhookUrls = z.string().transform((value, ctx) => {
  const urls: string[] = [];
  for (const [index, item] of value
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")
    .entries()) {
    const parsed = receiver.safeParse(item);
    if (parsed.success) {
      urls.push(parsed.data);
    } else {
      ctx.addIssue(`URL ${index + 1}: ${parsed.error.issues[0]?.message ?? "invalid"}`);
    }
  }
  return urls;
});

/** A JWT claim name: the caller's external id is that claim's value. */
const claimName = z
  .string()
  .regex(/^[\w.:/-]{1,100}$/, "must be a claim name (letters, digits and . : / _ -)");

/**
 * The identity directory (src/directory/, docs/directory.md): where the embedded database lives,
 * the webhook receivers of its lifecycle events, the claim that names a caller, and ACS customId.
 *
 * `DIRECTORY_DATA_DIR`: a folder, or `memory`. Unset, the folder is `.data/directory` under the
 * working directory when the configuration comes from the process's environment (`npm start`, the
 * image). When a caller passes its own settings (`createApp` in tests and embeddings) it stays
 * unset: two gateways in one process, or test workers, must never share one PGlite folder, and an
 * in-memory PGlite costs seconds of initdb per gateway; such a gateway without DATABASE_URL keeps
 * no directory (src/app/directory.ts).
 */
export const directory = (fromProcess: boolean) =>
  settings({
    DIRECTORY_DATA_DIR: z.string().optional(),
    WEBHOOK_URLS: webhookUrls.optional(),
    WEBHOOK_SECRET: webhookSecret.optional(),
    AUTH_EXTERNAL_ID_CLAIM: claimName.default("sub"),
    ACS_CUSTOM_ID: bool(false),
  })
    .superRefine(
      (s, ctx) => {
        const urls = s.WEBHOOK_URLS ?? [];
        if (urls.length > 0 && s.WEBHOOK_SECRET === undefined) {
          ctx.addIssue({
            code: "custom",
            path: ["WEBHOOK_SECRET"],
            message: "required when WEBHOOK_URLS is set (every delivery is signed)",
          });
        }
        if (urls.length === 0 && s.WEBHOOK_SECRET !== undefined) {
          // A secret with nowhere to go is a deployment mistake (a forgotten WEBHOOK_URLS).
          ctx.addIssue({
            code: "custom",
            path: ["WEBHOOK_SECRET"],
            message: "is set but WEBHOOK_URLS is not: set both or neither",
          });
        }
      },
      whenParsed("WEBHOOK_URLS", "WEBHOOK_SECRET"),
    )
    .transform((s): Pick<Config, "directory"> => ({
      directory: {
        dataDir: s.DIRECTORY_DATA_DIR ?? (fromProcess ? DEFAULT_DIRECTORY_DATA_DIR : undefined),
        webhooks:
          s.WEBHOOK_URLS && s.WEBHOOK_URLS.length > 0 && s.WEBHOOK_SECRET
            ? { urls: s.WEBHOOK_URLS, secret: s.WEBHOOK_SECRET }
            : undefined,
        externalIdClaim: s.AUTH_EXTERNAL_ID_CLAIM,
        customId: s.ACS_CUSTOM_ID,
      },
    }));
