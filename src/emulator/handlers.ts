// The API's scope names and lifetime bounds, shared with the gateway (they are facts of the API).
import { DEFAULT_TOKEN_LIFETIME_MINUTES, isAcsScope, isValidLifetime } from "../tokens/scopes.js";
import {
  AcsError,
  identityNotFound,
  identityNotOwned,
  invalidAccessToken,
  lifetimeInvalid,
  scopesRequired,
} from "./errors.js";
import { isGuid, type EmulatorOperation } from "./options.js";
import { isRevoked, issuedAtSeconds, type IdentityRecord, type IdentityStore } from "./store.js";
import type { ThrottleBucket } from "./throttle.js";
import { formatExpiresOn, type AcsTokenClaims, type TokenSigner } from "./token-signer.js";

/**
 * The operations, one function each: parse and validate the body, act on the store, mint tokens.
 * They know nothing of HTTP beyond a status and a JSON body, and throw AcsError for every refusal.
 */
export interface HandlerContext {
  body: Buffer;
  /** The identity id from the path, percent-decoded. */
  identityId?: string;
  /** The emulator's clock, read once per request so one answer has one time. */
  now: number;
  /** Counts the call against the throttle bucket (throws the 429 when full). */
  admit(bucket: ThrottleBucket): void;
}

export interface HandlerResult {
  status: number;
  body?: unknown;
  /** The identity the answer concerns (for `hooks.beforeRespond`). */
  identityId?: string;
}

export type Handler = (ctx: HandlerContext) => HandlerResult;

export interface HandlerDeps {
  resourceId: string;
  store: IdentityStore;
  signer: TokenSigner;
}

/** A Teams user token lives as long as the AAD token, at most 24 hours. */
const MAX_TEAMS_LIFETIME_SECONDS = 24 * 3600;
/** The real service puts region claims in every token; the emulator pretends to live here. */
const REGION = { rgn: "amer", resourceLocation: "unitedstates" } as const;

const show = (value: unknown) => {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text === undefined ? "undefined" : text.length > 40 ? `${text.slice(0, 40)}...` : text;
};

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

function parseLifetime(value: unknown): number {
  if (value === undefined || value === null) {
    return DEFAULT_TOKEN_LIFETIME_MINUTES;
  }
  if (typeof value !== "number" || !isValidLifetime(value)) {
    throw lifetimeInvalid(show(value));
  }
  return value;
}

/** Unique scopes in the order asked. */
function parseScopes(value: unknown, target: string): string[] {
  if (value === undefined || value === null || (Array.isArray(value) && value.length === 0)) {
    throw scopesRequired(target);
  }
  if (!Array.isArray(value)) {
    throw new AcsError(400, "ValidationError", "Invalid scopes - Scopes field must be an array.", {
      target,
    });
  }
  for (const scope of value) {
    if (!isAcsScope(scope)) {
      // Emulator's choice: the real answer for an unknown scope is not recorded.
      throw new AcsError(
        400,
        "ValidationError",
        `Invalid scopes - '${show(scope)}' is not a valid scope.`,
        {
          target,
        },
      );
    }
  }
  return [...new Set(value as string[])];
}

export function createHandlers(deps: HandlerDeps): Record<EmulatorOperation, Handler> {
  const { resourceId, store, signer } = deps;
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

  const mint = (
    subject: { identity?: IdentityRecord; skypeid: string },
    scopes: string[],
    now: number,
    expiresAtSeconds: (iat: number) => number,
  ) => {
    // Whole seconds: `exp` is a whole number and must equal `expiresOn` (the SDK reads `exp`).
    const iat = issuedAtSeconds(subject.identity, now);
    const exp = expiresAtSeconds(iat);
    const claims: AcsTokenClaims = {
      skypeid: subject.skypeid,
      scp: 1792,
      csi: String(iat),
      exp,
      rgn: REGION.rgn,
      acsScope: scopes.join(","),
      resourceId,
      resourceLocation: REGION.resourceLocation,
      iat,
    };
    return { token: signer.sign(claims), expiresOn: formatExpiresOn(exp * 1000) };
  };

  const mintFor = (identity: IdentityRecord, scopes: string[], minutes: number, now: number) =>
    mint({ identity, skypeid: identity.id.slice(2) }, scopes, now, (iat) => iat + minutes * 60);

  /** Why a token OF OURS (signature verified) is inactive, if it is. */
  function tokenState(claims: AcsTokenClaims, now: number): { active: boolean; reason?: string } {
    if (typeof claims.skypeid === "string" && claims.skypeid.startsWith("acs:")) {
      const identity = store.get(`8:${claims.skypeid}`);
      if (!identity) {
        // Signed with our key but unknown to this process (state lives in memory only; a restart
        // with the same signing key forgets every identity).
        return { active: false, reason: "invalid" };
      }
      if (identity.deletedAt !== undefined) {
        return { active: false, reason: "deleted" };
      }
      if (isRevoked(identity, claims.iat)) {
        return { active: false, reason: "revoked" };
      }
    }
    if (claims.exp * 1000 <= now) {
      return { active: false, reason: "expired" };
    }
    return { active: true };
  }

  return {
    createIdentity(ctx) {
      const body = parseObject(ctx.body, false);
      const wantsToken =
        body.createTokenWithScopes !== undefined && body.createTokenWithScopes !== null;
      ctx.admit(wantsToken ? "createIdentityWithToken" : "createIdentity");
      const minutes = parseLifetime(body.expiresInMinutes);
      // Emulator's choice: an explicitly empty `createTokenWithScopes` asks for a token without
      // scopes, refused like an issue without scopes.
      const scopes = wantsToken
        ? parseScopes(body.createTokenWithScopes, "createTokenWithScopes")
        : [];
      const identity = store.create(ctx.now);
      const result: {
        identity: { id: string };
        accessToken?: { token: string; expiresOn: string };
      } = {
        identity: { id: identity.id },
      };
      if (wantsToken) {
        result.accessToken = mintFor(identity, scopes, minutes, ctx.now);
      }
      return { status: 201, body: result, identityId: identity.id };
    },

    issueAccessToken(ctx) {
      const body = parseObject(ctx.body, true);
      ctx.admit("issueAccessToken");
      const scopes = parseScopes(body.scopes, "scopes");
      const minutes = parseLifetime(body.expiresInMinutes);
      const identity = ownIdentity(ctx.identityId);
      return {
        status: 200,
        body: mintFor(identity, scopes, minutes, ctx.now),
        identityId: identity.id,
      };
    },

    revokeAccessTokens(ctx) {
      ctx.admit("revokeAccessTokens");
      const identity = ownIdentity(ctx.identityId);
      // Immediate, where the real service may take up to 15 minutes to propagate.
      store.revoke(identity.id, ctx.now);
      return { status: 204, identityId: identity.id };
    },

    deleteIdentity(ctx) {
      ctx.admit("deleteIdentity");
      const identity = ownIdentity(ctx.identityId);
      store.delete(identity.id, ctx.now);
      return { status: 204, identityId: identity.id };
    },

    exchangeTeamsUserAccessToken(ctx) {
      const body = parseObject(ctx.body, true);
      ctx.admit("exchangeTeamsUserAccessToken");
      const { token, appId, userId } = body;
      // Order and targets as recorded from the real service: an empty token is an invalid token,
      // an empty appId is `AppId`, a malformed one `appId`.
      if (typeof token !== "string" || token === "") {
        throw invalidAccessToken();
      }
      if (appId === undefined || appId === null || appId === "") {
        throw new AcsError(400, "ValidationError", "AppId is required.", { target: "AppId" });
      }
      if (typeof appId !== "string" || !isGuid(appId)) {
        throw new AcsError(400, "ValidationError", "AppId must be a valid GUID.", {
          target: "appId",
        });
      }
      if (typeof userId !== "string" || !isGuid(userId)) {
        throw new AcsError(400, "ValidationError", "UserId must be a valid GUID.", {
          target: "userId",
        });
      }
      const aad = parseAadToken(token);
      if (!aad || aad.exp * 1000 <= ctx.now) {
        throw invalidAccessToken();
      }
      // The emulator cannot verify an AAD signature (no tenant keys offline): it checks only the
      // token's shape, expiry and the two claims the service matches. Mismatches answer 400, as the
      // real service does for a wrong client id.
      if (aad.appid.toLowerCase() !== appId.toLowerCase()) {
        throw new AcsError(
          400,
          "ValidationError",
          "AppId doesn't match the 'appid' claim of the access token.",
          {
            target: "appId",
          },
        );
      }
      if (aad.oid.toLowerCase() !== userId.toLowerCase()) {
        throw new AcsError(
          400,
          "ValidationError",
          "UserId doesn't match the 'oid' claim of the access token.",
          {
            target: "userId",
          },
        );
      }
      // Emulator's choice: a Teams user's token names the user as `orgid:<oid>` and carries the
      // `voip` scope; the real claims of such tokens are not recorded.
      const minted = mint({ skypeid: `orgid:${userId.toLowerCase()}` }, ["voip"], ctx.now, (iat) =>
        Math.min(aad.exp, iat + MAX_TEAMS_LIFETIME_SECONDS),
      );
      return { status: 200, body: minted };
    },

    introspect(ctx) {
      const body = parseObject(ctx.body, true);
      if (typeof body.token !== "string" || body.token === "") {
        throw new AcsError(400, "ValidationError", "The token field is required.", {
          target: "token",
        });
      }
      const claims = signer.verify(body.token);
      if (!claims) {
        return { status: 200, body: { active: false, reason: "invalid" } };
      }
      return { status: 200, body: { ...tokenState(claims, ctx.now), claims } };
    },
  };
}

/** The AAD claims the exchange needs, or undefined when `token` is not a JWT carrying them. */
function parseAadToken(token: string): { appid: string; oid: string; exp: number } | undefined {
  const parts = token.split(".");
  if (parts.length !== 3) {
    return undefined;
  }
  try {
    const payload = JSON.parse(Buffer.from(parts[1]!, "base64url").toString("utf8")) as Record<
      string,
      unknown
    >;
    const { appid, oid, exp } = payload;
    if (typeof appid !== "string" || typeof oid !== "string" || typeof exp !== "number") {
      return undefined;
    }
    return { appid, oid, exp };
  } catch {
    return undefined;
  }
}
