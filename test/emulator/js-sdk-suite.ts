/**
 * The JavaScript SDK's calls, run in a CHILD process by js-sdk.test.ts so that the test CA reaches
 * Node's TLS stack through NODE_EXTRA_CA_CERTS, exactly as a developer would trust it: no
 * `allowInsecureConnection`, no custom agent. Mode `hmac` authenticates with the connection string,
 * mode `entra` with ManagedIdentityCredential reading IDENTITY_ENDPOINT / IDENTITY_HEADER.
 * Prints one JSON line per call on stdout.
 */
import { CommunicationIdentityClient } from "@azure/communication-identity";
import { ManagedIdentityCredential } from "@azure/identity";

const mode = process.argv[2];
const connectionString = process.env.COMMUNICATION_SERVICES_CONNECTION_STRING ?? "";
const endpoint = /endpoint=([^;]+)/i.exec(connectionString)?.[1] ?? "";
const client =
  mode === "entra"
    ? new CommunicationIdentityClient(endpoint, new ManagedIdentityCredential(), {
        retryOptions: { maxRetries: 0 },
      })
    : new CommunicationIdentityClient(connectionString, { retryOptions: { maxRetries: 0 } });

const report = (call: string, fields: Record<string, unknown> = {}) =>
  process.stdout.write(`${JSON.stringify({ call, ...fields })}\n`);

const user = await client.createUser();
report("createUser", { id: user.communicationUserId });

const withToken = await client.createUserAndToken(["chat"], { tokenExpiresInMinutes: 60 });
report("createUserAndToken", {
  id: withToken.user.communicationUserId,
  minutes: Math.round((withToken.expiresOn.getTime() - Date.now()) / 60_000),
});

const allScopes = await client.getToken(user, [
  "chat",
  "voip",
  "chat.join",
  "chat.join.limited",
  "voip.join",
]);
report("getToken", { minutes: Math.round((allScopes.expiresOn.getTime() - Date.now()) / 60_000) });

await client.revokeTokens(user);
report("revokeTokens");

const teams = await client.getTokenForTeamsUser({
  teamsUserAadToken: process.env.TEAMS_AAD_TOKEN ?? "",
  clientId: process.env.TEAMS_APP_ID ?? "",
  userObjectId: process.env.TEAMS_USER_ID ?? "",
});
report("getTokenForTeamsUser", { parts: teams.token.split(".").length });

const refused = await client.getToken(user, ["chat"], { tokenExpiresInMinutes: 59 }).then(
  () => undefined,
  (error: { statusCode?: number; code?: string }) => ({
    status: error.statusCode,
    code: error.code,
  }),
);
report("getToken(59)", { refused });

await client.deleteUser(user);
await client.deleteUser(withToken.user);
report("deleteUser");
