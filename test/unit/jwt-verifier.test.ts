import { createPublicKey } from "node:crypto";
import { SignJWT, UnsecuredJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthError } from "../../src/auth/caller.js";
import { createJwtVerifier, type JwtVerifier } from "../../src/auth/jwt-verifier.js";
import { startTestIssuer, type TestIssuer } from "../helpers/jwks.js";

let issuer: TestIssuer;
let verifier: JwtVerifier;

beforeAll(async () => {
  issuer = await startTestIssuer();
  verifier = createJwtVerifier({
    jwksUrl: issuer.jwksUrl,
    issuer: issuer.issuer,
    audience: issuer.audience,
    adminRole: "acs.admin",
    cooldownMs: 0,
  });
});
afterAll(() => issuer.close());

async function refusal(header: string | undefined): Promise<AuthError> {
  const error = await verifier.verify(header).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AuthError);
  const credential = header?.replace(/^\S+ /, "") ?? "";
  if (credential.length >= 20) {
    expect((error as Error).message).not.toContain(credential.slice(0, 20));
  }
  return error as AuthError;
}

describe("bearer token verification", () => {
  it("turns a valid token into a caller with subject, issuer, roles and admin flag", async () => {
    const admin = await verifier.verify(
      `Bearer ${await issuer.sign({ roles: ["acs.admin", "x"] }, { subject: "ops" })}`,
    );
    expect(admin).toMatchObject({
      subject: "ops",
      issuer: issuer.issuer,
      roles: ["acs.admin", "x"],
      isAdmin: true,
    });
    const user = await verifier.verify(
      `bearer ${await issuer.sign({ roles: "reader writer" }, { subject: "ann" })}`,
    );
    expect(user).toMatchObject({ subject: "ann", roles: ["reader", "writer"], isAdmin: false });
    expect(user.key).toMatch(/^[A-Za-z0-9_-]{32}$/);
  });

  it("gives the same subject from another issuer another key", async () => {
    const other = createJwtVerifier({
      jwksUrl: issuer.jwksUrl,
      issuer: "https://other.test/",
      audience: issuer.audience,
      adminRole: "acs.admin",
    });
    const here = await verifier.verify(`Bearer ${await issuer.sign({}, { subject: "same" })}`);
    const there = await other.verify(
      `Bearer ${await issuer.sign({}, { subject: "same", issuer: "https://other.test/" })}`,
    );
    expect(here.key).not.toBe(there.key);
  });

  it("refuses alg none", async () => {
    const none = new UnsecuredJWT({ sub: "x", roles: ["acs.admin"] })
      .setIssuer(issuer.issuer)
      .setAudience(issuer.audience)
      .setExpirationTime("5m")
      .encode();
    expect((await refusal(`Bearer ${none}`)).reason).toBe("invalid");
  });

  it("refuses an HS256 token 'signed' with the issuer's public key (algorithm confusion)", async () => {
    const jwks = (await (await fetch(issuer.jwksUrl)).json()) as {
      keys: Record<string, unknown>[];
    };
    const pem = createPublicKey({ key: jwks.keys[0] as never, format: "jwk" }).export({
      type: "spki",
      format: "pem",
    });
    const forged = await new SignJWT({ roles: ["acs.admin"] })
      .setProtectedHeader({ alg: "HS256", kid: "key-1" })
      .setSubject("mallory")
      .setIssuer(issuer.issuer)
      .setAudience(issuer.audience)
      .setExpirationTime("5m")
      .sign(new TextEncoder().encode(pem.toString()));
    expect((await refusal(`Bearer ${forged}`)).reason).toBe("invalid");
  });

  it("refuses expired tokens beyond the clock tolerance, and accepts within it", async () => {
    const now = Math.floor(Date.now() / 1000);
    expect(
      (await refusal(`Bearer ${await issuer.sign({}, { expiresIn: now - 120 })}`)).reason,
    ).toBe("expired");
    await expect(
      verifier.verify(`Bearer ${await issuer.sign({}, { expiresIn: now - 5 })}`),
    ).resolves.toBeDefined();
  });

  it("refuses a token that is not valid yet", async () => {
    const later = Math.floor(Date.now() / 1000) + 600;
    await refusal(`Bearer ${await issuer.sign({}, { notBefore: later, expiresIn: later + 600 })}`);
  });

  it("refuses wrong issuer, wrong audience, foreign keys and a missing subject", async () => {
    await refusal(`Bearer ${await issuer.sign({}, { issuer: "https://evil.test/" })}`);
    await refusal(`Bearer ${await issuer.sign({}, { audience: "api://else" })}`);
    await refusal(`Bearer ${await issuer.sign({}, { key: "foreign" })}`);
    await refusal(`Bearer ${await issuer.sign({}, { key: "foreign", kid: "unknown-kid" })}`);
    await refusal(`Bearer ${await issuer.sign({}, { subject: null })}`);
  });

  it("refuses missing and malformed Authorization headers", async () => {
    expect((await refusal(undefined)).reason).toBe("missing");
    expect((await refusal("")).reason).toBe("missing");
    const token = await issuer.sign({});
    for (const header of ["Basic abc", `Bearer ${token} ${token}`, "Bearer", `Token ${token}`]) {
      expect((await refusal(header)).reason).toBe("malformed");
    }
    expect((await refusal(`Bearer ${"a".repeat(9000)}`)).reason).toBe("malformed");
  });

  it("caches the issuer's keys and picks up a rotated key on its unknown kid", async () => {
    const token = await issuer.sign({});
    await verifier.verify(`Bearer ${token}`);
    const fetched = issuer.fetches();
    for (let i = 0; i < 5; i++) {
      await verifier.verify(`Bearer ${token}`);
    }
    expect(issuer.fetches()).toBe(fetched);
    const kid = await issuer.rotate();
    const rotated = await verifier.verify(
      `Bearer ${await issuer.sign({}, { kid, subject: "after" })}`,
    );
    expect(rotated.subject).toBe("after");
    expect(issuer.fetches()).toBe(fetched + 1);
  });
});
