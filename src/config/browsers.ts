import type { Config } from "../config.js";
import { parseCorsOrigins } from "../server/cors-policy.js";
import type { Decisions } from "./decisions.js";
import { bool, checkedBy, settings } from "./fields.js";

/** What browser pages may call, and which operations run. */
export const browsers = ({ production }: Decisions) =>
  settings({
    // The policy module owns the origin rules (and the production default: no origin).
    CORS_ORIGINS: checkedBy((value) => parseCorsOrigins(value, production)),
    PERSISTED_DOCUMENTS_ONLY: bool(false),
  }).transform((s): Pick<Config, "cors" | "persistedDocumentsOnly"> => ({
    cors: s.CORS_ORIGINS,
    persistedDocumentsOnly: s.PERSISTED_DOCUMENTS_ONLY,
  }));
