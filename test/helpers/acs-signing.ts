import { createHash, createHmac } from "node:crypto";

/**
 * Requests signed the way the Azure SDK signs ACS calls (ACS-WIRE-FACTS.md), written from the
 * wire facts rather than imported from the emulator, so tests check the emulator independently.
 */
export async function signedFetch(
  endpoint: string,
  accessKey: string,
  method: string,
  pathAndQuery: string,
  body?: unknown,
): Promise<Response> {
  const url = new URL(pathAndQuery, endpoint);
  const payload = body === undefined ? "" : JSON.stringify(body);
  const contentHash = createHash("sha256").update(payload).digest("base64");
  const date = new Date().toUTCString();
  const signed = `${method}\n${url.pathname}${url.search}\n${date};${url.host};${contentHash}`;
  const signature = createHmac("sha256", Buffer.from(accessKey, "base64"))
    .update(signed)
    .digest("base64");
  return fetch(url, {
    method,
    headers: {
      "content-type": "application/json",
      "x-ms-date": date,
      "x-ms-content-sha256": contentHash,
      authorization: `HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=${signature}`,
    },
    body: payload === "" ? undefined : payload,
  });
}

export interface Introspection {
  active: boolean;
  reason?: "expired" | "revoked" | "deleted" | "invalid";
  claims?: Record<string, unknown>;
}

/** The emulator's `POST /emulator/introspect`: is this token still good, and if not, why. */
export async function introspect(
  acs: { endpoint: string; accessKey: string },
  token: string,
): Promise<Introspection> {
  const response = await signedFetch(acs.endpoint, acs.accessKey, "POST", "/emulator/introspect", {
    token,
  });
  if (response.status !== 200) {
    throw new Error(`introspect answered ${response.status}`);
  }
  return (await response.json()) as Introspection;
}
