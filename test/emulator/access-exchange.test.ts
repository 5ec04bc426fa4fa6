import { generateKeyPairSync } from "node:crypto";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  EMULATOR_CLIENT_ID,
  EMULATOR_TENANT_ID,
  EMULATOR_USER_OBJECT_ID,
  type Emulator,
} from "@acs-identity-gateway/emulator";
import { createTestCa, startTestEmulator, type TestCa } from "../helpers/emulator.js";
import {
  appToken,
  claimsOf,
  expectCredentialExchanges,
  forgeToken,
  tlsRequest,
  userToken,
  type TlsResponse,
} from "./entra-helpers.js";
import { unsignedJwt } from "./jwt.js";
import { signedHeaders } from "./signing.js";
import { assertErrorShape, assertMatchesSpec, type SpecDefinition } from "./spec.js";

/**
 * The two token exchanges `@azure/communication-common` 2.4's AzureCommunicationTokenCredential
 * calls with Entra options: `/access/entra/:exchangeAccessToken` (2025-03-02-preview, an Entra
 * user) and `/access/teamsExtension/:exchangeAccessToken` (2025-06-30 and the preview, a Teams
 * Phone extension user), with the Entra token checked against the emulator's own authority, and the
 * assignments that grant them. Answers are validated against the published specs.
 */
const PREVIEW = "2025-03-02-preview";
const STABLE = "2025-06-30";
const VOIP = "https://communication.azure.com/clients/VoIP";
const TEAMS_EXTENSION = "https://auth.msft.communication.azure.com/TeamsExtension.ManageCalls";
const FOREIGN = "0b1d0000-0000-4000-8000-00000000beef";
const signingKeyPem = generateKeyPairSync("rsa", { modulusLength: 2048 })
  .privateKey.export({ type: "pkcs8", format: "pem" })
  .toString();

let ca: TestCa;
let emulator: Emulator;
/** The emulator's warnings, as written (pino writes each line synchronously). */
const warnings: { msg: string; failure?: string }[] = [];

beforeAll(async () => {
  ca = createTestCa();
  emulator = await startTestEmulator({
    tls: { cert: ca.cert, key: ca.key },
    entra: "on",
    signingKeyPem,
    logger: pino({ level: "warn" }, { write: (line: string) => warnings.push(JSON.parse(line)) }),
  });
});

afterAll(async () => {
  await emulator?.close();
  ca?.remove();
});

type Kind = "entra" | "teamsExtension";

/**
 * Calls an exchange as communication-common does: `${resourceEndpoint}/access/...`. With `slash`,
 * the endpoint keeps its trailing `/` (as the emulator prints it), so the path starts `//access`.
 */
function exchange(
  kind: Kind,
  token: string | undefined,
  opts: { version?: string; body?: string; slash?: boolean } = {},
) {
  const version = opts.version ?? (kind === "entra" ? PREVIEW : STABLE);
  const base = opts.slash ? emulator.endpoint : emulator.endpoint.replace(/\/$/, "");
  return tlsRequest(`${base}/access/${kind}/:exchangeAccessToken?api-version=${version}`, ca.ca, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
    },
    body: opts.body ?? "{}",
  });
}

/** A signed ACS call over TLS (HMAC, as the SDK signs). */
function signed(method: string, path: string, body?: unknown): Promise<TlsResponse> {
  const text = body === undefined ? undefined : JSON.stringify(body);
  const headers = signedHeaders(emulator.endpoint, emulator.accessKey, {
    method,
    path,
    body: text,
  });
  return tlsRequest(new URL(path, emulator.endpoint), ca.ca, { method, headers, body: text });
}

function expectRefused(res: TlsResponse, status: number, code: string) {
  expect(res.status, res.text).toBe(status);
  assertErrorShape(res.json);
  expect(res.json.error.code).toBe(code);
}

function expectExchanged(res: TlsResponse, kind: Kind, version: string) {
  expect(res.status, res.text).toBe(200);
  assertMatchesSpec("CommunicationIdentityAccessTokenResult", res.json, version);
  const infix = kind === "entra" ? "wf_" : "";
  expect(res.json.identity.id).toBe(
    `8:acs:${emulator.resourceId}_${infix}${EMULATOR_TENANT_ID}_${EMULATOR_USER_OBJECT_ID}`,
  );
  const claims = claimsOf(res.json.accessToken.token);
  expect(claims.skypeid).toBe(res.json.identity.id.slice(2));
  expect(Math.floor(Date.parse(res.json.accessToken.expiresOn) / 1000)).toBe(claims.exp);
  return claims;
}

describe("POST /access/entra/:exchangeAccessToken", () => {
  it("exchanges the test user's token for an ACS token of the user's own, stable identity", async () => {
    const before = emulator.counters.exchangeEntraAccessToken;
    const entraToken = await userToken(emulator, ca.ca, VOIP);
    const first = await exchange("entra", entraToken);
    const claims = expectExchanged(first, "entra", PREVIEW);
    expect(claims).toMatchObject({ acsScope: "voip", resourceId: emulator.resourceId, scp: 1792 });
    // The ACS token lives as long as the Entra token.
    expect(claims.exp).toBe(claimsOf(entraToken).exp);

    // Another token of the same user (`.default`: VoIP and Chat) gets the same identity.
    const second = await exchange(
      "entra",
      await userToken(emulator, ca.ca, "https://communication.azure.com/clients/.default"),
    );
    expectExchanged(second, "entra", PREVIEW);
    expect(claimsOf(second.json.accessToken.token).acsScope).toBe("voip,chat");
    expect(emulator.counters.exchangeEntraAccessToken).toBe(before + 2);

    // The emulator's introspection knows the token (the identity is derived, never stored).
    const state = await signed("POST", "/emulator/introspect", {
      token: first.json.accessToken.token,
    });
    expect(state.json).toMatchObject({ active: true });
  });

  it("answers at //access too: communication-common joins an endpoint ending in / that way", async () => {
    expectExchanged(
      await exchange("entra", await userToken(emulator, ca.ca), { slash: true }),
      "entra",
      PREVIEW,
    );
  });

  it("refuses every token its authority would not vouch for with 401 InvalidAccessToken", async () => {
    const good = await userToken(emulator, ca.ca, VOIP);
    const claims = claimsOf(good);
    const now = Math.floor(Date.now() / 1000);
    const forged = (changes: Record<string, unknown>) =>
      forgeToken(good, { ...claims, ...changes }, signingKeyPem);
    const otherKey = generateKeyPairSync("rsa", { modulusLength: 2048 })
      .privateKey.export({ type: "pkcs8", format: "pem" })
      .toString();
    // The unchanged claims, re-signed: accepted (so each variant below fails on its one change).
    expectExchanged(await exchange("entra", forged({})), "entra", PREVIEW);
    // Each with the reason the emulator logs (the caller sees only the 401): the checks run in
    // this order, so a token wrong in two ways names the first.
    const refused: [string, string | undefined, string][] = [
      ["no token", undefined, "no-token"],
      ["not a JWT", "not-a-jwt", "malformed-token"],
      ["another key", forgeToken(good, claims, otherKey), "bad-signature"],
      ["expired", forged({ iat: now - 7200, nbf: now - 7200, exp: now - 1 }), "expired"],
      ["not yet valid", forged({ nbf: now + 600 }), "not-yet-valid"],
      ["another tenant", forged({ tid: FOREIGN }), "wrong-tenant"],
      [
        "another tenant's issuer",
        forged({ tid: FOREIGN, iss: `${emulator.entraAuthority!.authorityHost}/${FOREIGN}/v2.0` }),
        "wrong-tenant",
      ],
      [
        "Microsoft's issuer",
        forged({ iss: `https://login.microsoftonline.com/${EMULATOR_TENANT_ID}/v2.0` }),
        "wrong-issuer",
      ],
      [
        "expired, for another audience",
        forged({ aud: "https://communication.azure.com", exp: now - 1 }),
        "expired",
      ],
      ["the ACS audience", forged({ aud: "https://communication.azure.com" }), "wrong-audience"],
      ["no delegated scope", forged({ scp: undefined }), "no-scope"],
      ["another permission only", forged({ scp: "Teams.ManageCalls" }), "no-scope"],
      [
        "an application's token",
        await appToken(emulator, ca.ca, "https://communication.azure.com/clients/.default"),
        "no-scope",
      ],
      [
        "a Teams Phone extension token",
        await userToken(emulator, ca.ca, TEAMS_EXTENSION),
        "wrong-audience",
      ],
    ];
    for (const [label, token, failure] of refused) {
      warnings.length = 0;
      expectRefused(await exchange("entra", token), 401, "InvalidAccessToken");
      expect(warnings, label).toEqual([
        expect.objectContaining({ msg: "emulator refused an Entra token", failure }),
      ]);
    }
    const res = await exchange("entra", "not-a-jwt");
    expect(res.json.error.message).toBe("Provided access token is not valid.");
    // An HMAC-signed call is no user at all.
    const hmac = await signed(
      "POST",
      `/access/entra/:exchangeAccessToken?api-version=${PREVIEW}`,
      {},
    );
    expectRefused(hmac, 401, "InvalidAccessToken");
  });

  it("refuses a body that is not a JSON object, and answers only at 2025-03-02-preview", async () => {
    const token = await userToken(emulator, ca.ca);
    const notJson = await exchange("entra", token, { body: "" });
    expectRefused(notJson, 400, "ValidationError");
    expect(notJson.json.error.target).toBe("body");
    for (const version of [STABLE, "2025-04-01-preview", "2023-10-01"]) {
      expectRefused(await exchange("entra", token, { version }), 404, "NotFound");
    }
  });
});

describe("POST /access/teamsExtension/:exchangeAccessToken", () => {
  it("exchanges a Teams Phone extension user's token at 2025-06-30 and at the preview", async () => {
    const entraToken = await userToken(emulator, ca.ca, TEAMS_EXTENSION);
    for (const version of [STABLE, PREVIEW]) {
      const claims = expectExchanged(
        await exchange("teamsExtension", entraToken, { version }),
        "teamsExtension",
        version,
      );
      expect(claims.acsScope).toBe("voip");
      expect(claims.exp).toBe(claimsOf(entraToken).exp);
    }
  });

  it("wants TeamsExtension.ManageCalls for auth.msft.communication.azure.com, and is absent before 2025", async () => {
    const teamsCalls = await userToken(
      emulator,
      ca.ca,
      "https://auth.msft.communication.azure.com/Teams.ManageCalls",
    );
    expectRefused(await exchange("teamsExtension", teamsCalls), 401, "InvalidAccessToken");
    expectRefused(
      await exchange("teamsExtension", await userToken(emulator, ca.ca, VOIP)),
      401,
      "InvalidAccessToken",
    );
    const good = await userToken(emulator, ca.ca, TEAMS_EXTENSION);
    for (const version of ["2023-10-01", "2025-04-01-preview"]) {
      expectRefused(await exchange("teamsExtension", good, { version }), 404, "NotFound");
    }
  });
});

describe("the assignments that grant the exchanges", () => {
  const entraPath = (objectId = "") =>
    `/access/entra/assignments${objectId ? `/${objectId}` : ""}?api-version=${PREVIEW}`;
  const teamsPath = (objectId: string, tenantId = EMULATOR_TENANT_ID, version = STABLE) =>
    `/access/teamsExtension/tenants/${tenantId}/assignments/${objectId}?api-version=${version}`;
  const expectSpec = (
    definition: SpecDefinition,
    res: TlsResponse,
    status: number,
    version = PREVIEW,
  ) => {
    expect(res.status, res.text).toBe(status);
    assertMatchesSpec(definition, res.json, version);
  };

  it("Entra: the test tenant is assigned at start; without an assignment the exchange is 403", async () => {
    const list = await signed("GET", entraPath());
    expectSpec("EntraAssignmentsResponse", list, 200);
    const tenantAssignment = {
      objectId: EMULATOR_TENANT_ID,
      tenantId: EMULATOR_TENANT_ID,
      principalType: "tenant",
      clientIds: [EMULATOR_CLIENT_ID],
    };
    expect(list.json.value).toEqual([tenantAssignment]);
    const token = await userToken(emulator, ca.ca);
    try {
      expect((await signed("DELETE", entraPath(EMULATOR_TENANT_ID))).status).toBe(204);
      expectRefused(await exchange("entra", token), 403, "Forbidden");
      expectRefused(await signed("GET", entraPath(EMULATOR_TENANT_ID)), 404, "NotFound");

      // The user alone, but for another application: still 403.
      const other = "6f1e0000-0000-4000-8000-0000000000aa";
      const userAssignment = {
        tenantId: EMULATOR_TENANT_ID,
        principalType: "user",
        clientIds: [other],
      };
      const created = await signed("PUT", entraPath(EMULATOR_USER_OBJECT_ID), userAssignment);
      expectSpec("EntraAssignment", created, 201);
      expect(created.json).toEqual({ objectId: EMULATOR_USER_OBJECT_ID, ...userAssignment });
      expectRefused(await exchange("entra", token), 403, "Forbidden");
      // ... and for the test application: granted.
      const replaced = await signed("PUT", entraPath(EMULATOR_USER_OBJECT_ID), {
        ...userAssignment,
        clientIds: [other, EMULATOR_CLIENT_ID],
      });
      expectSpec("EntraAssignment", replaced, 200);
      expectExchanged(await exchange("entra", token), "entra", PREVIEW);
      expectSpec("EntraAssignment", await signed("GET", entraPath(EMULATOR_USER_OBJECT_ID)), 200);

      const invalid = await signed("PUT", entraPath(EMULATOR_USER_OBJECT_ID), {
        ...userAssignment,
        principalType: "robot",
      });
      expectRefused(invalid, 400, "ValidationError");
      expect(invalid.json.error.target).toBe("principalType");
    } finally {
      // Bulk (merge-patch): the tenant's assignment back, the user's removed.
      const { objectId: _, ...tenantBody } = tenantAssignment;
      const patched = await signed("PATCH", entraPath(), {
        [EMULATOR_TENANT_ID]: tenantBody,
        [EMULATOR_USER_OBJECT_ID]: null,
      });
      expectSpec("EntraAssignmentsResponse", patched, 200);
      expect(patched.json.value).toEqual([tenantAssignment]);
    }
    expect((await signed("GET", entraPath())).json.value).toEqual([tenantAssignment]);
    expectExchanged(await exchange("entra", token), "entra", PREVIEW);
  });

  it("Teams Phone extension: the test user is assigned at start; without it the exchange is 403", async () => {
    const got = await signed("GET", teamsPath(EMULATOR_USER_OBJECT_ID));
    expectSpec("TeamsExtensionAssignmentResponse", got, 200, STABLE);
    expect(got.json).toEqual({
      objectId: EMULATOR_USER_OBJECT_ID,
      tenantId: EMULATOR_TENANT_ID,
      principalType: "user",
      clientIds: [EMULATOR_CLIENT_ID],
    });
    const token = await userToken(emulator, ca.ca, TEAMS_EXTENSION);
    expect((await signed("DELETE", teamsPath(EMULATOR_USER_OBJECT_ID))).status).toBe(204);
    expectRefused(await exchange("teamsExtension", token), 403, "Forbidden");
    expectRefused(await signed("DELETE", teamsPath(EMULATOR_USER_OBJECT_ID)), 404, "NotFound");
    // Without clientIds: any application of the user's.
    const put = await signed(
      "PUT",
      teamsPath(EMULATOR_USER_OBJECT_ID, EMULATOR_TENANT_ID, PREVIEW),
      {
        principalType: "user",
      },
    );
    expectSpec("TeamsExtensionAssignmentResponse", put, 201);
    expectExchanged(await exchange("teamsExtension", token), "teamsExtension", STABLE);
    expect(
      (
        await signed("PUT", teamsPath(EMULATOR_USER_OBJECT_ID), {
          principalType: "user",
          clientIds: [EMULATOR_CLIENT_ID],
        })
      ).status,
    ).toBe(200);
    expectRefused(await signed("GET", teamsPath("not-a-guid")), 400, "ValidationError");
  });

  it("are signed ACS calls (HMAC or the resource's bearer token), and absent where the version lacks them", async () => {
    const unsigned = await tlsRequest(new URL(entraPath(), emulator.endpoint), ca.ca);
    expectRefused(unsigned, 401, "Denied");
    const bearer = await tlsRequest(new URL(entraPath(), emulator.endpoint), ca.ca, {
      headers: { authorization: `Bearer ${await appToken(emulator, ca.ca)}` },
    });
    expect(bearer.status, bearer.text).toBe(200);
    expectRefused(
      await signed("GET", `/access/entra/assignments?api-version=${STABLE}`),
      404,
      "NotFound",
    );
    expectRefused(
      await signed("GET", teamsPath(EMULATOR_USER_OBJECT_ID, EMULATOR_TENANT_ID, "2023-10-01")),
      404,
      "NotFound",
    );
    const wrongMethod = await signed("POST", entraPath(EMULATOR_USER_OBJECT_ID), {});
    expectRefused(wrongMethod, 405, "MethodNotAllowed");
    expect(wrongMethod.headers.allow).toBe("GET, PUT, DELETE");
  });
});

describe(
  "AzureCommunicationTokenCredential with Entra options (child process)",
  { timeout: 120_000 },
  () => {
    it("gets ACS tokens from both exchanges with UsernamePasswordCredential, and surfaces refusals", async () => {
      const before = { ...emulator.counters };
      await expectCredentialExchanges(emulator, ca, signingKeyPem);
      expect(emulator.counters.exchangeEntraAccessToken - before.exchangeEntraAccessToken).toBe(2);
      expect(
        emulator.counters.exchangeTeamsExtensionAccessToken -
          before.exchangeTeamsExtensionAccessToken,
      ).toBe(1);
    });
  },
);

describe("with ACS_EMULATOR_ENTRA=any", () => {
  it("takes any unexpired token of the right audience and delegated scope, signature unchecked", async () => {
    const any = await startTestEmulator({ entra: "any", signingKeyPem });
    try {
      const post = (token: string) =>
        fetch(new URL(`/access/entra/:exchangeAccessToken?api-version=${PREVIEW}`, any.endpoint), {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: "{}",
        });
      const claims = {
        aud: "https://communication.azure.com/clients",
        scp: "VoIP",
        tid: FOREIGN,
        oid: "0b1d0000-0000-4000-8000-0000000000a1",
        azp: EMULATOR_CLIENT_ID,
        exp: Math.floor(Date.now() / 1000) + 600,
      };
      // Another tenant: it needs an assignment first (HMAC over plain http).
      const assignment = JSON.stringify({
        tenantId: FOREIGN,
        principalType: "tenant",
        clientIds: [EMULATOR_CLIENT_ID],
      });
      const path = `/access/entra/assignments/${FOREIGN}?api-version=${PREVIEW}`;
      const put = await fetch(new URL(path, any.endpoint), {
        method: "PUT",
        headers: signedHeaders(any.endpoint, any.accessKey, {
          method: "PUT",
          path,
          body: assignment,
        }),
        body: assignment,
      });
      expect(put.status).toBe(201);
      const accepted = await post(unsignedJwt(claims));
      expect(accepted.status).toBe(200);
      expect(((await accepted.json()) as { identity: { id: string } }).identity.id).toBe(
        `8:acs:${any.resourceId}_wf_${FOREIGN}_${claims.oid}`,
      );
      expect((await post(unsignedJwt({ ...claims, scp: undefined }))).status).toBe(401);
      expect((await post(unsignedJwt({ ...claims, exp: claims.exp - 1200 }))).status).toBe(401);
    } finally {
      await any.close();
    }
  });
});
