import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EMULATOR_TENANT_ID, type Emulator } from "@acs-identity-gateway/emulator";
import { identityClient, startTestEmulator } from "../helpers/emulator.js";
import { unsignedJwt } from "./jwt.js";
import { rawRequest, type RawResponse } from "./signing.js";
import { assertErrorShape } from "./spec.js";

/**
 * Entra ID on the emulator, through raw requests (the SDK sends bearer tokens only over TLS; the
 * TLS path with the real SDK is in js-sdk.test.ts). Modes: off (the default), on (its own
 * managed-identity tokens), any (any unexpired JWT for ACS, signature unchecked).
 */
const AUDIENCE = "https://communication.azure.com";
const API = "api-version=2023-10-01";
const start = Date.now();
let clock = start;
const emulators: Emulator[] = [];

async function emulatorWith(entra: "off" | "on" | "any"): Promise<Emulator> {
  const emulator = await startTestEmulator({ entra, now: () => clock });
  emulators.push(emulator);
  return emulator;
}

afterAll(async () => {
  await Promise.all(emulators.map((e) => e.close()));
});

const bearerCreate = (emulator: Emulator, token: string) =>
  rawRequest(emulator.endpoint, emulator.accessKey, {
    method: "POST",
    path: `/identities?${API}`,
    sign: { authorization: `Bearer ${token}` },
  });

function expectDenied(res: RawResponse) {
  expect(res.status, res.text).toBe(401);
  assertErrorShape(res.json);
  expect((res.json as { error: { code: string } }).error.code).toBe("Denied");
}

async function managedIdentityToken(
  emulator: Emulator,
  opts: { header?: string; resource?: string; apiVersion?: string } = {},
) {
  const url = new URL(emulator.managedIdentity!.endpoint);
  url.searchParams.set("resource", opts.resource ?? AUDIENCE);
  url.searchParams.set("api-version", opts.apiVersion ?? "2019-08-01");
  const res = await fetch(url, {
    headers: { "X-IDENTITY-HEADER": opts.header ?? emulator.managedIdentity!.header },
  });
  return { status: res.status, body: (await res.json()) as Record<string, string> };
}

describe("ACS_EMULATOR_ENTRA=off (default)", () => {
  let emulator: Emulator;
  beforeAll(async () => {
    emulator = await emulatorWith("off");
  });

  it("refuses every bearer token with 401 Denied and has no managed-identity endpoint", async () => {
    expect(emulator.managedIdentity).toBeUndefined();
    expectDenied(
      await bearerCreate(emulator, unsignedJwt({ aud: AUDIENCE, exp: clock / 1000 + 600 })),
    );
    const res = await fetch(
      new URL("/msi/token?resource=x&api-version=2019-08-01", emulator.endpoint),
    );
    expect(res.status).toBe(404);
  });
});

describe("ACS_EMULATOR_ENTRA=on", () => {
  let emulator: Emulator;
  beforeAll(async () => {
    emulator = await emulatorWith("on");
  });

  it("mints App Service managed-identity tokens for ACS that the operations accept", async () => {
    const { status, body } = await managedIdentityToken(emulator);
    expect(status).toBe(200);
    expect(body).toMatchObject({ token_type: "Bearer", resource: AUDIENCE });
    expect(Number(body.expires_on)).toBe(Math.floor(clock / 1000) + 3600);
    const claims = JSON.parse(
      Buffer.from(body.access_token!.split(".")[1]!, "base64url").toString(),
    ) as Record<string, unknown>;
    expect(claims).toMatchObject({ aud: AUDIENCE, tid: EMULATOR_TENANT_ID, idtyp: "app" });

    const before = emulator.counters.createIdentity;
    const created = await bearerCreate(emulator, body.access_token!);
    expect(created.status, created.text).toBe(201);
    expect(emulator.counters.createIdentity).toBe(before + 1);
  });

  it("accepts `/.default` scopes as the resource, and refuses other resources, versions and secrets", async () => {
    expect(
      (await managedIdentityToken(emulator, { resource: `${AUDIENCE}/.default` })).status,
    ).toBe(200);
    expect(
      (await managedIdentityToken(emulator, { resource: "https://vault.azure.net" })).status,
    ).toBe(400);
    expect((await managedIdentityToken(emulator, { apiVersion: "2017-09-01" })).status).toBe(400);
    expect((await managedIdentityToken(emulator, { header: "guess" })).status).toBe(401);
  });

  it("refuses an expired managed-identity token, and tokens it did not mint", async () => {
    const { body } = await managedIdentityToken(emulator);
    const saved = clock;
    try {
      clock = saved + 3600 * 1000;
      expectDenied(await bearerCreate(emulator, body.access_token!));
    } finally {
      clock = saved;
    }
    // Right audience, unexpired, but not signed by the emulator.
    expectDenied(
      await bearerCreate(emulator, unsignedJwt({ aud: AUDIENCE, exp: clock / 1000 + 600 })),
    );
    // Signed by the emulator, but an ACS user token rather than a managed-identity one.
    const { token } = await identityClient(emulator).createUserAndToken(["chat"]);
    expectDenied(await bearerCreate(emulator, token));
    expectDenied(await bearerCreate(emulator, "not-a-jwt"));
  });
});

describe("ACS_EMULATOR_ENTRA=any", () => {
  let emulator: Emulator;
  beforeAll(async () => {
    emulator = await emulatorWith("any");
  });

  it("accepts any unexpired JWT whose audience is ACS, with or without the trailing slash", async () => {
    const exp = Math.floor(clock / 1000) + 600;
    expect((await bearerCreate(emulator, unsignedJwt({ aud: AUDIENCE, exp }))).status).toBe(201);
    expect((await bearerCreate(emulator, unsignedJwt({ aud: `${AUDIENCE}/`, exp }))).status).toBe(
      201,
    );
  });

  it("refuses a wrong audience, an expired or exp-less token, and a malformed one with 401", async () => {
    const exp = Math.floor(clock / 1000) + 600;
    expectDenied(
      await bearerCreate(emulator, unsignedJwt({ aud: "https://management.azure.com", exp })),
    );
    expectDenied(
      await bearerCreate(emulator, unsignedJwt({ aud: AUDIENCE, exp: Math.floor(clock / 1000) })),
    );
    expectDenied(await bearerCreate(emulator, unsignedJwt({ aud: AUDIENCE })));
    expectDenied(await bearerCreate(emulator, "a.b"));
    expectDenied(await bearerCreate(emulator, ""));
  });

  it("still accepts the connection string's HMAC", async () => {
    await expect(identityClient(emulator).createUser()).resolves.toBeDefined();
  });

  it("authenticates the emulator's own listing and reset as the ACS calls", async () => {
    const own = (method: string, path: string, token: string) =>
      rawRequest(emulator.endpoint, emulator.accessKey, {
        method,
        path,
        sign: { authorization: `Bearer ${token}` },
      });
    const good = unsignedJwt({ aud: AUDIENCE, exp: Math.floor(clock / 1000) + 600 });
    const wrong = unsignedJwt({
      aud: "https://management.azure.com",
      exp: Math.floor(clock / 1000) + 600,
    });
    expect((await own("GET", "/emulator/identities", good)).status).toBe(200);
    expectDenied(await own("GET", "/emulator/identities", wrong));
    expectDenied(await own("POST", "/emulator/reset", wrong));
    expect((await own("POST", "/emulator/reset", good)).status).toBe(204);
  });
});
