import { DomainError, NOT_FOUND_MESSAGE, type ErrorKind } from "../errors.js";

/**
 * Why an upstream (ACS) call failed, in the terms the rest of the gateway needs. The ACS
 * `RestError` is translated into this in exactly one place (acs-identity-provider.ts).
 */
export type UpstreamFailure =
  | "not_found" // the identity does not exist (or was deleted)
  | "not_owned" // the identity belongs to another ACS resource
  | "invalid" // ACS rejected the request's content (400)
  | "invalid_teams_token" // the Teams exchange's Entra token was refused (401 InvalidAccessToken)
  | "throttled" // 429
  | "unavailable" // network error, timeout, 5xx
  | "unauthorized"; // the gateway's own credentials were refused (wrong access key, missing role)

const KIND: Record<UpstreamFailure, ErrorKind> = {
  not_found: "not-found",
  not_owned: "not-found",
  invalid: "invalid-input",
  invalid_teams_token: "unauthenticated",
  throttled: "upstream-throttled",
  unavailable: "upstream-unavailable",
  unauthorized: "upstream-misconfigured",
};

/** What a client is told: never the ACS message, which may quote the request. */
const CLIENT_MESSAGE: Record<UpstreamFailure, string> = {
  not_found: NOT_FOUND_MESSAGE,
  not_owned: NOT_FOUND_MESSAGE,
  invalid: "Azure Communication Services refused the request's input.",
  invalid_teams_token: "The Teams user's Entra ID token (teamsToken) is not valid or has expired.",
  throttled: "Azure Communication Services is throttling this resource. Try again later.",
  unavailable: "Azure Communication Services could not be reached or failed. Try again.",
  unauthorized: "Azure Communication Services could not be reached or failed. Try again.",
};

export interface UpstreamDetail {
  status?: number | undefined;
  acsCode?: string | undefined;
  retryAfterSeconds?: number | undefined;
}

/** A failed ACS call. `message` is for clients; `diagnostic` and `options` are for logs and metrics. */
export class UpstreamError extends DomainError {
  override readonly name = "UpstreamError";
  constructor(
    readonly failure: UpstreamFailure,
    /** e.g. "ACS answered 401 Denied": for logs only. */
    readonly diagnostic: string,
    readonly options: UpstreamDetail = {},
  ) {
    super(
      KIND[failure],
      CLIENT_MESSAGE[failure],
      failure === "throttled" ? { retryAfterSeconds: options.retryAfterSeconds ?? 1 } : {},
    );
  }
}
