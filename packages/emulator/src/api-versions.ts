import { AcsError } from "./errors.js";
import { ALL_SCOPES, type Scope } from "./rules.js";

/**
 * What each api-version of the Identity data plane offers, read from its published spec
 * (test/fixtures/acs-identity-spec/<version>/ and SOURCE.md there). A request is validated against
 * the surface of the version it names, so an SDK speaking an older version sees what that version
 * would answer.
 */
export interface ApiSurface {
  readonly version: string;
  readonly scopes: readonly Scope[];
  /**
   * `expiresInMinutes` (60..1440): absent, on issue only (2022-09-01), or on create and issue (from
   * 2022-10-01).
   */
  readonly expiresInMinutes: "none" | "issue" | "create-and-issue";
  /** `POST /teamsUser/:exchangeAccessToken`: absent, `{token}` only (2021-10-31-preview), or `{token, appId, userId}`. */
  readonly teamsExchange: "none" | "token-only" | "token-app-user";
  /** `customId` on create and `GET /identities/{id}` (2025-03-02-preview). */
  readonly customId: boolean;
  /**
   * The first preview's own API (2020-07-20-preview2): create answers 200 `{id}`, tokens come from
   * `POST /identities/{id}/token` as `{id, token, expiresOn}`, and revocation is
   * `PATCH /identities/{id}` with `tokensValidFrom`; the `:action` paths do not exist.
   */
  readonly legacy: boolean;
  /**
   * `POST /access/entra/:exchangeAccessToken` (an Entra user's token for an ACS token) and the Entra
   * assignments under `/access/entra/assignments` (2025-03-02-preview).
   */
  readonly entraAccess: boolean;
  /**
   * `POST /access/teamsExtension/:exchangeAccessToken` (a Teams Phone extension user's token for an
   * ACS token) and its assignments under `/access/teamsExtension/tenants/{tenantId}/assignments`
   * (2025-03-02-preview, 2025-06-30).
   */
  readonly teamsExtension: boolean;
  /**
   * Named in `api-supported-versions` (and in the refusal of an unknown version). False for the
   * published versions the service answers but no longer lists (see API_SURFACES).
   */
  readonly listed: boolean;
}

const BASE_SCOPES: readonly Scope[] = ["chat", "voip"];

type Optional = "legacy" | "entraAccess" | "teamsExtension" | "listed";

const surface = (
  version: string,
  rest: Omit<ApiSurface, "version" | Optional> & Partial<Pick<ApiSurface, Optional>>,
): ApiSurface => ({
  version,
  legacy: false,
  entraAccess: false,
  teamsExtension: false,
  listed: true,
  ...rest,
});

/** A version whose spec has exactly `same`'s operations, request bodies and answers. */
const sameAs = (
  version: string,
  same: ApiSurface,
  rest: Partial<Pick<ApiSurface, "listed">> = {},
): ApiSurface => ({ ...same, version, ...rest });

const V2021_03_07 = surface("2021-03-07", {
  scopes: BASE_SCOPES,
  expiresInMinutes: "none",
  teamsExchange: "none",
  customId: false,
});
const V2021_10_31_PREVIEW = surface("2021-10-31-preview", {
  scopes: BASE_SCOPES,
  expiresInMinutes: "none",
  teamsExchange: "token-only",
  customId: false,
});
const V2022_10_01 = surface("2022-10-01", {
  scopes: BASE_SCOPES,
  expiresInMinutes: "create-and-issue",
  teamsExchange: "token-app-user",
  customId: false,
});

/**
 * In date order; the listed ones in the order of `api-supported-versions`.
 *
 * Listing rule: the header names what the service would name. That is the list recorded from the
 * service in 2025 (docs/acs-wire-facts.md, "Response headers seen") plus the two versions added
 * here beside it, 2025-04-01-preview and 2025-06-30, newer than every version the recordings name,
 * so their absence there says nothing. The four older published folders, 2021-02-22-preview1,
 * 2021-03-31-preview1, 2022-09-01 and 2023-08-01, are older than versions the recordings do name,
 * and absent from them: the service does not list them. The emulator answers them (an SDK pinned to one may still send
 * it), each with its own spec's operations and validation, but keeps them out of the header
 * (`listed: false`); `GET /emulator/health` names every version answered.
 */
export const API_SURFACES: readonly ApiSurface[] = [
  // Its spec's scopes are free strings; the service's scopes of the time were chat and voip.
  surface("2020-07-20-preview2", {
    scopes: BASE_SCOPES,
    expiresInMinutes: "none",
    teamsExchange: "none",
    customId: false,
    legacy: true,
  }),
  // Its spec (commit d98b90a3) is 2021-03-07's but for its version string: the `:action` paths,
  // chat and voip, no expiresInMinutes, no Teams exchange.
  sameAs("2021-02-22-preview1", V2021_03_07, { listed: false }),
  V2021_03_07,
  // Its spec (commit cfc781db) has 2021-10-31-preview's operations and definitions: the Teams
  // exchange takes `{token}` only.
  sameAs("2021-03-31-preview1", V2021_10_31_PREVIEW, { listed: false }),
  V2021_10_31_PREVIEW,
  // Emulator's choice: no spec of 2021-11-01 is published; the service lists it, and the SDKs of its
  // time spoke the 2021-03-07 surface, so it answers that.
  sameAs("2021-11-01", V2021_03_07),
  surface("2022-06-01", {
    scopes: BASE_SCOPES,
    expiresInMinutes: "none",
    teamsExchange: "token-app-user",
    customId: false,
  }),
  // Its spec (commit e9c367e8) has `expiresInMinutes` on issue only (int32, no bounds given; its
  // example says "within the [1-24] hours range", so the emulator keeps 60..1440), none on create;
  // otherwise 2022-10-01's operations and answers.
  surface("2022-09-01", {
    scopes: BASE_SCOPES,
    expiresInMinutes: "issue",
    teamsExchange: "token-app-user",
    customId: false,
    listed: false,
  }),
  V2022_10_01,
  // Its spec (commit 338f5bba) is 2022-10-01's plus the optional Repeatability-Request-ID and
  // Repeatability-First-Sent headers on create, which the emulator accepts and ignores (it does
  // not replay answers; no version does).
  sameAs("2023-08-01", V2022_10_01, { listed: false }),
  surface("2023-10-01", {
    scopes: ALL_SCOPES,
    expiresInMinutes: "create-and-issue",
    teamsExchange: "token-app-user",
    customId: false,
  }),
  surface("2025-03-02-preview", {
    scopes: ALL_SCOPES,
    expiresInMinutes: "create-and-issue",
    teamsExchange: "token-app-user",
    customId: true,
    entraAccess: true,
    teamsExtension: true,
  }),
  // Its stored specs disagree; the one read (commit 55d44403) is 2023-10-01's surface, with
  // 2023-10-01 even in its `info.version`, and no `/access` routes.
  surface("2025-04-01-preview", {
    scopes: ALL_SCOPES,
    expiresInMinutes: "create-and-issue",
    teamsExchange: "token-app-user",
    customId: false,
  }),
  // 2023-10-01's operations plus the Teams Phone extension exchange and assignments; no customId,
  // no `GET /identities/{id}`, no Entra-user exchange (that stays in the preview).
  surface("2025-06-30", {
    scopes: ALL_SCOPES,
    expiresInMinutes: "create-and-issue",
    teamsExchange: "token-app-user",
    customId: false,
    teamsExtension: true,
  }),
];

/** Every api-version the emulator answers. */
export const ANSWERED_API_VERSIONS = API_SURFACES.map((s) => s.version);
/** The ones it names in `api-supported-versions`. */
export const SUPPORTED_API_VERSIONS = API_SURFACES.filter((s) => s.listed).map((s) => s.version);
/** The `api-supported-versions` header. */
export const API_SUPPORTED_VERSIONS_HEADER = SUPPORTED_API_VERSIONS.join(", ");
/** The version `@azure/communication-identity` 1.3 sends. */
export const EMULATOR_API_VERSION = "2023-10-01";

const byVersion = new Map(API_SURFACES.map((s) => [s.version, s]));

/**
 * The api-version stage: the surface the request asked for, or the refusal. `loose` (Azurite's
 * `--loose`): a version the emulator does not know gets its newest surface instead.
 */
export function resolveApiVersion(query: URLSearchParams, loose = false): ApiSurface {
  const asked = query.get("api-version");
  if (asked === null || asked === "") {
    throw new AcsError(
      400,
      "MissingApiVersionParameter",
      `The api-version query parameter is required. Supported versions: ${API_SUPPORTED_VERSIONS_HEADER}.`,
      { target: "api-version" },
    );
  }
  const found = byVersion.get(asked);
  if (!found && loose) {
    return API_SURFACES[API_SURFACES.length - 1]!;
  }
  if (!found) {
    throw new AcsError(
      400,
      "UnsupportedApiVersion",
      `The api-version '${asked.slice(0, 40)}' is not supported. Supported versions: ${API_SUPPORTED_VERSIONS_HEADER}.`,
      { target: "api-version" },
    );
  }
  return found;
}
