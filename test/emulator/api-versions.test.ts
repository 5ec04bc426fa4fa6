import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ANSWERED_API_VERSIONS,
  EMULATOR_CLIENT_ID,
  EMULATOR_TENANT_ID,
  EMULATOR_USER_OBJECT_ID,
  SUPPORTED_API_VERSIONS,
  type Emulator,
} from "@acs-identity-gateway/emulator";
import { startTestEmulator } from "../helpers/emulator.js";
import { unsignedJwt } from "./jwt.js";
import { rawRequest, type RawRequest, type RawResponse } from "./signing.js";
import { assertErrorShape, assertMatchesSpec, SPEC_VERSIONS, specAcceptsRequest } from "./spec.js";

/**
 * Every api-version the emulator lists gets a signed request for each operation it has, and each
 * answer is validated against THAT version's spec. What a version lacks is refused; what it adds
 * works. The expectations below are written from the specs (test/fixtures/acs-identity-spec), not
 * from the emulator's version table.
 */
interface Expected {
  joinScopes: boolean;
  /** Where the request bodies have `expiresInMinutes`. */
  expiresInMinutes: "none" | "issue" | "create-and-issue";
  teams: "none" | "token-only" | "token-app-user";
  customId: boolean;
  /** `/access/entra/...` and `/access/teamsExtension/...` (exchange and assignments). */
  access?: { entra: boolean; teamsExtension: boolean };
  /**
   * Published, answered, but not in the service's `api-supported-versions` (the 2025 recordings,
   * docs/acs-wire-facts.md): the four older folders read in (SOURCE.md).
   */
  unlisted?: true;
}
const EXPECTED: Record<string, Expected> = {
  // Its spec is 2021-03-07's but for the version string.
  "2021-02-22-preview1": {
    joinScopes: false,
    expiresInMinutes: "none",
    teams: "none",
    customId: false,
    unlisted: true,
  },
  "2021-03-07": { joinScopes: false, expiresInMinutes: "none", teams: "none", customId: false },
  // The `{token}` Teams exchange, as 2021-10-31-preview.
  "2021-03-31-preview1": {
    joinScopes: false,
    expiresInMinutes: "none",
    teams: "token-only",
    customId: false,
    unlisted: true,
  },
  "2021-10-31-preview": {
    joinScopes: false,
    expiresInMinutes: "none",
    teams: "token-only",
    customId: false,
  },
  "2021-11-01": { joinScopes: false, expiresInMinutes: "none", teams: "none", customId: false },
  "2022-06-01": {
    joinScopes: false,
    expiresInMinutes: "none",
    teams: "token-app-user",
    customId: false,
  },
  // `expiresInMinutes` on the issue request only; the create request has none.
  "2022-09-01": {
    joinScopes: false,
    expiresInMinutes: "issue",
    teams: "token-app-user",
    customId: false,
    unlisted: true,
  },
  "2022-10-01": {
    joinScopes: false,
    expiresInMinutes: "create-and-issue",
    teams: "token-app-user",
    customId: false,
  },
  // 2022-10-01's bodies and answers (plus optional Repeatability headers on create).
  "2023-08-01": {
    joinScopes: false,
    expiresInMinutes: "create-and-issue",
    teams: "token-app-user",
    customId: false,
    unlisted: true,
  },
  "2023-10-01": {
    joinScopes: true,
    expiresInMinutes: "create-and-issue",
    teams: "token-app-user",
    customId: false,
  },
  "2025-03-02-preview": {
    joinScopes: true,
    expiresInMinutes: "create-and-issue",
    teams: "token-app-user",
    customId: true,
    access: { entra: true, teamsExtension: true },
  },
  // The stored spec read is 2023-10-01's surface (SOURCE.md).
  "2025-04-01-preview": {
    joinScopes: true,
    expiresInMinutes: "create-and-issue",
    teams: "token-app-user",
    customId: false,
  },
  "2025-06-30": {
    joinScopes: true,
    expiresInMinutes: "create-and-issue",
    teams: "token-app-user",
    customId: false,
    access: { entra: false, teamsExtension: true },
  },
};

const APP_ID = "2f6a5b5e-1c55-4d8f-9f0d-3a3b6c9a7e11";
const USER_ID = "9c7d3f1a-7b6e-4f0b-8e2a-5d4c3b2a1f00";

let emulator: Emulator;
/** Entra `any`: the `/access` exchanges take an unsigned token of the test tenant's user. */
let entraAny: Emulator;
beforeAll(async () => {
  emulator = await startTestEmulator();
  entraAny = await startTestEmulator({ entra: "any" });
});
afterAll(async () => {
  await Promise.all([emulator.close(), entraAny.close()]);
});

const send = (req: RawRequest) => rawRequest(emulator.endpoint, emulator.accessKey, req);
const json = (value: unknown) => JSON.stringify(value);
const claimsOf = (token: string) =>
  JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString()) as Record<string, number>;

function expectSuccess(res: RawResponse, status: number) {
  expect(res.status, res.text).toBe(status);
  if (status !== 204) {
    // The service sends Content-Length on 2xx answers, never chunked.
    expect(res.headers["content-length"]).toBe(String(Buffer.byteLength(res.text)));
    expect(res.headers["transfer-encoding"]).toBeUndefined();
  }
}

function expectRefusal(res: RawResponse, status: number, code: string, target?: string) {
  expect(res.status, res.text).toBe(status);
  assertErrorShape(res.json);
  const error = (res.json as { error: { code: string; target?: string } }).error;
  expect(error.code).toBe(code);
  if (target !== undefined) {
    expect(error.target).toBe(target);
  }
}

const LEGACY = "2020-07-20-preview2";
const ALL_VERSIONS = [LEGACY, ...Object.keys(EXPECTED)].sort();
const LISTED_VERSIONS = ALL_VERSIONS.filter((v) => !EXPECTED[v]?.unlisted);
const UNLISTED_VERSIONS = ALL_VERSIONS.filter((v) => EXPECTED[v]?.unlisted);

it("answers exactly the versions the tests cover, and lists the listed ones in api-supported-versions", async () => {
  expect(UNLISTED_VERSIONS).toEqual([
    "2021-02-22-preview1",
    "2021-03-31-preview1",
    "2022-09-01",
    "2023-08-01",
  ]);
  expect([...ANSWERED_API_VERSIONS].sort()).toEqual(ALL_VERSIONS);
  expect([...SUPPORTED_API_VERSIONS].sort()).toEqual(LISTED_VERSIONS);
  expect([...SPEC_VERSIONS].sort()).toEqual(ALL_VERSIONS);
  const res = await send({ method: "POST", path: "/identities?api-version=2021-03-07" });
  expect(String(res.headers["api-supported-versions"]).split(", ").sort()).toEqual(LISTED_VERSIONS);
  const health = await fetch(new URL("emulator/health", emulator.endpoint));
  expect(((await health.json()) as { apiVersions: string[] }).apiVersions.sort()).toEqual(
    ALL_VERSIONS,
  );
});

describe(`api-version ${LEGACY}, the first preview's own API`, () => {
  const path = (p: string) => `${p}?api-version=${LEGACY}`;
  const create = async () => {
    const res = await send({ method: "POST", path: path("/identities") });
    expectSuccess(res, 200);
    assertMatchesSpec("CommunicationIdentity", res.json, LEGACY);
    return (res.json as { id: string }).id;
  };
  const issue = (id: string, body: unknown = { scopes: ["chat"] }) =>
    send({
      method: "POST",
      path: path(`/identities/${encodeURIComponent(id)}/token`),
      body: json(body),
    });

  it("creates with 200 and a bare identity, and issues through /token with the owner's id", async () => {
    const id = await create();
    const res = await issue(id);
    expectSuccess(res, 200);
    assertMatchesSpec("CommunicationIdentityToken", res.json, LEGACY);
    expect((res.json as { id: string }).id).toBe(id);
    expectRefusal(
      await send({
        method: "POST",
        path: path("/identities"),
        body: json({ createTokenWithScopes: ["chat"] }),
      }),
      400,
      "ValidationError",
      "createTokenWithScopes",
    );
  });

  it("revokes with PATCH tokensValidFrom, and deletes", async () => {
    const id = await create();
    const before = ((await issue(id)).json as { token: string }).token;
    const patched = await send({
      method: "PATCH",
      path: path(`/identities/${encodeURIComponent(id)}`),
      body: json({ tokensValidFrom: new Date(Date.now() + 1000).toISOString() }),
    });
    expectSuccess(patched, 204);
    const state = await send({
      method: "POST",
      path: "/emulator/introspect",
      body: json({ token: before }),
    });
    expect(state.json).toMatchObject({ active: false, reason: "revoked" });
    expectRefusal(
      await send({
        method: "PATCH",
        path: path(`/identities/${encodeURIComponent(id)}`),
        body: json({ tokensValidFrom: "yesterday" }),
      }),
      400,
      "ValidationError",
      "tokensValidFrom",
    );
    expectSuccess(
      await send({ method: "DELETE", path: path(`/identities/${encodeURIComponent(id)}`) }),
      204,
    );
    expectRefusal(await issue(id), 404, "IdentityNotFound");
  });

  it("has none of the later paths or fields", async () => {
    const id = await create();
    const encoded = encodeURIComponent(id);
    expectRefusal(
      await send({
        method: "POST",
        path: path(`/identities/${encoded}/:issueAccessToken`),
        body: json({ scopes: ["chat"] }),
      }),
      404,
      "NotFound",
    );
    expectRefusal(
      await send({ method: "POST", path: path(`/identities/${encoded}/:revokeAccessTokens`) }),
      404,
      "NotFound",
    );
    expectRefusal(
      await issue(id, { scopes: ["chat"], expiresInMinutes: 60 }),
      400,
      "ValidationError",
      "expiresInMinutes",
    );
    expectRefusal(await issue(id, { scopes: ["chat.join"] }), 400, "ValidationError", "scopes");
    // And the later versions do not have its paths.
    expectRefusal(
      await send({
        method: "POST",
        path: `/identities/${encoded}/token?api-version=2023-10-01`,
        body: json({ scopes: ["chat"] }),
      }),
      404,
      "NotFound",
    );
    expectRefusal(
      await send({
        method: "PATCH",
        path: `/identities/${encoded}?api-version=2023-10-01`,
        body: json({ tokensValidFrom: new Date().toISOString() }),
      }),
      405,
      "MethodNotAllowed",
    );
  });
});

describe.each(Object.entries(EXPECTED))("api-version %s", (version, expected) => {
  const path = (p: string) => `${p}${p.includes("?") ? "&" : "?"}api-version=${version}`;
  const identityPath = (id: string, suffix = "") =>
    path(`/identities/${encodeURIComponent(id)}${suffix}`);

  async function create(body?: unknown): Promise<RawResponse> {
    return send({
      method: "POST",
      path: path("/identities"),
      body: body === undefined ? undefined : json(body),
    });
  }

  it("creates an identity, with and without a token", async () => {
    const bare = await create();
    expectSuccess(bare, 201);
    assertMatchesSpec("CommunicationIdentityAccessTokenResult", bare.json, version);

    const withToken = await create({ createTokenWithScopes: ["chat", "voip"] });
    expectSuccess(withToken, 201);
    assertMatchesSpec("CommunicationIdentityAccessTokenResult", withToken.json, version);
    const { accessToken } = withToken.json as { accessToken: { token: string; expiresOn: string } };
    const claims = claimsOf(accessToken.token);
    expect(claims.exp! - claims.iat!).toBe(1440 * 60);
    // 7 fractional digits; the JWT's exp is its whole second.
    expect(accessToken.expiresOn).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}\+00:00$/);
    expect(Math.floor(Date.parse(accessToken.expiresOn) / 1000)).toBe(claims.exp);
  });

  it("issues, revokes and deletes", async () => {
    const id = ((await create()).json as { identity: { id: string } }).identity.id;
    const issued = await send({
      method: "POST",
      path: identityPath(id, "/:issueAccessToken"),
      body: json({ scopes: ["voip"] }),
    });
    expectSuccess(issued, 200);
    assertMatchesSpec("CommunicationIdentityAccessToken", issued.json, version);

    const revoked = await send({ method: "POST", path: identityPath(id, "/:revokeAccessTokens") });
    expectSuccess(revoked, 204);
    expect(revoked.text).toBe("");
    const deleted = await send({ method: "DELETE", path: identityPath(id) });
    expectSuccess(deleted, 204);
    expectRefusal(
      await send({
        method: "POST",
        path: identityPath(id, "/:issueAccessToken"),
        body: json({ scopes: ["voip"] }),
      }),
      404,
      "IdentityNotFound",
    );
  });

  it(
    {
      "create-and-issue": "honours expiresInMinutes on create and issue",
      issue: "honours expiresInMinutes on issue, and refuses it on create, which has none",
      none: "refuses expiresInMinutes, which this version does not have",
    }[expected.expiresInMinutes],
    async () => {
      const created = await create({ createTokenWithScopes: ["chat"], expiresInMinutes: 60 });
      const id = ((await create()).json as { identity: { id: string } }).identity.id;
      const issue = (expiresInMinutes: number) =>
        send({
          method: "POST",
          path: identityPath(id, "/:issueAccessToken"),
          body: json({ scopes: ["chat"], expiresInMinutes }),
        });
      const issued = await issue(60);
      if (expected.expiresInMinutes === "create-and-issue") {
        expectSuccess(created, 201);
        assertMatchesSpec("CommunicationIdentityAccessTokenResult", created.json, version);
        const { accessToken } = created.json as { accessToken: { token: string } };
        const claims = claimsOf(accessToken.token);
        expect(claims.exp! - claims.iat!).toBe(3600);
      } else {
        expectRefusal(created, 400, "ValidationError", "expiresInMinutes");
      }
      if (expected.expiresInMinutes === "none") {
        expectRefusal(issued, 400, "ValidationError", "expiresInMinutes");
      } else {
        expectSuccess(issued, 200);
        assertMatchesSpec("CommunicationIdentityAccessToken", issued.json, version);
        const { token } = issued.json as { token: string };
        const claims = claimsOf(token);
        expect(claims.exp! - claims.iat!).toBe(3600);
        // [60, 1440]: the spec's bounds, or (2022-09-01, whose field has none) its example's
        // "[1-24] hours range"; the service's answer (docs/acs-wire-facts.md).
        expectRefusal(await issue(59), 400, "ValidationError", "ExpiresInMinutes");
        expectRefusal(await issue(1441), 400, "ValidationError", "ExpiresInMinutes");
      }
    },
  );

  it(
    expected.joinScopes
      ? "issues the join scopes"
      : "refuses the join scopes, which this version does not have",
    async () => {
      const id = ((await create()).json as { identity: { id: string } }).identity.id;
      const res = await send({
        method: "POST",
        path: identityPath(id, "/:issueAccessToken"),
        body: json({ scopes: ["chat.join", "chat.join.limited", "voip.join"] }),
      });
      if (expected.joinScopes) {
        expectSuccess(res, 200);
        assertMatchesSpec("CommunicationIdentityAccessToken", res.json, version);
        expect(claimsOf((res.json as { token: string }).token).acsScope).toBe(
          "chat.join,chat.join.limited,voip.join",
        );
      } else {
        expectRefusal(res, 400, "ValidationError", "scopes");
      }
    },
  );

  it(`answers the Teams exchange as ${expected.teams}`, async () => {
    const aad = unsignedJwt({
      appid: APP_ID,
      oid: USER_ID,
      exp: Math.floor(Date.now() / 1000) + 3600,
    });
    const full = await send({
      method: "POST",
      path: path("/teamsUser/:exchangeAccessToken"),
      body: json({ token: aad, appId: APP_ID, userId: USER_ID }),
    });
    const tokenOnly = await send({
      method: "POST",
      path: path("/teamsUser/:exchangeAccessToken"),
      body: json({ token: aad }),
    });
    if (expected.teams === "none") {
      expectRefusal(full, 404, "NotFound");
    } else if (expected.teams === "token-only") {
      expectSuccess(tokenOnly, 200);
      assertMatchesSpec("CommunicationIdentityAccessToken", tokenOnly.json, version);
      expectRefusal(full, 400, "ValidationError", "appId");
    } else {
      expectSuccess(full, 200);
      assertMatchesSpec("CommunicationIdentityAccessToken", full.json, version);
      expectRefusal(tokenOnly, 400, "ValidationError", "AppId");
    }
  });

  const access = expected.access ?? { entra: false, teamsExtension: false };
  it(`has the /access exchanges and assignments: entra ${access.entra}, teamsExtension ${access.teamsExtension}`, async () => {
    const userToken = (aud: string, scp: string) =>
      unsignedJwt({
        aud,
        scp,
        tid: EMULATOR_TENANT_ID,
        oid: EMULATOR_USER_OBJECT_ID,
        azp: EMULATOR_CLIENT_ID,
        exp: Math.floor(Date.now() / 1000) + 3600,
      });
    const tokens = {
      entra: userToken("https://communication.azure.com/clients", "VoIP"),
      teamsExtension: userToken(
        "https://auth.msft.communication.azure.com",
        "TeamsExtension.ManageCalls",
      ),
    };
    for (const kind of ["entra", "teamsExtension"] as const) {
      const exchanged = await rawRequest(entraAny.endpoint, entraAny.accessKey, {
        method: "POST",
        path: path(`/access/${kind}/:exchangeAccessToken`),
        body: "{}",
        sign: { authorization: `Bearer ${tokens[kind]}` },
      });
      const assignment = await rawRequest(entraAny.endpoint, entraAny.accessKey, {
        method: "GET",
        path: path(
          kind === "entra"
            ? `/access/entra/assignments/${EMULATOR_TENANT_ID}`
            : `/access/teamsExtension/tenants/${EMULATOR_TENANT_ID}/assignments/${EMULATOR_USER_OBJECT_ID}`,
        ),
      });
      if (access[kind]) {
        expectSuccess(exchanged, 200);
        assertMatchesSpec("CommunicationIdentityAccessTokenResult", exchanged.json, version);
        expectSuccess(assignment, 200);
        assertMatchesSpec(
          kind === "entra" ? "EntraAssignment" : "TeamsExtensionAssignmentResponse",
          assignment.json,
          version,
        );
      } else {
        expectRefusal(exchanged, 404, "NotFound");
        expectRefusal(assignment, 404, "NotFound");
      }
    }
  });

  it(
    expected.customId
      ? "maps a customId to one identity and answers GET /identities/{id}"
      : "refuses customId and GET /identities/{id}, which this version does not have",
    async () => {
      const customId = `alice-${version}-${Date.now()}`;
      const first = await create({ customId, createTokenWithScopes: ["chat"] });
      if (!expected.customId) {
        expectRefusal(first, 400, "ValidationError", "customId");
        const id = ((await create()).json as { identity: { id: string } }).identity.id;
        expectRefusal(
          await send({ method: "GET", path: identityPath(id) }),
          405,
          "MethodNotAllowed",
        );
        return;
      }
      expectSuccess(first, 201);
      assertMatchesSpec("CommunicationIdentityAccessTokenResult", first.json, version);
      const again = await create({ customId });
      const id = (first.json as { identity: { id: string } }).identity.id;
      expect((again.json as { identity: { id: string } }).identity.id).toBe(id);

      const got = await send({ method: "GET", path: identityPath(id) });
      expectSuccess(got, 200);
      assertMatchesSpec("CommunicationIdentity", got.json, version);
      expect(got.json).toMatchObject({ id, customId });
      expect((got.json as { lastTokenIssuedAt?: string }).lastTokenIssuedAt).toMatch(/\+00:00$/);

      expectRefusal(await create({ customId: "" }), 400, "ValidationError", "customId");
      expectRefusal(
        await create({ customId: "x".repeat(257) }),
        400,
        "ValidationError",
        "customId",
      );
    },
  );
});

/**
 * The four published versions the service does not list: each is answered, kept out of
 * `api-supported-versions`, and takes exactly the request bodies its own spec (copied in
 * test/fixtures/acs-identity-spec) allows, refusing the rest with the service's error shape.
 */
describe.each(UNLISTED_VERSIONS)("api-version %s, published but not listed", (version) => {
  const path = (p: string) => `${p}?api-version=${version}`;

  it("is answered, and not named in api-supported-versions", async () => {
    const res = await send({ method: "POST", path: path("/identities") });
    expectSuccess(res, 201);
    assertMatchesSpec("CommunicationIdentityAccessTokenResult", res.json, version);
    expect(String(res.headers["api-supported-versions"]).split(", ")).not.toContain(version);
  });

  it("takes exactly the request bodies its spec allows", async () => {
    const aad = unsignedJwt({
      appid: APP_ID,
      oid: USER_ID,
      exp: Math.floor(Date.now() / 1000) + 3600,
    });
    const bodies: Record<string, unknown[]> = {
      "/identities": [
        {},
        { createTokenWithScopes: ["chat", "voip"] },
        { createTokenWithScopes: ["chat"], expiresInMinutes: 60 },
        { createTokenWithScopes: ["voip.join"] },
        { customId: "alice" },
      ],
      "/identities/{id}/:issueAccessToken": [
        { scopes: ["chat", "voip"] },
        { scopes: ["voip"], expiresInMinutes: 60 },
        { scopes: ["chat.join", "chat.join.limited", "voip.join"] },
      ],
      "/teamsUser/:exchangeAccessToken": [
        { token: aad, appId: APP_ID, userId: USER_ID },
        { token: aad },
      ],
    };
    const outcomes = new Set<boolean | undefined>();
    for (const [specPath, list] of Object.entries(bodies)) {
      for (const body of list) {
        const id = (
          (await send({ method: "POST", path: path("/identities") })).json as {
            identity: { id: string };
          }
        ).identity.id;
        const res = await send({
          method: "POST",
          path: path(specPath.replace("{id}", encodeURIComponent(id))),
          body: json(body),
        });
        const accepted = specAcceptsRequest(version, specPath, body);
        outcomes.add(accepted);
        if (accepted === undefined) {
          expectRefusal(res, 404, "NotFound");
        } else if (accepted) {
          expectSuccess(res, specPath === "/identities" ? 201 : 200);
          assertMatchesSpec(
            specPath === "/identities"
              ? "CommunicationIdentityAccessTokenResult"
              : "CommunicationIdentityAccessToken",
            res.json,
            version,
          );
        } else {
          expect(res.status, `${specPath} ${json(body)}: ${res.text}`).toBe(400);
          assertErrorShape(res.json);
          expect((res.json as { error: { code: string } }).error.code).toBe("ValidationError");
        }
      }
    }
    // The spec decided, not the list above: each version takes some of these bodies and refuses some.
    expect(outcomes.has(true) && outcomes.has(false)).toBe(true);
  });
});
