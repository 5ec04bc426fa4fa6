import type { IdentityProvider } from "../identity/identity-provider.js";
import { checkAcsCredentials } from "../server/readiness.js";
import type { AcsResource } from "./acs-resource.js";

/** Thrown at start when ACS refuses the configured credentials: the process must not serve. */
export class AcsCredentialsRejectedError extends Error {
  override readonly name = "AcsCredentialsRejectedError";
  constructor(endpoint: string, entra: boolean) {
    super(
      `ACS at ${new URL(endpoint).host} refused the gateway's credentials (401): ${
        entra
          ? "give the Entra ID identity a role on the ACS resource (e.g. Communication and Email Service Owner)"
          : "check the access key in COMMUNICATION_SERVICES_CONNECTION_STRING"
      }`,
    );
  }
}

/**
 * The start-up credential probe (server/readiness.ts, `checkAcsCredentials`): a gateway whose
 * credentials ACS refuses stops here, with what to fix, rather than answer every call with an
 * error. An unreachable ACS does not stop the start: `/readyz` reports it until ACS answers.
 */
export async function refuseRejectedCredentials(
  identity: IdentityProvider,
  resource: Pick<AcsResource, "endpoint" | "credential">,
): Promise<void> {
  if ((await checkAcsCredentials(identity)) === "rejected") {
    throw new AcsCredentialsRejectedError(resource.endpoint, resource.credential !== undefined);
  }
}
