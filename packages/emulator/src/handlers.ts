import { isExchangedIdentity, type AccessOperation } from "./access-exchange.js";
import type { ApiSurface } from "./api-versions.js";
import {
  AcsError,
  fieldNotInVersion,
  identityNotFound,
  identityNotOwned,
  invalidAccessToken,
  lifetimeInvalid,
  scopesRequired,
  teamsFieldMalformed,
  teamsFieldRequired,
} from "./errors.js";
import type { ExtraOperation } from "./extras.js";
import type { EmulatorOperation } from "./options.js";
import { CUSTOM_ID_MAX_LENGTH, isGuid, jwtPayload, LIFETIME_MINUTES } from "./rules.js";
import { isRevoked, issuedAtSeconds, type IdentityRecord, type IdentityStore } from "./store.js";
import type { TeamsTokenVerifier } from "./teams-jwks.js";
import type { ThrottleBucket } from "./throttle.js";
import { formatExpiresOn, type AcsTokenClaims, type TokenSigner } from "./token-signer.js";

/**
 * The handler stage: one function per operation. Parse and validate the body against the surface of
 * the api-version asked for, act on the store, mint tokens. They know nothing of HTTP beyond a
 * status and a JSON body, and throw AcsError for every refusal.
 */
export interface HandlerContext {
  body: Buffer;
  /** The identity id from the path, percent-decoded. */
  identityId?: string;
  /** The api-version's surface (introspection, the emulator's own call, has the newest). */
  surface: ApiSurface;
  /** The emulator's clock, read once per request so one answer has one time. */
  now: number;
  /** The request's query (the emulator's own listing pages with it). */
  query: URLSearchParams;
  /** Path parameters of the `/access/...` assignment routes, still percent-encoded. */
  params?: Record<string, string>;
  /** The `Authorization` header: the token exchanges' Entra token. */
  authorization?: string;
  /** Counts the call against the throttle bucket (throws the 429 when full). */
  admit(bucket: ThrottleBucket): void;
}

export interface HandlerResult {
  status: number;
  body?: unknown;
  /** The identity the answer concerns (for `hooks.beforeRespond`). */
  identityId?: string;
}

export type Handler = (ctx: HandlerContext) => Promise<HandlerResult>;

export interface HandlerDeps {
  resourceId: string;
  store: IdentityStore;
  signer: TokenSigner;
  /** Checks a Teams user's Entra token signature and issuer; absent: shape and expiry only. */
  teamsVerifier?: TeamsTokenVerifier;
  /** Sub-millisecond digits of `expiresOn` (0..9999); injectable so a test can pin them. */
  subMillisecond?: () => number;
}

/** A Teams user token lives as long as the Entra token, at most 24 hours. */
const MAX_TEAMS_LIFETIME_SECONDS = 24 * 3600;
/** The real service puts region claims in every token; the emulator pretends to live here. */
const REGION = { rgn: "amer", resourceLocation: "unitedstates" } as const;

const show = (value: unknown) => {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text === undefined ? "undefined" : text.length > 40 ? `${text.slice(0, 40)}...` : text;
};

const absent = (value: unknown) => value === undefined || value === null;

/** `{}` for an absent or empty body (the SDK's createUser sends content-length 0). */
function parseObject(body: Buffer, required: boolean): Record<string, unknown> {
  const text = body.toString("utf8").trim();
  if (text === "" && !required) {
    return {};
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // Emulator's choice: the real service's answer to unparsable JSON is not recorded.
    throw new AcsError(400, "ValidationError", "The request body is not valid JSON.", {
      target: "body",
    });
  }
  if (value === null && !required) {
    return {};
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new AcsError(400, "ValidationError", "The request body must be a JSON object.", {
      target: "body",
    });
  }
  return value as Record<string, unknown>;
}

function parseLifetime(value: unknown, surface: ApiSurface, on: "create" | "issue"): number {
  if (absent(value)) {
    return LIFETIME_MINUTES.default;
  }
  if (
    surface.expiresInMinutes === "none" ||
    (on === "create" && surface.expiresInMinutes === "issue")
  ) {
    throw fieldNotInVersion("expiresInMinutes", surface.version);
  }
  if (
    typeof value !== "number" ||
    !Number.isInteger(value) ||
    value < LIFETIME_MINUTES.min ||
    value > LIFETIME_MINUTES.max
  ) {
    throw lifetimeInvalid(show(value));
  }
  return value;
}

/** Unique scopes in the order asked, each one the api-version knows. */
function parseScopes(value: unknown, target: string, surface: ApiSurface): string[] {
  if (absent(value) || (Array.isArray(value) && value.length === 0)) {
    throw scopesRequired(target);
  }
  if (!Array.isArray(value)) {
    throw new AcsError(400, "ValidationError", "Invalid scopes - Scopes field must be an array.", {
      target,
    });
  }
  for (const scope of value) {
    if (typeof scope !== "string" || !(surface.scopes as readonly string[]).includes(scope)) {
      // Emulator's choice: the real answer for an unknown scope is not recorded.
      throw new AcsError(
        400,
        "ValidationError",
        `Invalid scopes - '${show(scope)}' is not a valid scope in api-version ${surface.version}.`,
        { target },
      );
    }
  }
  return [...new Set(value as string[])];
}

function parseCustomId(value: unknown, surface: ApiSurface): string | undefined {
  if (absent(value)) {
    return undefined;
  }
  if (!surface.customId) {
    throw fieldNotInVersion("customId", surface.version);
  }
  if (typeof value !== "string" || value.length < 1 || value.length > CUSTOM_ID_MAX_LENGTH) {
    throw new AcsError(
      400,
      "ValidationError",
      `CustomId must be a string of 1 to ${CUSTOM_ID_MAX_LENGTH} characters.`,
      { target: "customId" },
    );
  }
  return value;
}

/** Every operation's handler but the emulator's own listing and reset (extras.ts). */
export function createHandlers(
  deps: HandlerDeps,
): Record<Exclude<EmulatorOperation, ExtraOperation | AccessOperation>, Handler> {
  const { resourceId, store, signer, teamsVerifier } = deps;
  const subMillisecond = deps.subMillisecond ?? (() => Number(process.hrtime.bigint() % 10_000n));
  const ownPrefix = `8:acs:${resourceId}_`;

  /**
   * Any id that is not one of this resource's (another resource's, another kind such as `8:orgid:`,
   * or garbage) is "not owned": the one answer recorded from the real service for foreign ids. A
   * well-formed id of this resource that was never created or was deleted answers 404
   * `IdentityNotFound` (emulator's choice: the real answer is not recorded).
   */
  const ownIdentity = (id: string | undefined): IdentityRecord => {
    if (
      id === undefined ||
      !id.toLowerCase().startsWith(ownPrefix) ||
      id.length === ownPrefix.length
    ) {
      throw identityNotOwned();
    }
    const record = store.get(id);
    if (!record || record.deletedAt !== undefined) {
      throw identityNotFound();
    }
    return record;
  };

  /**
   * `expiresOn` keeps the issue instant's sub-second part (as the service's does); the JWT's `exp`
   * is its whole second, and `exp - iat` is exactly the lifetime. Everything up to the signature
   * runs in one tick with the store reads (token-signer.ts): only the signing is awaited.
   */
  const mintFor = async (
    identity: IdentityRecord,
    scopes: string[],
    minutes: number,
    now: number,
  ): Promise<{ token: string; expiresOn: string }> => {
    const iat = issuedAtSeconds(identity, now);
    const issuedMs = iat === Math.floor(now / 1000) ? now : iat * 1000;
    const expiresMs = issuedMs + minutes * 60_000;
    const claims: AcsTokenClaims = {
      skypeid: identity.id.slice(2),
      scp: 1792,
      csi: String(iat),
      exp: iat + minutes * 60,
      rgn: REGION.rgn,
      acsScope: scopes.join(","),
      resourceId,
      resourceLocation: REGION.resourceLocation,
      iat,
    };
    store.tokenIssued(identity.id, now);
    const expiresOn = formatExpiresOn(expiresMs, subMillisecond());
    return { token: await signer.sign(claims), expiresOn };
  };

  /** Why a token OF OURS (signature verified) is inactive, if it is. */
  function tokenState(claims: AcsTokenClaims, now: number): { active: boolean; reason?: string } {
    if (typeof claims.skypeid === "string" && claims.skypeid.startsWith("acs:")) {
      const identity = store.get(`8:${claims.skypeid}`);
      if (!identity && isExchangedIdentity(`8:${claims.skypeid}`, resourceId)) {
        // An Entra or Teams Phone extension user's identity (access-exchange.ts): never stored.
        return claims.exp * 1000 <= now ? { active: false, reason: "expired" } : { active: true };
      }
      if (!identity) {
        // Signed with our key but unknown to this emulator (memory-only state was lost in a restart
        // that kept the signing key).
        return { active: false, reason: "invalid" };
      }
      if (identity.deletedAt !== undefined) {
        return { active: false, reason: "deleted" };
      }
      if (isRevoked(identity, claims.iat, now)) {
        return { active: false, reason: "revoked" };
      }
    }
    if (claims.exp * 1000 <= now) {
      return { active: false, reason: "expired" };
    }
    return { active: true };
  }

  const identityBody = (record: IdentityRecord, surface: ApiSurface) => {
    const body: { id: string; customId?: string; lastTokenIssuedAt?: string } = { id: record.id };
    if (surface.customId) {
      if (record.customId !== undefined) {
        body.customId = record.customId;
      }
      if (record.lastTokenIssuedAt !== undefined) {
        body.lastTokenIssuedAt = formatExpiresOn(record.lastTokenIssuedAt);
      }
    }
    return body;
  };

  const teamsExchange: Handler = async (ctx) => {
    const { surface } = ctx;
    const body = parseObject(ctx.body, true);
    ctx.admit("exchangeTeamsUserAccessToken");
    const { token, appId, userId } = body;
    // The token first (docs/acs-wire-facts.md: the service answers an invalid token with an empty
    // userId 401, not 400): empty, unparsable, expired or (with a JWKS) badly signed is 401.
    if (typeof token !== "string" || token === "") {
      throw invalidAccessToken();
    }
    const aad = jwtPayload(token);
    const exp = aad?.exp;
    const oid = aad?.oid;
    if (typeof exp !== "number" || typeof oid !== "string" || exp * 1000 <= ctx.now) {
      throw invalidAccessToken();
    }
    if (teamsVerifier && !(await teamsVerifier.verify(token))) {
      throw invalidAccessToken();
    }
    if (surface.teamsExchange === "token-only") {
      if (!absent(appId)) {
        throw fieldNotInVersion("appId", surface.version);
      }
      if (!absent(userId)) {
        throw fieldNotInVersion("userId", surface.version);
      }
    } else {
      // Messages and targets as the Azure SDK's recorded live tests show them: required fields
      // (model validation), then their format.
      if (absent(appId) || appId === "") {
        throw teamsFieldRequired("AppId");
      }
      if (absent(userId) || userId === "") {
        throw teamsFieldRequired("UserId");
      }
      if (typeof appId !== "string" || !isGuid(appId)) {
        throw teamsFieldMalformed("AppId");
      }
      if (typeof userId !== "string" || !isGuid(userId)) {
        throw teamsFieldMalformed("UserId");
      }
    }
    if (surface.teamsExchange === "token-app-user") {
      // Emulator's choice for mismatches (not recorded): 400 on the field that disagrees.
      const appid = typeof aad!.appid === "string" ? aad!.appid : aad!.azp;
      if (typeof appid !== "string" || appid.toLowerCase() !== (appId as string).toLowerCase()) {
        throw new AcsError(
          400,
          "ValidationError",
          "AppId doesn't match the 'appid' claim of the access token.",
          { target: "appId" },
        );
      }
      if (oid.toLowerCase() !== (userId as string).toLowerCase()) {
        throw new AcsError(
          400,
          "ValidationError",
          "UserId doesn't match the 'oid' claim of the access token.",
          { target: "userId" },
        );
      }
    }
    // Emulator's choice: a Teams user's token names the user as `orgid:<oid>` and carries the
    // `voip` scope; the real claims of such tokens are not recorded. Its lifetime is the Entra
    // token's, at most 24 hours.
    const iat = Math.floor(ctx.now / 1000);
    const expires = Math.min(exp, iat + MAX_TEAMS_LIFETIME_SECONDS);
    const claims: AcsTokenClaims = {
      skypeid: `orgid:${oid.toLowerCase()}`,
      scp: 1792,
      csi: String(iat),
      exp: expires,
      rgn: REGION.rgn,
      acsScope: "voip",
      resourceId,
      resourceLocation: REGION.resourceLocation,
      iat,
    };
    return {
      status: 200,
      body: { token: await signer.sign(claims), expiresOn: formatExpiresOn(expires * 1000) },
    };
  };

  return {
    async createIdentity(ctx) {
      const { surface } = ctx;
      const body = parseObject(ctx.body, false);
      if (surface.legacy) {
        // 2020-07-20-preview2 takes no body and answers 200 with the bare identity.
        for (const field of ["createTokenWithScopes", "expiresInMinutes", "customId"]) {
          if (!absent(body[field])) {
            throw fieldNotInVersion(field, surface.version);
          }
        }
        ctx.admit("createIdentity");
        const identity = store.create(ctx.now);
        return { status: 200, body: { id: identity.id }, identityId: identity.id };
      }
      const wantsToken = !absent(body.createTokenWithScopes);
      ctx.admit(wantsToken ? "createIdentityWithToken" : "createIdentity");
      const minutes = parseLifetime(body.expiresInMinutes, surface, "create");
      const customId = parseCustomId(body.customId, surface);
      // Emulator's choice: an explicitly empty `createTokenWithScopes` asks for a token without
      // scopes, refused like an issue without scopes.
      const scopes = wantsToken
        ? parseScopes(body.createTokenWithScopes, "createTokenWithScopes", surface)
        : [];
      // "If called again with the same customId, the returned identity will be the same" (spec).
      const identity =
        (customId === undefined ? undefined : store.byCustomId(customId)) ??
        store.create(ctx.now, customId);
      const result: {
        identity: ReturnType<typeof identityBody>;
        accessToken?: { token: string; expiresOn: string };
      } = { identity: identityBody(identity, surface) };
      if (wantsToken) {
        result.accessToken = await mintFor(identity, scopes, minutes, ctx.now);
      }
      return { status: 201, body: result, identityId: identity.id };
    },

    async getIdentity(ctx) {
      const identity = ownIdentity(ctx.identityId);
      return { status: 200, body: identityBody(identity, ctx.surface), identityId: identity.id };
    },

    async issueAccessToken(ctx) {
      const body = parseObject(ctx.body, true);
      ctx.admit("issueAccessToken");
      const scopes = parseScopes(body.scopes, "scopes", ctx.surface);
      const minutes = parseLifetime(body.expiresInMinutes, ctx.surface, "issue");
      const identity = ownIdentity(ctx.identityId);
      const minted = await mintFor(identity, scopes, minutes, ctx.now);
      return {
        status: 200,
        // 2020-07-20-preview2's CommunicationIdentityToken names its owner.
        body: ctx.surface.legacy ? { id: identity.id, ...minted } : minted,
        identityId: identity.id,
      };
    },

    async updateIdentity(ctx) {
      const body = parseObject(ctx.body, true);
      ctx.admit("revokeAccessTokens");
      const { tokensValidFrom } = body;
      const at = typeof tokensValidFrom === "string" ? Date.parse(tokensValidFrom) : NaN;
      if (
        typeof tokensValidFrom !== "string" ||
        !/^\d{4}-\d\d-\d\dT\d\d:\d\d/.test(tokensValidFrom) ||
        Number.isNaN(at)
      ) {
        // Emulator's choice: the real answer to a bad or missing date is not recorded.
        throw new AcsError(
          400,
          "ValidationError",
          "TokensValidFrom must be an ISO 8601 date-time.",
          {
            target: "tokensValidFrom",
          },
        );
      }
      const identity = ownIdentity(ctx.identityId);
      // "All tokens that are issued prior to this time will be revoked" (spec): a revoke dated then,
      // propagating from now.
      store.revoke(identity.id, at, ctx.now);
      return { status: 204, identityId: identity.id };
    },

    async revokeAccessTokens(ctx) {
      ctx.admit("revokeAccessTokens");
      const identity = ownIdentity(ctx.identityId);
      // In effect after the revocation delay (0 unless set): the real service may take up to 15
      // minutes to propagate a revoke.
      store.revoke(identity.id, ctx.now);
      return { status: 204, identityId: identity.id };
    },

    async deleteIdentity(ctx) {
      ctx.admit("deleteIdentity");
      const identity = ownIdentity(ctx.identityId);
      store.delete(identity.id, ctx.now);
      return { status: 204, identityId: identity.id };
    },

    exchangeTeamsUserAccessToken: teamsExchange,

    async introspect(ctx) {
      const body = parseObject(ctx.body, true);
      if (typeof body.token !== "string" || body.token === "") {
        throw new AcsError(400, "ValidationError", "The token field is required.", {
          target: "token",
        });
      }
      const claims = await signer.verify(body.token);
      if (!claims || typeof claims.exp !== "number" || typeof claims.skypeid !== "string") {
        return { status: 200, body: { active: false, reason: "invalid" } };
      }
      return { status: 200, body: { ...tokenState(claims, ctx.now), claims } };
    },
  };
}
