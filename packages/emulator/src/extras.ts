import { readFileSync } from "node:fs";
import { ANSWERED_API_VERSIONS } from "./api-versions.js";
import { AcsError } from "./errors.js";
import type { Handler } from "./handlers.js";
import type { EmulatorOperation } from "./options.js";
import type { IdentityRecord, IdentityStore } from "./store.js";

/**
 * The emulator's own routes beside the ACS API (docs/emulator.md, "The emulator's own routes"):
 * `GET /emulator/health` (unsigned), and, signed like every ACS call but with no api-version,
 * `GET /emulator/identities` and `POST /emulator/reset`. (`POST /emulator/introspect` is a handler
 * of its own, in handlers.ts.)
 */
export type ExtraOperation = Extract<EmulatorOperation, "listIdentities" | "reset">;

/** Operations that take no api-version: the emulator's own, not the service's. */
export const UNVERSIONED_OPERATIONS: ReadonlySet<EmulatorOperation> = new Set<EmulatorOperation>([
  "introspect",
  "listIdentities",
  "reset",
]);

/** The listing's page size unless `top` says otherwise, and the most `top` may ask for. */
export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;

/** The package's version, from its package.json (next to `src/` and `dist/` alike). */
const PACKAGE_VERSION = (() => {
  try {
    const manifest = JSON.parse(
      readFileSync(new URL("../package.json", import.meta.url), "utf8"),
    ) as { version?: unknown };
    return typeof manifest.version === "string" ? manifest.version : "unknown";
  } catch {
    return "unknown";
  }
})();

/**
 * `GET /emulator/health`'s answer: up, which emulator, which api-versions it speaks (all it
 * answers, including those `api-supported-versions` leaves out).
 */
export function emulatorHealth() {
  return { status: "ok", version: PACKAGE_VERSION, apiVersions: ANSWERED_API_VERSIONS };
}

const iso = (epochMs: number | undefined) =>
  epochMs === undefined ? undefined : new Date(epochMs).toISOString();

/** One identity as `GET /emulator/identities` lists it; absent fields are left out. */
function listed(record: IdentityRecord) {
  return {
    id: record.id,
    ...(record.customId === undefined ? {} : { customId: record.customId }),
    createdAt: iso(record.createdAt),
    deleted: record.deletedAt !== undefined,
    ...(record.deletedAt === undefined ? {} : { deletedAt: iso(record.deletedAt) }),
    ...(record.revokedAt === undefined ? {} : { revokedAt: iso(record.revokedAt) }),
    ...(record.lastTokenIssuedAt === undefined
      ? {}
      : { lastTokenIssuedAt: iso(record.lastTokenIssuedAt) }),
  };
}

function pageParameter(query: URLSearchParams, name: string, fallback: number, max: number) {
  const text = query.get(name);
  if (text === null) {
    return fallback;
  }
  const value = /^\d{1,9}$/.test(text) ? Number(text) : NaN;
  if (Number.isNaN(value) || value > max || (name === "top" && value < 1)) {
    throw new AcsError(
      400,
      "ValidationError",
      `${name} must be a whole number from ${name === "top" ? 1 : 0} to ${max}.`,
      { target: name },
    );
  }
  return value;
}

export function createExtraHandlers(deps: {
  store: IdentityStore;
  /** Sets every `Emulator.counters` entry back to 0. */
  resetCounters(): void;
}): Record<ExtraOperation, Handler> {
  const { store } = deps;
  return {
    /**
     * Paged, in creation order, deleted identities included: `?top=` (1..1000, default 100) and
     * `?skip=`; `nextLink` (a path and query, to sign like any request) while more remain.
     */
    async listIdentities(ctx) {
      const top = pageParameter(ctx.query, "top", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
      const skip = pageParameter(ctx.query, "skip", 0, Number.MAX_SAFE_INTEGER);
      const all = store.list();
      const body: { value: unknown[]; count: number; nextLink?: string } = {
        value: all.slice(skip, skip + top).map(listed),
        count: all.length,
      };
      if (skip + top < all.length) {
        body.nextLink = `/emulator/identities?skip=${skip + top}&top=${top}`;
      }
      return { status: 200, body };
    },

    /** Forgets identities, deletions and revocations (in the state file too) and zeroes the counters. */
    async reset() {
      store.reset();
      deps.resetCounters();
      return { status: 204 };
    },
  };
}
