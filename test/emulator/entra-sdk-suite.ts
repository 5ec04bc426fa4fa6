/**
 * `@azure/identity` and the ACS SDKs against the emulator's Entra ID authority, run in a CHILD
 * process (entra-authority.test.ts) so that the test CA reaches Node's TLS stack through
 * NODE_EXTRA_CA_CERTS as a developer would trust it. Prints one JSON line per step on stdout.
 *
 * Modes:
 * - `client-secret`: ClientSecretCredential (settings in ENTRA_* variables, `authorityHost` and
 *   `disableInstanceDiscovery` passed as options), the identity client with it, and a wrong secret.
 * - `default`: DefaultAzureCredential reading the emulator's printed `AZURE_*` variables.
 * - `exchange`: UsernamePasswordCredential, then AzureCommunicationTokenCredential with Entra
 *   options for both exchanges, a wrong password, and a token the exchange refuses.
 */
import { AzureCommunicationTokenCredential } from "@azure/communication-common";
import { CommunicationIdentityClient } from "@azure/communication-identity";
import {
  ClientSecretCredential,
  DefaultAzureCredential,
  UsernamePasswordCredential,
  type TokenCredential,
} from "@azure/identity";

const mode = process.argv[2];
const env = (name: string) => process.env[name] ?? "";
const endpoint = env("ACS_TEST_ENDPOINT");
const ACS_SCOPE = "https://communication.azure.com/.default";
const options = { authorityHost: env("ENTRA_AUTHORITY_HOST"), disableInstanceDiscovery: true };

const report = (step: string, fields: Record<string, unknown> = {}) =>
  process.stdout.write(`${JSON.stringify({ step, ...fields })}\n`);
const claims = (token: string) =>
  JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString("utf8")) as Record<
    string,
    unknown
  >;
const failure = (error: unknown) => ({
  name: (error as Error).name,
  message: (error as Error).message,
});

async function useIdentityClient(credential: TokenCredential) {
  const client = new CommunicationIdentityClient(endpoint, credential, {
    retryOptions: { maxRetries: 0 },
  });
  const created = await client.createUserAndToken(["voip"]);
  const issued = await client.getToken(created.user, ["chat"]);
  await client.revokeTokens(created.user);
  await client.deleteUser(created.user);
  return {
    id: created.user.communicationUserId,
    skypeid: claims(created.token).skypeid,
    issuedScope: claims(issued.token).acsScope,
  };
}

if (mode === "client-secret") {
  const credential = new ClientSecretCredential(
    env("ENTRA_TENANT_ID"),
    env("ENTRA_CLIENT_ID"),
    env("ENTRA_CLIENT_SECRET"),
    options,
  );
  const token = await credential.getToken(ACS_SCOPE);
  report("token", { claims: claims(token.token), expiresOnTimestamp: token.expiresOnTimestamp });
  report("identity", await useIdentityClient(credential));
  const wrong = new ClientSecretCredential(
    env("ENTRA_TENANT_ID"),
    env("ENTRA_CLIENT_ID"),
    `${env("ENTRA_CLIENT_SECRET")}x`,
    options,
  );
  report("wrong-secret", await wrong.getToken(ACS_SCOPE).then(() => ({}), failure));
} else if (mode === "default") {
  // Exactly what a developer does: export the printed lines; the credential reads them.
  const credential = new DefaultAzureCredential({ disableInstanceDiscovery: true });
  const token = await credential.getToken(ACS_SCOPE);
  report("token", { claims: claims(token.token) });
  report("identity", await useIdentityClient(credential));
} else if (mode === "exchange") {
  const user = new UsernamePasswordCredential(
    env("ENTRA_TENANT_ID"),
    env("ENTRA_CLIENT_ID"),
    env("ENTRA_USERNAME"),
    env("ENTRA_PASSWORD"),
    options,
  );
  const voip = "https://communication.azure.com/clients/VoIP";
  const entraToken = await user.getToken(voip);
  report("user-token", { claims: claims(entraToken.token) });

  const exchanges: [string, string[] | undefined][] = [
    ["entra", [voip]],
    ["entra-default-scopes", undefined],
    ["teams-extension", ["https://auth.msft.communication.azure.com/TeamsExtension.ManageCalls"]],
  ];
  for (const [step, scopes] of exchanges) {
    const credential = new AzureCommunicationTokenCredential({
      resourceEndpoint: endpoint,
      tokenCredential: user,
      ...(scopes ? { scopes } : {}),
    });
    const acs = await credential.getToken();
    report(step, { claims: claims(acs.token), expiresOnTimestamp: acs.expiresOnTimestamp });
    credential.dispose();
  }

  const wrongPassword = new UsernamePasswordCredential(
    env("ENTRA_TENANT_ID"),
    env("ENTRA_CLIENT_ID"),
    env("ENTRA_USERNAME"),
    `${env("ENTRA_PASSWORD")}x`,
    options,
  );
  report("wrong-password", await wrongPassword.getToken(voip).then(() => ({}), failure));

  // A token the exchange must refuse (given by the test: expired, another tenant's, ...).
  const refused = new AzureCommunicationTokenCredential({
    resourceEndpoint: endpoint,
    tokenCredential: {
      getToken: async () => ({
        token: env("REFUSED_ENTRA_TOKEN"),
        expiresOnTimestamp: Date.now() + 3_600_000,
      }),
    },
    scopes: [voip],
  });
  report("refused", await refused.getToken().then(() => ({}), failure));
  refused.dispose();
} else {
  throw new Error(`unknown mode ${mode}`);
}
