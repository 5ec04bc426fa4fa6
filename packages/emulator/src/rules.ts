/**
 * The emulator's own request rules, taken from the ACS REST spec and docs/acs-wire-facts.md rather
 * than imported from the gateway: an emulator that shared the gateway's rules could not catch a
 * mistake in them.
 */

import { decodeJwt } from "jose";

/** Every scope some api-version knows (the 2023-10-01 spec's `CommunicationIdentityTokenScope`). */
export const ALL_SCOPES = ["chat", "voip", "chat.join", "chat.join.limited", "voip.join"] as const;
export type Scope = (typeof ALL_SCOPES)[number];

/** `expiresInMinutes` bounds and default (the spec's `minimum`, `maximum` and `default`). */
export const LIFETIME_MINUTES = { min: 60, max: 1440, default: 1440 } as const;

/** The spec's `customId`: "Maximum length is 256 characters", `minLength: 1`. */
export const CUSTOM_ID_MAX_LENGTH = 256;

/** The audience of an Entra ID token for ACS (scope `https://communication.azure.com/.default`). */
export const ACS_AUDIENCE = "https://communication.azure.com";

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isGuid(value: string): boolean {
  return GUID.test(value);
}

/** Whether `aud` names ACS: the resource with or without its trailing slash, as Entra writes both. */
export function isAcsAudience(aud: unknown): boolean {
  const values = Array.isArray(aud) ? aud : [aud];
  return values.some((v) => v === ACS_AUDIENCE || v === `${ACS_AUDIENCE}/`);
}

/** Three base64url segments: the emulator refuses anything else as a JWT, whichever part is off. */
const COMPACT_JWS = /^[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/;

/** The payload of a compact JWS, or undefined when `token` is not one. Signature NOT checked. */
export function jwtPayload(token: string): Record<string, unknown> | undefined {
  // decodeJwt reads the payload segment alone; the header and signature segments must be
  // base64url too, as they always had to be here.
  if (!COMPACT_JWS.test(token)) {
    return undefined;
  }
  try {
    return decodeJwt(token);
  } catch {
    return undefined;
  }
}
