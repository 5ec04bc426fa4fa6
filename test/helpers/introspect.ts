import { rawRequest } from "../emulator/signing.js";

export interface Introspection {
  active: boolean;
  reason?: "expired" | "revoked" | "deleted" | "invalid";
  claims?: Record<string, unknown>;
}

/**
 * The emulator's `POST /emulator/introspect` (signed like every ACS call, with the wire-facts
 * signer of the emulator suite): is this token still good, and if not, why.
 */
export async function introspect(
  acs: { endpoint: string; accessKey: string | undefined },
  token: string,
): Promise<Introspection> {
  if (acs.accessKey === undefined) {
    throw new Error("introspection is signed with the emulator's access key");
  }
  const response = await rawRequest(acs.endpoint, acs.accessKey, {
    method: "POST",
    path: "/emulator/introspect",
    body: JSON.stringify({ token }),
  });
  if (response.status !== 200) {
    throw new Error(`introspect answered ${response.status}`);
  }
  return response.json as Introspection;
}
