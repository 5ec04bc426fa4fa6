/**
 * The error serialisation stage's input. An answer in the ACS error shape: `{"error":{"code","message","target"?}}`. Every layer throws
 * this; the server serialises it in one place, so no path can answer in another shape.
 */
export class AcsError extends Error {
  override readonly name = "AcsError";
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly options: { target?: string; headers?: Record<string, string> } = {},
  ) {
    super(message);
  }

  toBody(): { error: { code: string; message: string; target?: string } } {
    const error: { code: string; message: string; target?: string } = {
      code: this.code,
      message: this.message,
    };
    if (this.options.target !== undefined) {
      error.target = this.options.target;
    }
    return { error };
  }
}

// The answers recorded from the real service (docs/acs-wire-facts.md, "Errors seen from the real
// service").
export const denied = () => new AcsError(401, "Denied", "Denied by the resource provider.");

export const identityNotOwned = () =>
  new AcsError(401, "IdentityNotOwned", "Provided identity doesn't belong to the resource.");

export const invalidAccessToken = () =>
  new AcsError(401, "InvalidAccessToken", "Provided access token is not valid.");

/** Teams exchange answers as recorded from the real service by the Azure SDK's live tests. */
export const teamsFieldRequired = (field: "AppId" | "UserId") =>
  new AcsError(400, "ValidationError", `${field}: The ${field} field is required.`, {
    target: field,
  });

export const teamsFieldMalformed = (field: "AppId" | "UserId") =>
  new AcsError(400, "ValidationError", `Provided ${field} has invalid format.`, {
    target: field === "AppId" ? "appId" : "userId",
  });

export const lifetimeInvalid = (value: unknown) =>
  new AcsError(
    400,
    "ValidationError",
    `ExpiresInMinutes value ${String(value)} is invalid. Value must be within the [60, 1440] interval.`,
    { target: "ExpiresInMinutes" },
  );

export const scopesRequired = (target = "scopes") =>
  new AcsError(400, "ValidationError", "Invalid scopes - Scopes field is required.", { target });

// Emulator's own choices (the real answers are not known; see docs/emulator.md).
/** A field the api-version asked for does not have (e.g. `expiresInMinutes` before 2022-10-01). */
export const fieldNotInVersion = (field: string, version: string) =>
  new AcsError(
    400,
    "ValidationError",
    `The ${field} field is not supported in api-version ${version}.`,
    { target: field },
  );

export const identityNotFound = () =>
  new AcsError(404, "IdentityNotFound", "The identity does not exist or was deleted.");
