import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import { denied } from "./errors.js";

/** Azure's other HMAC APIs allow 15 minutes of clock skew; the Identity API's allowance is not published. */
export const MAX_CLOCK_SKEW_MS = 15 * 60_000;

/** Why a request was refused: logged (never the signature or key), never sent to the client. */
export type AuthFailure =
  | "missing-authorization"
  | "malformed-authorization"
  | "missing-signed-header"
  | "bad-date"
  | "clock-skew"
  | "content-hash-mismatch"
  | "bad-signature";

export class AuthenticationError extends Error {
  override readonly name = "AuthenticationError";
  constructor(readonly failure: AuthFailure) {
    super(`request authentication failed: ${failure}`);
  }
  /** The answer the client sees: the real service's one `Denied`, whatever the cause. */
  toAcsError() {
    return denied();
  }
}

export interface AuthenticatorOptions {
  /** Base64 access key, as in the connection string. */
  accessKey: string;
  /** Wall clock for the `x-ms-date` skew check (the SDK signs with the machine's real time). */
  wallClock?: () => number;
}

export interface SignedRequest {
  method: string;
  /** The request target exactly as received: still-encoded path, `?`, query. */
  pathAndQuery: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

const AUTHORIZATION = /^HMAC-SHA256 SignedHeaders=([^&\s]+)&Signature=(\S+)$/;

/**
 * Standard base64 (RFC 4648, padded) only. Node's decoder skips characters outside the alphabet and
 * takes the URL-safe one too, so a signature or content hash with junk in it would decode to the
 * valid bytes and pass; the service refuses such a header.
 */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const strictBase64 = (text: string): Buffer | undefined =>
  BASE64.test(text) ? Buffer.from(text, "base64") : undefined;

const header = (headers: IncomingHttpHeaders, name: string): string | undefined => {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
};

/**
 * Verifies the ACS HMAC-SHA256 scheme the way `@azure/communication-common` signs
 * (docs/acs-wire-facts.md, "Request signing"):
 *   VERB \n pathAndQuery \n <values of SignedHeaders joined by ";">
 * keyed with the base64-DECODED access key. The SDK signs `x-ms-date;host;x-ms-content-sha256`;
 * the 1.0.0-beta SDKs signed `date;host;x-ms-content-sha256` with a `Date` header, which the
 * service accepts too. Any order of those (plus other headers) is accepted, as Azure's HMAC scheme
 * defines it; with both dates signed, `x-ms-date` is the request's time.
 */
export function createAuthenticator(options: AuthenticatorOptions) {
  const key = Buffer.from(options.accessKey, "base64");
  const wallClock = options.wallClock ?? Date.now;

  return {
    /** Throws AuthenticationError; returns nothing on success. */
    verify(request: SignedRequest): void {
      const authorization = header(request.headers, "authorization");
      if (!authorization) {
        throw new AuthenticationError("missing-authorization");
      }
      const match = AUTHORIZATION.exec(authorization.trim());
      if (!match) {
        throw new AuthenticationError("malformed-authorization");
      }
      const signedHeaders = match[1]!.toLowerCase().split(";");
      const dateHeader = signedHeaders.includes("x-ms-date") ? "x-ms-date" : "date";
      for (const required of [dateHeader, "host", "x-ms-content-sha256"]) {
        if (!signedHeaders.includes(required)) {
          throw new AuthenticationError("missing-signed-header");
        }
      }
      const values: string[] = [];
      for (const name of signedHeaders) {
        const value = header(request.headers, name);
        if (value === undefined) {
          throw new AuthenticationError("missing-signed-header");
        }
        values.push(value);
      }

      const date = Date.parse(header(request.headers, dateHeader)!);
      if (Number.isNaN(date)) {
        throw new AuthenticationError("bad-date");
      }
      if (Math.abs(wallClock() - date) > MAX_CLOCK_SKEW_MS) {
        throw new AuthenticationError("clock-skew");
      }

      // The hash the client claims must be the hash of the bytes that actually arrived: otherwise a
      // signed request's body could be swapped in flight.
      const actualHash = createHash("sha256").update(request.body).digest();
      const claimedHash = strictBase64(header(request.headers, "x-ms-content-sha256")!);
      if (
        claimedHash === undefined ||
        claimedHash.length !== actualHash.length ||
        !timingSafeEqual(claimedHash, actualHash)
      ) {
        throw new AuthenticationError("content-hash-mismatch");
      }

      const stringToSign = `${request.method.toUpperCase()}\n${request.pathAndQuery}\n${values.join(";")}`;
      const expected = createHmac("sha256", key).update(stringToSign, "utf8").digest();
      const given = strictBase64(match[2]!);
      // timingSafeEqual needs equal lengths; a length mismatch reveals nothing about the key.
      if (
        given === undefined ||
        given.length !== expected.length ||
        !timingSafeEqual(given, expected)
      ) {
        throw new AuthenticationError("bad-signature");
      }
    },
  };
}

export type Authenticator = ReturnType<typeof createAuthenticator>;
