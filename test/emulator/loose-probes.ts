import type { RawRequest, RawResponse } from "./signing.js";

/**
 * Requests whose answers differ between api-versions (a field, a scope, a route one version has and
 * another lacks), sent with `version`: a loose emulator must answer an unknown version exactly as
 * the newest one it lists (the last of `api-supported-versions`). Each answer is reduced to its
 * status and error code.
 */
export async function surfaceProbes(
  call: (req: RawRequest) => Promise<RawResponse>,
  version: string,
): Promise<Record<string, string>> {
  const v = `api-version=${encodeURIComponent(version)}`;
  const answer = (res: RawResponse) =>
    `${res.status} ${(res.json as { error?: { code?: string } } | undefined)?.error?.code ?? ""}`.trim();
  const withToken = await call({
    method: "POST",
    path: `/identities?${v}`,
    body: JSON.stringify({ createTokenWithScopes: ["voip.join"], expiresInMinutes: 60 }),
  });
  const id = encodeURIComponent(
    (withToken.json as { identity?: { id?: string } } | undefined)?.identity?.id ?? "none",
  );
  const probes: Record<string, RawRequest> = {
    customId: {
      method: "POST",
      path: `/identities?${v}`,
      body: JSON.stringify({ customId: `probe-${Math.random()}` }),
    },
    getIdentity: { method: "GET", path: `/identities/${id}?${v}` },
    issue: {
      method: "POST",
      path: `/identities/${id}/:issueAccessToken?${v}`,
      body: JSON.stringify({ scopes: ["chat.join"], expiresInMinutes: 60 }),
    },
    teamsUser: {
      method: "POST",
      path: `/teamsUser/:exchangeAccessToken?${v}`,
      body: JSON.stringify({ token: "" }),
    },
    entraAccess: {
      method: "POST",
      path: `/access/entra/:exchangeAccessToken?${v}`,
      body: JSON.stringify({ token: "" }),
    },
    teamsExtension: {
      method: "POST",
      path: `/access/teamsExtension/:exchangeAccessToken?${v}`,
      body: JSON.stringify({ token: "" }),
    },
  };
  const answers: Record<string, string> = { createWithToken: answer(withToken) };
  for (const [name, req] of Object.entries(probes)) {
    answers[name] = answer(await call(req));
  }
  return answers;
}
