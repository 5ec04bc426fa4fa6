import type { DefaultAzureCredentialOptions, TokenCredential } from "@azure/identity";

/** The scope ACS data-plane tokens are requested for. */
export const ACS_SCOPE = "https://communication.azure.com/.default";

/** The credential could not get an ACS token at start: the process must not serve. */
export class EntraCredentialError extends Error {
  override readonly name = "EntraCredentialError";
}

/**
 * The hosts of Entra ID's own clouds (public, US Government, China, Germany, and the sovereign
 * ones): MSAL's built-in cloud list, whose authorities it validates by instance discovery.
 */
const MICROSOFT_AUTHORITY_HOSTS = new Set([
  "login.microsoftonline.com",
  "login.windows.net",
  "login.microsoft.com",
  "sts.windows.net",
  "login.partner.microsoftonline.cn",
  "login.chinacloudapi.cn",
  "login.microsoftonline.de",
  "login.microsoftonline.us",
  "login.usgovcloudapi.net",
  "login-us.microsoftonline.com",
  "login.sovcloud-identity.fr",
  "login.sovcloud-identity.de",
  "login.sovcloud-identity.sg",
]);

/**
 * `DefaultAzureCredential`'s options for the environment's `AZURE_AUTHORITY_HOST`. An authority
 * outside Microsoft's clouds (the ACS emulator's test tenant, an Azure Stack or AD FS authority)
 * cannot pass MSAL's instance discovery, which asks Microsoft's public cloud whether the host is
 * an Entra authority: it is turned off (`disableInstanceDiscovery`), and the host is trusted as
 * given, as `@azure/identity` documents for such authorities.
 */
/** What the gateway adds to `DefaultAzureCredential`'s options (config.ts derives it). */
export type EntraCredentialOptions = Pick<
  DefaultAzureCredentialOptions,
  "disableInstanceDiscovery"
>;

export function entraCredentialOptions(
  /** `AZURE_AUTHORITY_HOST`, already checked as a URL (config/upstream.ts); unset: none. */
  authorityHost: string | undefined,
): EntraCredentialOptions {
  if (authorityHost === undefined) {
    return {};
  }
  const hostname = new URL(authorityHost).hostname.toLowerCase();
  return MICROSOFT_AUTHORITY_HOSTS.has(hostname) ? {} : { disableInstanceDiscovery: true };
}

/**
 * `DefaultAzureCredential` (environment service principal, workload identity, managed identity,
 * ...), checked once at start by asking it for an ACS token, so a deployment without a usable
 * identity stops with a message naming the problem instead of failing every request.
 * `@azure/identity` reads its `AZURE_*` variables itself; `credentialOptions` adds what the
 * configuration derived from them.
 */
export async function createEntraCredential(
  options: {
    timeoutMs?: number;
    credential?: TokenCredential;
    /** From the configuration (`entraCredentialOptions`). */
    credentialOptions?: EntraCredentialOptions;
  } = {},
): Promise<TokenCredential> {
  // Loaded only in Entra ID mode: the package takes a quarter of a second to import.
  const credential =
    options.credential ??
    // A copy: the configuration is deep-frozen, and @azure/identity writes into the options it is
    // given (each credential of the chain adds its defaults), which a frozen object refuses.
    new (await import("@azure/identity")).DefaultAzureCredential({
      ...options.credentialOptions,
    });
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
