import { AzureCommunicationTokenCredential } from "@azure/communication-common";
import type { CommunicationIdentityClient, TokenScope } from "@azure/communication-identity";
import type { FullOperationResponse } from "@azure/core-client";
import type { RestError } from "@azure/core-rest-pipeline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Emulator } from "@acs-identity-gateway/emulator";
import { identityClient, startTestEmulator } from "../helpers/emulator.js";
import { refusal } from "./refusal.js";
import { assertErrorShape, assertMatchesSpec } from "./spec.js";

/**
 * The emulator driven only through the real @azure/communication-identity client (retries off).
 * Every raw answer the SDK receives is checked against the published spec's schemas (`observe`).
 */

const SCOPES: TokenScope[] = ["chat", "voip", "chat.join", "chat.join.limited", "voip.join"];
const OTHER_RESOURCE_USER = {
  communicationUserId:
    "8:acs:2dee53b4-368b-45b4-ab52-8493fb117652_00000005-14a2-493b-8a72-5a3a0d000081",
};

let emulator: Emulator;
let client: CommunicationIdentityClient;
const answers: { status: number; body: unknown }[] = [];

/** SDK operation options that record the raw answer and validate its body against the spec. */
function observe(): { onResponse: (raw: FullOperationResponse) => void } {
  return {
    onResponse(raw) {
      const body = raw.bodyAsText ? (JSON.parse(raw.bodyAsText) as unknown) : undefined;
      answers.push({ status: raw.status, body });
      const path = new URL(raw.request.url).pathname;
      if (raw.status >= 400) {
        assertErrorShape(body);
      } else if (raw.status === 201) {
        assertMatchesSpec("CommunicationIdentityAccessTokenResult", body);
      } else if (raw.status === 200) {
        assertMatchesSpec("CommunicationIdentityAccessToken", body);
      } else {
        expect(raw.status, path).toBe(204);
        expect(body, path).toBeUndefined();
      }
    },
  };
}

const lastAnswer = () => answers[answers.length - 1]!;

function claimsOf(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString("utf8")) as Record<
    string,
    unknown
  >;
}

/** An AAD-style access token (the emulator checks shape, expiry, appid and oid, not AAD's signature). */
function aadToken(claims: { appid: string; oid: string; exp: number }): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${part({ typ: "JWT", alg: "RS256", kid: "aad" })}.${part({ aud: "https://auth.msft.communication.azure.com", ...claims })}.${Buffer.from("not-verified").toString("base64url")}`;
}

beforeAll(async () => {
  emulator = await startTestEmulator();
  client = identityClient(emulator);
});

afterAll(async () => {
  await emulator.close();
});

describe("identities", () => {
  it("createUser answers 201 with an identity of the emulator's resource and no token", async () => {
    const user = await client.createUser(observe());
    expect(lastAnswer().status).toBe(201);
    expect(lastAnswer().body).toEqual({ identity: { id: user.communicationUserId } });
    expect(user.communicationUserId).toMatch(
      new RegExp(
        `^8:acs:${emulator.resourceId}_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`,
      ),
    );
  });

  it("createUserAndToken answers 201 with the identity and a 24-hour token by default", async () => {
    const before = Date.now();
    const result = await client.createUserAndToken(["chat", "voip"], observe());
    expect(lastAnswer().status).toBe(201);
    const claims = claimsOf(result.token);
    expect(claims.skypeid).toBe(result.user.communicationUserId.slice(2));
    expect(claims.acsScope).toBe("chat,voip");
    expect(Number(claims.exp) - Number(claims.iat)).toBe(1440 * 60);
    // The JWT's exp is the whole second of expiresOn, which keeps its sub-second part.
    expect(Math.floor(result.expiresOn.getTime() / 1000)).toBe(Number(claims.exp));
    expect(result.expiresOn.getTime()).toBeGreaterThanOrEqual(before - 1000 + 1440 * 60_000);
  });

  it("createUserAndToken honours tokenExpiresInMinutes and refuses 59 and 1441 like the real service", async () => {
    const result = await client.createUserAndToken(["voip"], {
      tokenExpiresInMinutes: 60,
      ...observe(),
    });
    const claims = claimsOf(result.token);
    expect(Number(claims.exp) - Number(claims.iat)).toBe(3600);
    for (const minutes of [59, 1441]) {
      const error = await refusal(
        client.createUserAndToken(["voip"], { tokenExpiresInMinutes: minutes, ...observe() }),
      );
      expect(error.statusCode).toBe(400);
      expect(error.code).toBe("ValidationError");
      expect(lastAnswer().body).toEqual({
        error: {
          code: "ValidationError",
          message: `ExpiresInMinutes value ${minutes} is invalid. Value must be within the [60, 1440] interval.`,
          target: "ExpiresInMinutes",
        },
      });
    }
  });

  it("deleteUser answers 204, and the deleted identity then answers 404 IdentityNotFound", async () => {
    const user = await client.createUser();
    await client.deleteUser(user, observe());
    expect(lastAnswer().status).toBe(204);
    for (const call of [
      () => client.getToken(user, ["chat"], observe()),
      () => client.revokeTokens(user, observe()),
      () => client.deleteUser(user, observe()),
    ]) {
      const error = await refusal(call());
      expect(error.statusCode).toBe(404);
      expect(error.code).toBe("IdentityNotFound");
    }
  });

  it("an id of this resource that was never created answers 404 IdentityNotFound", async () => {
    const user = {
      communicationUserId: `8:acs:${emulator.resourceId}_00000000-0000-0000-0000-000000000000`,
    };
    const error = await refusal(client.getToken(user, ["chat"], observe()));
    expect(error.statusCode).toBe(404);
    expect(error.code).toBe("IdentityNotFound");
  });

  it("an identity of another resource is refused with 401 IdentityNotOwned on issue, revoke and delete", async () => {
    for (const call of [
      () => client.getToken(OTHER_RESOURCE_USER, ["chat"], observe()),
      () => client.revokeTokens(OTHER_RESOURCE_USER, observe()),
      () => client.deleteUser(OTHER_RESOURCE_USER, observe()),
    ]) {
      const error = await refusal(call());
      expect(error.statusCode).toBe(401);
      expect(error.code).toBe("IdentityNotOwned");
      expect(lastAnswer().body).toEqual({
        error: {
          code: "IdentityNotOwned",
          message: "Provided identity doesn't belong to the resource.",
        },
      });
    }
  });

  it("a client built with a wrong access key is refused with 401 Denied", async () => {
    const wrong = identityClient(emulator, { accessKey: Buffer.alloc(64, 7).toString("base64") });
    const error = await refusal(wrong.createUser(observe()));
    expect(error.statusCode).toBe(401);
    expect(error.code).toBe("Denied");
    expect(emulator.counters.createIdentity).toBeGreaterThan(0);
  });
});

describe("tokens", () => {
  it("getToken issues a token for each scope alone and for all of them together", async () => {
    const user = await client.createUser();
    for (const scopes of [...SCOPES.map((s) => [s]), SCOPES]) {
      const token = await client.getToken(user, scopes, observe());
      expect(lastAnswer().status).toBe(200);
      const claims = claimsOf(token.token);
      expect(claims.acsScope).toBe(scopes.join(","));
      expect(claims.skypeid).toBe(user.communicationUserId.slice(2));
      expect(claims.scp).toBe(1792);
      expect(claims.resourceId).toBe(emulator.resourceId);
    }
  });

  it("getToken honours custom lifetimes of 60 and 1440 minutes", async () => {
    const user = await client.createUser();
    for (const minutes of [60, 1440]) {
      const token = await client.getToken(user, ["chat"], {
        tokenExpiresInMinutes: minutes,
        ...observe(),
      });
      const claims = claimsOf(token.token);
      expect(Number(claims.exp) - Number(claims.iat)).toBe(minutes * 60);
      expect(Math.floor(token.expiresOn.getTime() / 1000)).toBe(Number(claims.exp));
      // 7 fractional digits and +00:00, as the real service writes it.
      expect((lastAnswer().body as { expiresOn: string }).expiresOn).toMatch(
        /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}\+00:00$/,
      );
    }
  });

  it("getToken refuses 59 and 1441 minutes with ValidationError on ExpiresInMinutes", async () => {
    const user = await client.createUser();
    for (const minutes of [59, 1441]) {
      const error = await refusal(
        client.getToken(user, ["chat"], { tokenExpiresInMinutes: minutes, ...observe() }),
      );
      expect(error.statusCode).toBe(400);
      expect(error.code).toBe("ValidationError");
      expect((lastAnswer().body as { error: { target: string } }).error.target).toBe(
        "ExpiresInMinutes",
      );
    }
  });

  it("getToken without scopes is refused with ValidationError on scopes", async () => {
    const user = await client.createUser();
    const error = await refusal(client.getToken(user, [], observe()));
    expect(error.statusCode).toBe(400);
    expect(lastAnswer().body).toEqual({
      error: {
        code: "ValidationError",
        message: "Invalid scopes - Scopes field is required.",
        target: "scopes",
      },
    });
  });

  it("revokeTokens answers 204 and the identity can still be issued new tokens", async () => {
    const user = await client.createUser();
    await client.revokeTokens(user, observe());
    expect(lastAnswer().status).toBe(204);
    await client.revokeTokens(user, observe());
    const token = await client.getToken(user, ["voip"], observe());
    expect(token.token.split(".")).toHaveLength(3);
  });

  it("AzureCommunicationTokenCredential accepts an emulator token and reads its expiry", async () => {
    const { token, expiresOn } = await client.createUserAndToken(["chat"], {
      tokenExpiresInMinutes: 120,
    });
    const fromString = new AzureCommunicationTokenCredential(token);
    // The credential reads only the JWT's exp: the whole second of expiresOn.
    const wholeSecond = Math.floor(expiresOn.getTime() / 1000) * 1000;
    expect((await fromString.getToken()).expiresOnTimestamp).toBe(wholeSecond);
    const withRefresher = new AzureCommunicationTokenCredential({
      token,
      tokenRefresher: () => Promise.reject(new Error("a fresh token must not need a refresh")),
    });
    const read = await withRefresher.getToken();
    expect(read.token).toBe(token);
    expect(read.expiresOnTimestamp).toBe(wholeSecond);
    fromString.dispose();
    withRefresher.dispose();
  });
});

describe("Teams user token exchange", () => {
  const appId = "2c3e1e83-8fd7-4615-ad2b-b8c1229845ac";
  const userId = "32c0a5db-05ec-78ea-51ab-3f06b329397e";
  const inOneHour = () => Math.floor(Date.now() / 1000) + 3600;

  it("getTokenForTeamsUser mints a token that expires with the AAD token", async () => {
    const exp = inOneHour();
    const result = await client.getTokenForTeamsUser({
      teamsUserAadToken: aadToken({ appid: appId, oid: userId, exp }),
      clientId: appId,
      userObjectId: userId,
      ...observe(),
    });
    expect(lastAnswer().status).toBe(200);
    expect(result.expiresOn.getTime()).toBe(exp * 1000);
    expect(claimsOf(result.token).exp).toBe(exp);
  });

  it("a Teams user token lives at most 24 hours even when the AAD token lives longer", async () => {
    const exp = Math.floor(Date.now() / 1000) + 48 * 3600;
    const result = await client.getTokenForTeamsUser({
      teamsUserAadToken: aadToken({ appid: appId, oid: userId, exp }),
      clientId: appId,
      userObjectId: userId,
    });
    const claims = claimsOf(result.token);
    expect(Number(claims.exp) - Number(claims.iat)).toBe(24 * 3600);
  });

  it("an expired, unparsable or empty AAD token is refused with 401 InvalidAccessToken", async () => {
    for (const teamsUserAadToken of [
      aadToken({ appid: appId, oid: userId, exp: Math.floor(Date.now() / 1000) - 60 }),
      "not-a-jwt",
      "",
    ]) {
      const error = await refusal(
        client.getTokenForTeamsUser({
          teamsUserAadToken,
          clientId: appId,
          userObjectId: userId,
          ...observe(),
        }),
      );
      expect(error.statusCode).toBe(401);
      expect(lastAnswer().body).toEqual({
        error: { code: "InvalidAccessToken", message: "Provided access token is not valid." },
      });
    }
  });

  it("malformed, empty or mismatching appId and userId are refused with 400 ValidationError", async () => {
    const token = aadToken({ appid: appId, oid: userId, exp: inOneHour() });
    const cases: [string, string, string][] = [
      ["", userId, "AppId"],
      ["invalid", userId, "appId"],
      [userId, userId, "appId"], // a well-formed GUID that is not the token's appid
      [appId, "invalid", "userId"],
      [appId, appId, "userId"],
    ];
    for (const [clientId, userObjectId, target] of cases) {
      const error = await refusal(
        client.getTokenForTeamsUser({
          teamsUserAadToken: token,
          clientId,
          userObjectId,
          ...observe(),
        }),
      );
      expect(error.statusCode).toBe(400);
      expect(error.code).toBe("ValidationError");
      expect((lastAnswer().body as { error: { target: string } }).error.target).toBe(target);
    }
  });
});

describe("robustness and test hooks", () => {
  it("concurrent issue, revoke and delete calls on one identity all get well-formed answers", async () => {
    const user = await client.createUser();
    const calls = Array.from({ length: 30 }, (_, i) => {
      const op =
        i === 20
          ? client.deleteUser(user, observe())
          : i % 3 === 0
            ? client.revokeTokens(user, observe())
            : client.getToken(user, ["chat"], observe());
      return op.then(
        (): number => 0,
        (e: RestError) => e.statusCode ?? -1,
      );
    });
    const statuses = await Promise.all(calls);
    expect(statuses.every((s) => s === 0 || s === 404)).toBe(true);
    const error = await refusal(client.getToken(user, ["chat"]));
    expect(error.statusCode).toBe(404);
  });

  it("counters count successful answers per operation, and hooks.beforeRespond can hold an answer back", async () => {
    const before = { ...emulator.counters };
    const user = await client.createUser();
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let reached!: (identityId: string) => void;
    // Resolves when the issue answer reaches the hook: the event itself, not a guessed delay.
    const atHook = new Promise<string>((resolve) => (reached = resolve));
    emulator.hooks.beforeRespond = async (operation, info) => {
      if (operation === "issueAccessToken") {
        reached(info.identityId ?? "");
        await held;
      }
    };
    try {
      const issuing = client.getToken(user, ["chat"]);
      expect(await atHook).toBe(user.communicationUserId);
      // The revoke overtakes the held issue answer.
      await client.revokeTokens(user);
      release();
      await issuing;
    } finally {
      emulator.hooks.beforeRespond = undefined;
    }
    await refusal(client.getToken(OTHER_RESOURCE_USER, ["chat"]));
    expect(emulator.counters.createIdentity - before.createIdentity).toBe(1);
    expect(emulator.counters.issueAccessToken - before.issueAccessToken).toBe(1);
    expect(emulator.counters.revokeAccessTokens - before.revokeAccessTokens).toBe(1);
  });
});
