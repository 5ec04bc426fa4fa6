import { createHash, createPublicKey, generateKeyPairSync, sign } from "node:crypto";
import type { CommunicationUserIdentifier } from "@azure/communication-common";
import type { CommunicationIdentityClient } from "@azure/communication-identity";
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Emulator } from "@acs-identity-gateway/emulator";
import { identityClient, startTestEmulator } from "../helpers/emulator.js";
import { rawRequest } from "./signing.js";
import { assertErrorShape } from "./spec.js";

/** Tokens as JWTs (JWKS), and what introspection says about them as the emulator's clock moves. */

let clock = Date.now();
let emulator: Emulator;
let client: CommunicationIdentityClient;

interface Introspection {
  active: boolean;
  reason?: string;
  claims?: Record<string, unknown>;
}

async function introspect(token: string, target: Emulator = emulator): Promise<Introspection> {
  const res = await rawRequest(target.endpoint, target.accessKey, {
    method: "POST",
    path: "/emulator/introspect",
    body: JSON.stringify({ token }),
  });
  expect(res.status, res.text).toBe(200);
  return res.json as Introspection;
}

async function jwks(target: Emulator = emulator): Promise<JSONWebKeySet> {
  // No signature: a JWKS is public, and verifiers fetch it with plain GETs.
  const res = await fetch(new URL(".well-known/jwks.json", target.endpoint));
  expect(res.status).toBe(200);
  return (await res.json()) as JSONWebKeySet;
}

const advance = (ms: number) => {
  clock += ms;
};

beforeAll(async () => {
  emulator = await startTestEmulator({ now: () => clock });
  client = identityClient(emulator);
});

afterAll(async () => {
  await emulator.close();
});

describe("tokens are RS256 JWTs", () => {
  it("verify against the JWKS and carry the real service's header and claims", async () => {
    const { token, user, expiresOn } = await client.createUserAndToken(["chat", "voip"], {
      tokenExpiresInMinutes: 60,
    });
    const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(await jwks()), {
      currentDate: new Date(clock),
      algorithms: ["RS256"],
    });
    expect(Object.keys(protectedHeader)).toEqual(["alg", "kid", "x5t", "typ"]);
    expect(protectedHeader.alg).toBe("RS256");
    expect(protectedHeader.typ).toBe("JWT");
    expect(protectedHeader.kid).toMatch(/^[0-9A-Fa-f]{40}$/);
    expect(Buffer.from(protectedHeader.x5t!, "base64url").toString("hex")).toBe(
      protectedHeader.kid!.toLowerCase(),
    );
    const iat = Math.floor(clock / 1000);
    expect(payload).toEqual({
      skypeid: user.communicationUserId.slice(2),
      scp: 1792,
      csi: String(iat),
      exp: iat + 3600,
      iat,
      rgn: "amer",
      acsScope: "chat,voip",
      resourceId: emulator.resourceId,
      resourceLocation: "unitedstates",
    });
    expect(Math.floor(expiresOn.getTime() / 1000)).toBe(iat + 3600);
  });

  it("have a kid that is the SHA-1 thumbprint of the JWKS key", async () => {
    const { token } = await client.createUserAndToken(["voip"]);
    const [key] = (await jwks()).keys;
    const der = createPublicKey({ key: key as object, format: "jwk" } as Parameters<
      typeof createPublicKey
    >[0]).export({
      type: "spki",
      format: "der",
    });
    expect(decodeProtectedHeader(token).kid).toBe(
      createHash("sha1").update(der).digest("hex").toUpperCase(),
    );
    expect(key!.kid).toBe(decodeProtectedHeader(token).kid);
  });

  it("are signed with a given PEM key, so two emulators with the same key share the JWKS", async () => {
    const pem = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({
      type: "pkcs8",
      format: "pem",
    }) as string;
    const first = await startTestEmulator({ signingKeyPem: pem });
    const second = await startTestEmulator({ signingKeyPem: pem });
    try {
      const { token } = await identityClient(first).createUserAndToken(["chat"]);
      await expect(jwtVerify(token, createLocalJWKSet(await jwks(second)))).resolves.toBeDefined();
      await expect(jwtVerify(token, createLocalJWKSet(await jwks()))).rejects.toThrow();
    } finally {
      await Promise.all([first.close(), second.close()]);
    }
  });
});

describe("token bytes", () => {
  it("are exactly node:crypto's RS256 of the header and claims as JSON, in the service's order", async () => {
    // Written without jose: what the emulator signed with before it used jose, byte for byte.
    const pem = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({
      type: "pkcs8",
      format: "pem",
    }) as string;
    const keyed = await startTestEmulator({ signingKeyPem: pem, now: () => clock });
    try {
      const { token, user } = await identityClient(keyed).createUserAndToken(["chat", "voip"], {
        tokenExpiresInMinutes: 60,
      });
      const der = createPublicKey(pem).export({ type: "spki", format: "der" });
      const thumbprint = createHash("sha1").update(der).digest();
      const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
      const iat = Math.floor(clock / 1000);
      const input = `${part({
        alg: "RS256",
        kid: thumbprint.toString("hex").toUpperCase(),
        x5t: thumbprint.toString("base64url"),
        typ: "JWT",
      })}.${part({
        skypeid: user.communicationUserId.slice(2),
        scp: 1792,
        csi: String(iat),
        exp: iat + 3600,
        rgn: "amer",
        acsScope: "chat,voip",
        resourceId: keyed.resourceId,
        resourceLocation: "unitedstates",
        iat,
      })}`;
      expect(token).toBe(
        `${input}.${sign("sha256", Buffer.from(input), pem).toString("base64url")}`,
      );
    } finally {
      await keyed.close();
    }
  });

  it("need a signing key of at least 2048 bits, refused at start rather than at the first token", async () => {
    const short = generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey.export({
      type: "pkcs8",
      format: "pem",
    }) as string;
    await expect(startTestEmulator({ signingKeyPem: short })).rejects.toThrow(
      "the signing key must be an RSA key of at least 2048 bits",
    );
  });
});

describe("introspection", () => {
  let user: CommunicationUserIdentifier;

  beforeAll(async () => {
    user = await client.createUser();
  });

  it("reports a fresh token active with its claims", async () => {
    const { token } = await client.getToken(user, ["chat"]);
    const result = await introspect(token);
    expect(result.active).toBe(true);
    expect(result.reason).toBeUndefined();
    expect(result.claims?.skypeid).toBe(user.communicationUserId.slice(2));
  });

  it("reports a token expired once the clock reaches its exp, and not a millisecond before", async () => {
    const { token, expiresOn } = await client.getToken(user, ["chat"], {
      tokenExpiresInMinutes: 60,
    });
    const exp = Math.floor(expiresOn.getTime() / 1000) * 1000;
    const saved = clock;
    try {
      clock = exp - 1;
      expect((await introspect(token)).active).toBe(true);
      clock = exp;
      expect(await introspect(token)).toMatchObject({ active: false, reason: "expired" });
    } finally {
      clock = saved;
    }
  });

  it("reports tokens issued before a revoke as revoked and one issued a second after it as active", async () => {
    const other = await client.createUser();
    const before = await client.getToken(other, ["chat"]);
    const otherScopes = await client.getToken(other, ["voip.join"], { tokenExpiresInMinutes: 60 });
    advance(1);
    await client.revokeTokens(other);
    advance(1000);
    const after = await client.getToken(other, ["chat"]);
    expect(await introspect(before.token)).toMatchObject({ active: false, reason: "revoked" });
    expect(await introspect(otherScopes.token)).toMatchObject({ active: false, reason: "revoked" });
    expect(await introspect(after.token)).toMatchObject({ active: true });
  });

  it("tells a token issued in the same second as a revoke but after it from one issued before it", async () => {
    const other = await client.createUser();
    clock = Math.floor(clock / 1000) * 1000 + 100; // all three calls inside one whole second
    const before = await client.getToken(other, ["chat"]);
    advance(200);
    await client.revokeTokens(other);
    advance(200);
    const after = await client.getToken(other, ["chat"]);
    expect((await introspect(before.token)).reason).toBe("revoked");
    expect((await introspect(after.token)).active).toBe(true);
  });

  it("reports a token revoked when its issue answer was held back until after a revoke", async () => {
    const other = await client.createUser();
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let reached!: () => void;
    const atHook = new Promise<void>((resolve) => (reached = resolve));
    emulator.hooks.beforeRespond = async (operation) => {
      if (operation === "issueAccessToken") {
        reached();
        await held;
      }
    };
    try {
      const issuing = client.getToken(other, ["chat"]);
      await atHook; // minted, not yet delivered
      advance(1);
      await client.revokeTokens(other);
      release();
      const late = await issuing;
      expect(await introspect(late.token)).toMatchObject({ active: false, reason: "revoked" });
    } finally {
      emulator.hooks.beforeRespond = undefined;
    }
  });

  it("reports the tokens of a deleted identity as deleted, and leaves other identities' tokens alone", async () => {
    const doomed = await client.createUserAndToken(["chat"]);
    const bystander = await client.createUserAndToken(["chat"]);
    advance(1);
    await client.deleteUser(doomed.user);
    expect(await introspect(doomed.token)).toMatchObject({ active: false, reason: "deleted" });
    expect((await introspect(bystander.token)).active).toBe(true);
  });

  it("reports tampered, foreign and malformed tokens as invalid", async () => {
    const { token } = await client.getToken(user, ["chat"]);
    const [header, payload, signature] = token.split(".");
    const claims = JSON.parse(Buffer.from(payload!, "base64url").toString()) as Record<
      string,
      unknown
    >;
    const forged = `${header}.${Buffer.from(JSON.stringify({ ...claims, acsScope: "chat,voip" })).toString("base64url")}.${signature}`;
    const stranger = await startTestEmulator();
    try {
      const { token: foreign } = await identityClient(stranger).createUserAndToken(["chat"]);
      for (const candidate of [forged, foreign, "abc", "a.b.c"]) {
        expect(await introspect(candidate)).toEqual({ active: false, reason: "invalid" });
      }
    } finally {
      await stranger.close();
    }
  });

  it("requires a signed request and a token field", async () => {
    const unsigned = await rawRequest(emulator.endpoint, emulator.accessKey, {
      method: "POST",
      path: "/emulator/introspect",
      body: JSON.stringify({ token: "x" }),
      sign: { authorization: null },
    });
    expect(unsigned.status).toBe(401);
    assertErrorShape(unsigned.json);
    const empty = await rawRequest(emulator.endpoint, emulator.accessKey, {
      method: "POST",
      path: "/emulator/introspect",
      body: "{}",
    });
    expect(empty.status).toBe(400);
    assertErrorShape(empty.json);
  });
});

describe("a revocation delay (revocationDelaySeconds), on the emulator's clock", () => {
  const DELAY_MS = 60_000;
  let delayed: Emulator;
  let delayedClient: CommunicationIdentityClient;

  beforeAll(async () => {
    delayed = await startTestEmulator({ now: () => clock, revocationDelaySeconds: 60 });
    delayedClient = identityClient(delayed);
  });

  afterAll(async () => {
    await delayed.close();
  });

  it("keeps tokens issued before a revoke active until the delay has passed, not a millisecond less", async () => {
    const { user, token } = await delayedClient.createUserAndToken(["chat"]);
    advance(1000);
    const revokedAt = clock;
    await delayedClient.revokeTokens(user);
    expect(await introspect(token, delayed)).toMatchObject({ active: true });
    advance(1000);
    const after = await delayedClient.getToken(user, ["chat"]);
    clock = revokedAt + DELAY_MS - 1;
    expect(await introspect(token, delayed)).toMatchObject({ active: true });
    clock = revokedAt + DELAY_MS;
    expect(await introspect(token, delayed)).toMatchObject({ active: false, reason: "revoked" });
    // Issued after the revoke: untouched by it, during the delay and after.
    expect(await introspect(after.token, delayed)).toMatchObject({ active: true });
  });

  it("lets each of two revokes take effect at its own time", async () => {
    const { user, token: first } = await delayedClient.createUserAndToken(["chat"]);
    advance(1000);
    const firstRevoke = clock;
    await delayedClient.revokeTokens(user);
    advance(30_000);
    const { token: second } = await delayedClient.getToken(user, ["chat"]);
    advance(1000);
    const secondRevoke = clock;
    await delayedClient.revokeTokens(user);
    clock = firstRevoke + DELAY_MS;
    expect(await introspect(first, delayed)).toMatchObject({ active: false, reason: "revoked" });
    expect(await introspect(second, delayed)).toMatchObject({ active: true });
    clock = secondRevoke + DELAY_MS;
    expect(await introspect(second, delayed)).toMatchObject({ active: false, reason: "revoked" });
  });

  it("deletes at once, whatever the delay", async () => {
    const { user, token } = await delayedClient.createUserAndToken(["chat"]);
    advance(1000);
    await delayedClient.revokeTokens(user);
    await delayedClient.deleteUser(user);
    expect(await introspect(token, delayed)).toMatchObject({ active: false, reason: "deleted" });
  });

  it("refuses a delay above 900 seconds, the real service's 15 minutes", async () => {
    await expect(startTestEmulator({ revocationDelaySeconds: 901 })).rejects.toThrow(
      /revocationDelaySeconds/,
    );
  });
});
