import type { AcsScope } from "../tokens/scopes.js";

/** A minted ACS access token. `expiresOn` is epoch milliseconds (what the SDK reports). */
export interface IssuedToken {
  token: string;
  expiresOn: number;
}

/**
 * The only door to ACS. Implementations map nothing to GraphQL: they throw `UpstreamError`
 * (see upstream-error.ts) for every failure the caller may want to tell apart.
 */
export interface IdentityProvider {
  /**
   * A new identity. `customId` (ACS_CUSTOM_ID, api-version 2025-03-02-preview): ACS answers the
   * same identity for the same value, so a lost answer or a lost directory never makes a second one.
   */
  createUser(options?: { customId?: string | undefined }): Promise<string>;
  /** One upstream call: a new identity and its first token (the ACS quickstart's shape). */
  createUserAndToken(
    scopes: readonly AcsScope[],
    expiresInMinutes?: number,
  ): Promise<{ userId: string; token: IssuedToken }>;
  issueToken(
    userId: string,
    scopes: readonly AcsScope[],
    expiresInMinutes?: number,
  ): Promise<IssuedToken>;
  /**
   * `probe`: the start-up credential check (server/readiness.ts), whose expected 401/404 answer is
   * not counted in `acsgw_upstream_requests_total` (alerts watch its 4xx and 5xx).
   */
  revokeTokens(userId: string, options?: { probe?: boolean }): Promise<void>;
  deleteUser(userId: string): Promise<void>;
  /** A Teams user's ACS token for their Entra ID token (ACS `POST /teamsUser/:exchangeAccessToken`). */
  exchangeTeamsToken(input: {
    teamsToken: string;
    appId: string;
    userObjectId: string;
  }): Promise<IssuedToken>;
}
