/**
 * Why an upstream (ACS) call failed, in the terms the rest of the gateway needs. The ACS
 * `RestError` is translated into this in exactly one place (acs-identity-provider.ts).
 */
export type UpstreamFailure =
  | "not_found" // the identity does not exist (or was deleted)
  | "not_owned" // the identity belongs to another ACS resource
  | "invalid" // ACS rejected the request's content (400)
  | "throttled" // 429
  | "unavailable" // network error, timeout, 5xx
  | "unauthorized"; // the gateway's own credentials were refused (wrong access key)

export class UpstreamError extends Error {
  override readonly name = "UpstreamError";
  constructor(
    readonly failure: UpstreamFailure,
    message: string,
    readonly options: { status?: number; acsCode?: string; retryAfterSeconds?: number } = {},
  ) {
    super(message);
  }
}
