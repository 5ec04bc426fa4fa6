/**
 * ACS token scopes, as the ACS Identity REST API spells them, and the rules every layer shares.
 */
export const ACS_SCOPES = ["chat", "chat.join", "chat.join.limited", "voip", "voip.join"] as const;
export type AcsScope = (typeof ACS_SCOPES)[number];

/**
 * `expiresInMinutes` bounds of the ACS Identity API (api-version 2023-10-01). When it is not sent,
 * ACS applies the maximum.
 */
export const MIN_TOKEN_LIFETIME_MINUTES = 60;
export const MAX_TOKEN_LIFETIME_MINUTES = 1440;

const ORDER = new Map<string, number>(ACS_SCOPES.map((scope, index) => [scope, index]));

export function isAcsScope(value: unknown): value is AcsScope {
  return typeof value === "string" && ORDER.has(value);
}

/**
 * Sorted (in ACS_SCOPES order) and de-duplicated, so `[voip, chat]` and `[chat, voip, chat]` are
 * one cache entry and one upstream request shape.
 */
export function normalizeScopes(scopes: readonly AcsScope[]): AcsScope[] {
  if (scopes.length === 1) {
    return [scopes[0]!];
  }
  return [...new Set(scopes)].sort((a, b) => ORDER.get(a)! - ORDER.get(b)!);
}

export function isValidLifetime(minutes: number): boolean {
  return (
    Number.isInteger(minutes) &&
    minutes >= MIN_TOKEN_LIFETIME_MINUTES &&
    minutes <= MAX_TOKEN_LIFETIME_MINUTES
  );
}

/**
 * ACS communication user ids: `8:acs:<resource GUID>_<user part>`. The user part is GUID-shaped on
 * the real service, but the gateway only insists on a sane, bounded shape so that ids minted by
 * other ACS tooling still pass.
 */
const ACS_USER_ID =
  /^8:acs:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}_[0-9A-Za-z-]{1,64}$/i;

export function isAcsUserId(value: string): boolean {
  return value.length <= 128 && ACS_USER_ID.test(value);
}
