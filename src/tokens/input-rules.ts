import { invalidInput } from "../errors.js";
import {
  isAcsScope,
  isAcsUserId,
  isValidLifetime,
  MAX_TOKEN_LIFETIME_MINUTES,
  MIN_TOKEN_LIFETIME_MINUTES,
  normalizeScopes,
  type AcsScope,
} from "./scopes.js";

/*
 * The input rules of the token operations, checked before any upstream call so that nothing ACS
 * would refuse spends a call of the caller's budget. Shared by the operations by user id
 * (token-service.ts) and self-service (self-service.ts), so both refuse the same input with the
 * same message.
 */

/** Throws `invalid-input` unless `userId` is an ACS communication user id. */
export function assertUserId(userId: string): void {
  if (!isAcsUserId(userId)) {
    throw invalidInput(
      "userId is not an ACS communication user id (8:acs:<resource>_<user>).",
      "userId",
    );
  }
}

/** The scopes normalised (sorted, unique); `invalid-input` for an empty, long or unknown list. */
export function checkScopes(scopes: readonly AcsScope[]): AcsScope[] {
  if (scopes.length === 0) {
    throw invalidInput("scopes must name at least one scope.", "scopes");
  }
  if (scopes.length > 16) {
    throw invalidInput("scopes may list at most 16 entries.", "scopes");
  }
  if (!scopes.every(isAcsScope)) {
    throw invalidInput("scopes holds an unknown scope.", "scopes");
  }
  return normalizeScopes(scopes);
}

/** Throws `invalid-input` for a lifetime ACS does not accept; absent means ACS's default. */
export function checkLifetime(minutes: number | undefined): void {
  if (minutes !== undefined && !isValidLifetime(minutes)) {
    throw invalidInput(
      `expiresInMinutes must be a whole number from ${MIN_TOKEN_LIFETIME_MINUTES} to ${MAX_TOKEN_LIFETIME_MINUTES}.`,
      "expiresInMinutes",
    );
  }
}
