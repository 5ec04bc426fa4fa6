import { createHash, createHmac } from "node:crypto";
import { request } from "node:http";

/**
 * Raw ACS HMAC-SHA256 requests, written from docs/acs-wire-facts.md ("Request signing") and not
 * from the emulator's code, so the tests check the emulator against the wire facts rather than
 * against itself. Every part can be overridden to build broken variants.
 */
export interface RawRequest {
  method: string;
  /** Path and query exactly as sent (still encoded), e.g. `/identities?api-version=2023-10-01`. */
  path: string;
  body?: string | Buffer;
  /** Override parts of the signing (for the refused variants). */
  sign?: {
    accessKey?: string;
    date?: string;
    contentHash?: string;
    /** Sign this path instead of the one sent. */
    path?: string;
    /** Replace the whole Authorization header (`null`: send none). */
    authorization?: string | null;
    /**
     * Sign over this header: `x-ms-date` (the SDK today) or `date` (`Date` header, as the
     * 1.0.0-beta SDKs signed). @default "x-ms-date"
     */
    dateHeader?: "x-ms-date" | "date";
  };
  headers?: Record<string, string>;
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: unknown;
}

export const EMPTY_BODY_HASH = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

export function signedHeaders(
  endpoint: string,
  accessKey: string,
  req: RawRequest,
): Record<string, string> {
  const url = new URL(endpoint);
  const body = req.body === undefined ? Buffer.alloc(0) : Buffer.from(req.body);
  const date = req.sign?.date ?? new Date().toUTCString();
  const contentHash = req.sign?.contentHash ?? createHash("sha256").update(body).digest("base64");
  const stringToSign = `${req.method}\n${req.sign?.path ?? req.path}\n${date};${url.host};${contentHash}`;
  const signature = createHmac("sha256", Buffer.from(req.sign?.accessKey ?? accessKey, "base64"))
    .update(stringToSign)
    .digest("base64");
  const dateHeader = req.sign?.dateHeader ?? "x-ms-date";
  const headers: Record<string, string> = {
    host: url.host,
    [dateHeader]: date,
    "x-ms-content-sha256": contentHash,
    "content-type": "application/json",
    ...req.headers,
  };
  if (req.sign?.authorization !== null) {
    headers.authorization =
      req.sign?.authorization ??
      `HMAC-SHA256 SignedHeaders=${dateHeader};host;x-ms-content-sha256&Signature=${signature}`;
  }
  return headers;
}

/** Sends `req` to the emulator with node:http (no SDK in the way). */
export function rawRequest(
  endpoint: string,
  accessKey: string,
  req: RawRequest,
): Promise<RawResponse> {
  const url = new URL(endpoint);
  const body = req.body === undefined ? Buffer.alloc(0) : Buffer.from(req.body);
  const headers = signedHeaders(endpoint, accessKey, req);
  return new Promise((resolve, reject) => {
    const outgoing = request(
      {
        host: url.hostname,
        port: url.port,
        method: req.method,
        path: req.path,
        headers: { ...headers, "content-length": String(body.length) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let json: unknown;
          try {
            json = text ? JSON.parse(text) : undefined;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
        res.on("error", reject);
      },
    );
    outgoing.on("error", reject);
    outgoing.end(body);
  });
}
