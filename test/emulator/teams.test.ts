import { generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Emulator } from "@acs-identity-gateway/emulator";
import { startTestEmulator } from "../helpers/emulator.js";
import { unsignedJwt } from "./jwt.js";
import { rawRequest, type RawResponse } from "./signing.js";
import { assertErrorShape, assertMatchesSpec } from "./spec.js";

/**
 * The Teams exchange: validation answers as recorded from the real service
 * (docs/acs-wire-facts.md), and ACS_EMULATOR_TEAMS_JWKS_URL, which makes the emulator check the
 * Entra token's signature and issuer.
 */
const APP_ID = "2f6a5b5e-1c55-4d8f-9f0d-3a3b6c9a7e11";
const USER_ID = "9c7d3f1a-7b6e-4f0b-8e2a-5d4c3b2a1f00";
const TENANT = "0d3b1c2a-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
const API = "api-version=2023-10-01";

const tenantKey = generateKeyPairSync("rsa", { modulusLength: 2048 });
const strangerKey = generateKeyPairSync("rsa", { modulusLength: 2048 });
let jwksStatus = 200;
let jwksServer: Server;
let jwksUrl: string;
let plain: Emulator;
let verifying: Emulator;

function entraToken(
  claims: Record<string, unknown>,
  key: KeyObject = tenantKey.privateKey,
  kid = "tenant-key-1",
): string {
  const part = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const input = `${part({ alg: "RS256", typ: "JWT", kid })}.${part(claims)}`;
  return `${input}.${sign("sha256", Buffer.from(input), key).toString("base64url")}`;
}

const teamsClaims = (over: Record<string, unknown> = {}) => ({
  aud: "https://graph.microsoft.com",
  iss: `https://sts.windows.net/${TENANT}/`,
  tid: TENANT,
  appid: APP_ID,
  oid: USER_ID,
  exp: Math.floor(Date.now() / 1000) + 3600,
  ...over,
});

const exchange = (emulator: Emulator, body: unknown) =>
  rawRequest(emulator.endpoint, emulator.accessKey, {
    method: "POST",
    path: `/teamsUser/:exchangeAccessToken?${API}`,
    body: JSON.stringify(body),
  });

function expectError(
  res: RawResponse,
  status: number,
  code: string,
  message: string,
  target?: string,
) {
  expect(res.status, res.text).toBe(status);
  assertErrorShape(res.json);
  expect(res.json).toEqual({
    error: { code, message, ...(target === undefined ? {} : { target }) },
  });
}

beforeAll(async () => {
  const jwk = { ...tenantKey.publicKey.export({ format: "jwk" }), kid: "tenant-key-1", use: "sig" };
  jwksServer = createServer((_req, res) => {
    res.writeHead(jwksStatus, { "content-type": "application/json" });
    res.end(JSON.stringify({ keys: [jwk] }));
  });
  await new Promise<void>((resolve) => jwksServer.listen(0, "127.0.0.1", resolve));
  jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/keys`;
  plain = await startTestEmulator();
  verifying = await startTestEmulator({ teamsJwksUrl: jwksUrl });
});

afterAll(async () => {
  await Promise.all([plain?.close(), verifying?.close()]);
  await new Promise<void>((resolve) => jwksServer.close(() => resolve()));
});

describe("validation, as recorded from the real service", () => {
  const aadExp = Math.floor(Date.now() / 1000) + 3600;
  const token = unsignedJwt(teamsClaims({ exp: aadExp }));

  it("names a missing AppId or UserId in PascalCase with the model-validation message", async () => {
    expectError(
      await exchange(plain, { token, appId: "", userId: USER_ID }),
      400,
      "ValidationError",
      "AppId: The AppId field is required.",
      "AppId",
    );
    expectError(
      await exchange(plain, { token, appId: APP_ID, userId: "" }),
      400,
      "ValidationError",
      "UserId: The UserId field is required.",
      "UserId",
    );
  });

  it("names a malformed appId or userId in camelCase", async () => {
    expectError(
      await exchange(plain, { token, appId: "not-a-guid", userId: USER_ID }),
      400,
      "ValidationError",
      "Provided AppId has invalid format.",
      "appId",
    );
    expectError(
      await exchange(plain, { token, appId: APP_ID, userId: "42" }),
      400,
      "ValidationError",
      "Provided UserId has invalid format.",
      "userId",
    );
  });

  it("answers an empty, unparsable or expired token with 401 InvalidAccessToken", async () => {
    for (const bad of [
      "",
      "abc",
      unsignedJwt(teamsClaims({ exp: Math.floor(Date.now() / 1000) - 1 })),
    ]) {
      expectError(
        await exchange(plain, { token: bad, appId: APP_ID, userId: USER_ID }),
        401,
        "InvalidAccessToken",
        "Provided access token is not valid.",
      );
    }
  });

  it("checks the token first: an invalid token with an empty or malformed userId or appId is 401", async () => {
    const expired = unsignedJwt(teamsClaims({ exp: Math.floor(Date.now() / 1000) - 1 }));
    for (const [bad, appId, userId] of [
      ["", APP_ID, ""],
      ["abc", APP_ID, ""],
      [expired, APP_ID, ""],
      [expired, "", USER_ID],
      ["abc", "not-a-guid", "42"],
    ]) {
      expectError(
        await exchange(plain, { token: bad, appId, userId }),
        401,
        "InvalidAccessToken",
        "Provided access token is not valid.",
      );
    }
    // With a JWKS, a badly signed token is just as invalid, whatever the ids.
    const forged = entraToken(teamsClaims(), strangerKey.privateKey);
    expectError(
      await exchange(verifying, { token: forged, appId: APP_ID, userId: "" }),
      401,
      "InvalidAccessToken",
      "Provided access token is not valid.",
    );
  });

  it("mints a Teams user's token with the documented claims, without a JWKS the signature unchecked", async () => {
    const res = await exchange(plain, { token, appId: APP_ID, userId: USER_ID });
    expect(res.status, res.text).toBe(200);
    assertMatchesSpec("CommunicationIdentityAccessToken", res.json);
    const claims = JSON.parse(
      Buffer.from((res.json as { token: string }).token.split(".")[1]!, "base64url").toString(),
    ) as Record<string, unknown>;
    expect(claims).toMatchObject({
      skypeid: `orgid:${USER_ID}`,
      scp: 1792,
      acsScope: "voip",
      exp: aadExp,
      resourceId: plain.resourceId,
    });
  });
});

describe("ACS_EMULATOR_TEAMS_JWKS_URL", () => {
  const good = () => entraToken(teamsClaims());

  it("accepts a token signed by a key of the JWKS and issued by the token's own tenant", async () => {
    expect(
      (await exchange(verifying, { token: good(), appId: APP_ID, userId: USER_ID })).status,
    ).toBe(200);
    const v2 = entraToken(teamsClaims({ iss: `https://login.microsoftonline.com/${TENANT}/v2.0` }));
    expect((await exchange(verifying, { token: v2, appId: APP_ID, userId: USER_ID })).status).toBe(
      200,
    );
  });

  it("refuses a forged signature, an unknown key, another issuer and an unsigned token", async () => {
    const forged = entraToken(teamsClaims(), strangerKey.privateKey);
    const unknownKid = entraToken(teamsClaims(), tenantKey.privateKey, "other-kid");
    const otherIssuer = entraToken(
      teamsClaims({ iss: "https://sts.windows.net/11111111-1111-4111-8111-111111111111/" }),
    );
    for (const token of [forged, unknownKid, otherIssuer, unsignedJwt(teamsClaims())]) {
      expectError(
        await exchange(verifying, { token, appId: APP_ID, userId: USER_ID }),
        401,
        "InvalidAccessToken",
        "Provided access token is not valid.",
      );
    }
  });

  it("refuses every token while the JWKS cannot be read, says so, and reads it once it is back", async () => {
    const warnings: { msg: string }[] = [];
    const emulator = await startTestEmulator({
      teamsJwksUrl: jwksUrl,
      logger: pino({ level: "warn" }, { write: (line: string) => warnings.push(JSON.parse(line)) }),
    });
    jwksStatus = 503;
    try {
      expect(
        (await exchange(emulator, { token: good(), appId: APP_ID, userId: USER_ID })).status,
      ).toBe(401);
      expect(warnings).toContainEqual(
        expect.objectContaining({ msg: "the emulator could not read the Teams JWKS" }),
      );
      jwksStatus = 200;
      expect(
        (await exchange(emulator, { token: good(), appId: APP_ID, userId: USER_ID })).status,
      ).toBe(200);
    } finally {
      jwksStatus = 200;
      await emulator.close();
    }
  });
});
