/**
 * `npm run quickstart`: the ACS Identity quickstart (create a user, issue a `voip` token, revoke,
 * delete) through the GraphQL API of a running gateway. Prints each step; exits 0 only when
 * every step worked. GATEWAY_URL (default http://localhost:4000/graphql); GATEWAY_BEARER_TOKEN is
 * sent as `Authorization: Bearer ...` when set (AUTH_MODE=jwt with an admin caller). The token
 * itself is never printed, only its length and expiry.
 */
const url = process.env.GATEWAY_URL || "http://localhost:4000/graphql";
const bearer = process.env.GATEWAY_BEARER_TOKEN;

interface GraphQLResponse<T> {
  data?: T;
  errors?: { message: string; extensions?: { code?: string } }[];
}

async function graphql<T>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
  const response = await fetch(url, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(bearer ? { authorization: `Bearer ${bearer}` } : {}),
    },
    body: JSON.stringify({ query, variables }),
    signal: AbortSignal.timeout(15_000),
  });
  const body = (await response.json()) as GraphQLResponse<T>;
  if (body.errors?.length || !body.data) {
    const first = body.errors?.[0];
    throw new Error(
      `${first?.extensions?.code ?? response.status}: ${first?.message ?? "no data"}`,
    );
  }
  return body.data;
}

async function step<T>(
  title: string,
  run: () => Promise<T>,
  show: (value: T) => string,
): Promise<T> {
  process.stdout.write(`- ${title} ... `);
  const value = await run();
  console.log(show(value));
  return value;
}

async function main(): Promise<void> {
  console.log(`ACS quickstart through ${url}`);
  const { createUser } = await step(
    "create a user",
    () => graphql<{ createUser: { id: string } }>("mutation { createUser { id } }"),
    (d) => `created ${d.createUser.id}`,
  );
  const userId = createUser.id;
  await step(
    "issue a voip token",
    () =>
      graphql<{ issueToken: { token: string; expiresOn: string; scopes: string[] } }>(
        "mutation ($userId: ID!) { issueToken(userId: $userId, scopes: [VOIP]) { token expiresOn scopes } }",
        { userId },
      ),
    (d) =>
      `a ${d.issueToken.token.length}-character token for [${d.issueToken.scopes.join(", ")}], expires on ${d.issueToken.expiresOn}`,
  );
  await step(
    "revoke the user's tokens",
    () =>
      graphql<{ revokeTokens: { revokedAt: string } }>(
        "mutation ($userId: ID!) { revokeTokens(userId: $userId) { revokedAt } }",
        { userId },
      ),
    (d) => `revoked at ${d.revokeTokens.revokedAt}`,
  );
  await step(
    "delete the user",
    () =>
      graphql<{ deleteUser: { deletedAt: string } }>(
        "mutation ($userId: ID!) { deleteUser(userId: $userId) { deletedAt } }",
        { userId },
      ),
    (d) => `deleted at ${d.deleteUser.deletedAt}`,
  );
  console.log("every step worked");
}

main().catch((error: unknown) => {
  console.log("failed");
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
