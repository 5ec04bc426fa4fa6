import type { TokenCredential } from "@azure/identity";

/** The scope ACS data-plane tokens are requested for. */
export const ACS_SCOPE = "https://communication.azure.com/.default";

/** The credential could not get an ACS token at start: the process must not serve. */
export class EntraCredentialError extends Error {
  override readonly name = "EntraCredentialError";
}

/**
 * `DefaultAzureCredential` (environment service principal, workload identity, managed identity,
 * ...), checked once at start by asking it for an ACS token, so a deployment without a usable
 * identity stops with a message naming the problem instead of failing every request.
 */
export async function createEntraCredential(
  options: { timeoutMs?: number; credential?: TokenCredential } = {},
): Promise<TokenCredential> {
  // Loaded only in Entra ID mode: the package takes a quarter of a second to import.
  const credential =
    options.credential ?? new (await import("@azure/identity")).DefaultAzureCredential();
  try {
    const token = await credential.getToken(ACS_SCOPE, {
      abortSignal: AbortSignal.timeout(options.timeoutMs ?? 30_000),
    });
    if (!token?.token) {
      throw new Error("the credential returned no token");
    }
  } catch (error) {
    // Azure Identity's messages name the credentials it tried and why each failed; they hold no
    // secret (tokens and client secrets are never part of them).
    const reason = error instanceof Error ? error.message.split("\n")[0] : String(error);
    throw new EntraCredentialError(
      `ACS_ENDPOINT is set, but no Entra ID credential could get a token for ${ACS_SCOPE} (${reason}). Give the workload a managed identity or workload identity with the "Communication and Email Service Owner" role, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET.`,
    );
  }
  return credential;
}
