import { createServer, type Server } from "node:http";
import { createPublicKey } from "node:crypto";
import { SignJWT, UnsecuredJWT, base64url } from "jose";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { AuthError, callerKey } from "../../src/auth/caller.js";
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

const bearer = (token: string) => `Bearer ${token}`;

/** The refusal, checked for being an AuthError whose message quotes no part of the credential. */
async function refusal(header: string | undefined, using = verifier): Promise<AuthError> {
  const error = await using.verify(header).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AuthError);
  const credential = header?.replace(/^\S+ /, "") ?? "";
  for (const part of credential.split(".").filter((p) => p.length >= 8)) {
    expect((error as Error).message).not.toContain(part.slice(0, 8));
  }
  return error as AuthError;
}

async function publishedJwks(): Promise<Record<string, unknown>[]> {
  return ((await (await fetch(issuer.jwksUrl)).json()) as { keys: Record<string, unknown>[] }).keys;
}

/** A one-off key-set server: 200 with `body`, or `status` when given. */
async function serveJwks(
  body: unknown,
  status = 200,
): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((_req, res) => {
    res.statusCode = status;
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify(body));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}/keys`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** An HS256 token with admin rights, "signed" with `secret`: what a confusion attack sends. */
function forgeHs256(secret: Uint8Array, kid: string): Promise<string> {
  return new SignJWT({ roles: ["acs.admin"] })
    .setProtectedHeader({ alg: "HS256", kid })
    .setSubject("mallory")
    .setIssuer(issuer.issuer)
    .setAudience(issuer.audience)
    .setExpirationTime("5m")
    .sign(secret);
}

describe("a valid bearer token", () => {
  it("becomes a caller with subject, issuer, roles and the admin flag (RS256)", async () => {
    const admin = await verifier.verify(
      bearer(await issuer.sign({ roles: ["acs.admin", "x"] }, { subject: "ops" })),
    );
    expect(admin).toMatchObject({
      subject: "ops",
      issuer: issuer.issuer,
      roles: ["acs.admin", "x"],
      isAdmin: true,
    });
    expect(admin.key).toMatch(/^[A-Za-z0-9_-]{32}$/);
  });

  it("takes the external id claim only as the directory would take it (1 to 256 printable characters)", async () => {
    const at256 = "a".repeat(256);
    expect(
      (await verifier.verify(bearer(await issuer.sign({}, { subject: at256 })))).externalId,
    ).toBe(at256);
    const longer = await verifier.verify(bearer(await issuer.sign({}, { subject: at256 + "b" })));
    expect(longer).toMatchObject({ subject: at256 + "b", externalId: undefined });
    const unprintable = await verifier.verify(bearer(await issuer.sign({}, { subject: "a\nb" })));
    expect(unprintable).toMatchObject({ subject: "a\nb", externalId: undefined });
  });

  it("verifies with an ES256 key from the same key set", async () => {
    const caller = await verifier.verify(
      bearer(await issuer.sign({ roles: ["reader"] }, { subject: "ec", alg: "ES256" })),
    );
    expect(caller).toMatchObject({ subject: "ec", roles: ["reader"], isAdmin: false });
  });

  it("accepts the scheme in any case and roles as one space-separated string", async () => {
    const user = await verifier.verify(
      `bEaReR ${await issuer.sign({ roles: "reader  writer" }, { subject: "ann" })}`,
    );
    expect(user).toMatchObject({ subject: "ann", roles: ["reader", "writer"], isAdmin: false });
  });

  it("grants no role for a malformed roles claim, and never admin from a look-alike", async () => {
    const odd = await verifier.verify(
      bearer(await issuer.sign({ roles: [{ value: "acs.admin" }, 7, "ACS.ADMIN", "acs.admin "] })),
    );
    expect(odd).toMatchObject({ roles: ["ACS.ADMIN", "acs.admin "], isAdmin: false });
    const none = await verifier.verify(bearer(await issuer.sign({ roles: { admin: true } })));
    expect(none).toMatchObject({ roles: [], isAdmin: false });
  });

  it("keeps the caller key stable across tokens, and apart for another subject", async () => {
    const first = await verifier.verify(bearer(await issuer.sign({}, { subject: "ann" })));
    const again = await verifier.verify(
      bearer(await issuer.sign({ roles: ["acs.admin"] }, { subject: "ann", alg: "ES256" })),
    );
    const bob = await verifier.verify(bearer(await issuer.sign({}, { subject: "bob" })));
    expect(first.key).toBe(callerKey(issuer.issuer, "ann"));
    expect(again.key).toBe(first.key);
    expect(bob.key).not.toBe(first.key);
    expect([first.isAdmin, again.isAdmin, bob.isAdmin]).toEqual([false, true, false]);
  });

  it("grants admin only for the configured admin role", async () => {
    const custom = createJwtVerifier({
      jwksUrl: issuer.jwksUrl,
      issuer: issuer.issuer,
      audience: issuer.audience,
      adminRole: "ops.admin",
    });
    const token = await issuer.sign({ roles: ["acs.admin"] });
    expect((await custom.verify(bearer(token))).isAdmin).toBe(false);
    expect((await verifier.verify(bearer(token))).isAdmin).toBe(true);
    const ops = await custom.verify(bearer(await issuer.sign({ roles: "reader ops.admin" })));
    expect(ops.isAdmin).toBe(true);
  });

  it("gives the same subject from another issuer another key", async () => {
    const other = createJwtVerifier({
      jwksUrl: issuer.jwksUrl,
      issuer: "https://other.test/",
      audience: issuer.audience,
      adminRole: "acs.admin",
    });
    const here = await verifier.verify(bearer(await issuer.sign({}, { subject: "same" })));
    const there = await other.verify(
      bearer(await issuer.sign({}, { subject: "same", issuer: "https://other.test/" })),
    );
    expect(here.key).not.toBe(there.key);
  });
});

describe("a forged or unacceptable bearer token", () => {
  it("is refused with alg none", async () => {
    const none = new UnsecuredJWT({ sub: "x", roles: ["acs.admin"] })
      .setIssuer(issuer.issuer)
      .setAudience(issuer.audience)
      .setExpirationTime("5m")
      .encode();
    expect((await refusal(bearer(none))).reason).toBe("invalid");
  });

  it("is refused when HS256-signed with the issuer's public key as PEM (algorithm confusion)", async () => {
    const [rsa] = await publishedJwks();
    const pem = createPublicKey({ key: rsa as never, format: "jwk" }).export({
      type: "spki",
      format: "pem",
    });
    for (const secret of [pem.toString(), pem.toString().trim()]) {
      const forged = await forgeHs256(new TextEncoder().encode(secret), "key-1");
      expect((await refusal(bearer(forged))).reason).toBe("invalid");
    }
  });

  it("is refused when HS256-signed with the public JWK's bytes or modulus (algorithm confusion)", async () => {
    const [rsa] = await publishedJwks();
    const secrets = [
      new TextEncoder().encode(JSON.stringify(rsa)),
      base64url.decode(String(rsa!.n)),
      createPublicKey({ key: rsa as never, format: "jwk" }).export({ type: "spki", format: "der" }),
    ];
    for (const secret of secrets) {
      expect((await refusal(bearer(await forgeHs256(secret, "key-1")))).reason).toBe("invalid");
    }
  });

  it("is refused with HS256 even when the key set wrongly publishes a symmetric key", async () => {
    // Two independent locks hold here: the verifier's asymmetric allow-list, and jose never
    // using a key-set member for an HMAC algorithm. Either alone refuses this token.
    const secret = new TextEncoder().encode("a-shared-secret-that-leaked-into-the-jwks!");
    const server = await serveJwks({
      keys: [{ kty: "oct", kid: "oct-1", k: base64url.encode(secret) }],
    });
    const misconfigured = createJwtVerifier({
      jwksUrl: server.url,
      issuer: issuer.issuer,
      audience: issuer.audience,
      adminRole: "acs.admin",
    });
    const forged = await forgeHs256(secret, "oct-1");
    expect((await refusal(bearer(forged), misconfigured)).reason).toBe("invalid");
    await server.close();
  });

  it("is refused when expired beyond the clock tolerance, and accepted within it", async () => {
    const now = Math.floor(Date.now() / 1000);
    for (const ago of [120, 40]) {
      const expired = await refusal(bearer(await issuer.sign({}, { expiresIn: now - ago })));
      expect(expired.reason).toBe("expired");
      expect(expired.message).toBe("The bearer token has expired.");
    }
    for (const ago of [5, 20]) {
      await expect(
        verifier.verify(bearer(await issuer.sign({}, { expiresIn: now - ago }))),
      ).resolves.toBeDefined();
    }
  });

  it("is refused without an expiry", async () => {
    for (const alg of ["RS256", "ES256"] as const) {
      const eternal = await issuer.sign({ roles: ["acs.admin"] }, { alg, expiresIn: null });
      expect((await refusal(bearer(eternal))).reason).toBe("invalid");
    }
  });

  it("is refused while not valid yet (nbf in the future beyond the tolerance)", async () => {
    const later = Math.floor(Date.now() / 1000) + 600;
    const early = await refusal(
      bearer(await issuer.sign({}, { notBefore: later, expiresIn: later + 600 })),
    );
    expect(early.reason).toBe("invalid");
    const slightly = Math.floor(Date.now() / 1000) + 10;
    await expect(
      verifier.verify(bearer(await issuer.sign({}, { notBefore: slightly }))),
    ).resolves.toBeDefined();
  });

  it("is refused with the wrong issuer or audience", async () => {
    await refusal(bearer(await issuer.sign({}, { issuer: "https://evil.test/" })));
    await refusal(bearer(await issuer.sign({}, { issuer: issuer.issuer.replace(/\/$/, "") })));
    await refusal(bearer(await issuer.sign({}, { audience: "api://else" })));
  });

  it("is refused when signed by a foreign key, under a published kid or an unknown one", async () => {
    for (const alg of ["RS256", "ES256"] as const) {
      await refusal(bearer(await issuer.sign({}, { key: "foreign", alg })));
      await refusal(bearer(await issuer.sign({}, { key: "foreign", alg, kid: "unknown-kid" })));
    }
    // A published kid with another algorithm's key: the EC kid on an RSA signature.
    await refusal(bearer(await issuer.sign({}, { kid: "key-ec" })));
  });

  it("is refused without a usable subject", async () => {
    await refusal(bearer(await issuer.sign({}, { subject: null })));
    for (const sub of [42, "", ["a"], "x".repeat(1025)]) {
      await refusal(bearer(await issuer.sign({ sub }, { subject: null })));
    }
  });

  it("is refused with a tampered payload", async () => {
    const [header, , signature] = (await issuer.sign({})).split(".");
    const payload = base64url.encode(
      JSON.stringify({
        sub: "mallory",
        roles: ["acs.admin"],
        iss: issuer.issuer,
        aud: issuer.audience,
        exp: Math.floor(Date.now() / 1000) + 300,
      }),
    );
    expect((await refusal(bearer(`${header}.${payload}.${signature}`))).reason).toBe("invalid");
  });
});

describe("the Authorization header", () => {
  it("is refused when missing or empty", async () => {
    expect((await refusal(undefined)).reason).toBe("missing");
    expect((await refusal("")).reason).toBe("missing");
  });

  it("is refused when it is not one Bearer credential, or above 8 KB", async () => {
    const token = await issuer.sign({});
    for (const header of [
      "Basic abc",
      `Bearer ${token} ${token}`,
      "Bearer",
      "Bearer ",
      `Token ${token}`,
      `Bearer\t${token}`,
      `Bearer ${token}\u0000`,
    ]) {
      expect((await refusal(header)).reason, JSON.stringify(header.slice(0, 12))).toBe("malformed");
    }
    expect((await refusal(`Bearer ${"a".repeat(9000)}`)).reason).toBe("malformed");
    expect((await refusal("Bearer not.a.jwt")).reason).toBe("invalid");
  });
});

describe("the issuer's key set", () => {
  it("is cached, and fetched again for an unknown kid so a rotated key is picked up", async () => {
    const token = await issuer.sign({});
    await verifier.verify(bearer(token));
    const fetched = issuer.fetches();
    for (let i = 0; i < 5; i++) {
      await verifier.verify(bearer(token));
    }
    expect(issuer.fetches()).toBe(fetched);
    const kid = await issuer.rotate();
    const rotated = await verifier.verify(bearer(await issuer.sign({}, { kid, subject: "after" })));
    expect(rotated.subject).toBe("after");
    expect(issuer.fetches()).toBe(fetched + 1);
    // The retired key is gone from the set the verifier now holds.
    await refusal(bearer(token));
  });

  it("is not fetched again for every unknown kid within the cooldown", async () => {
    const cooled = createJwtVerifier({
      jwksUrl: issuer.jwksUrl,
      issuer: issuer.issuer,
      audience: issuer.audience,
      adminRole: "acs.admin",
      cooldownMs: 60_000,
    });
    await cooled.verify(bearer(await issuer.sign({})));
    const fetched = issuer.fetches();
    for (let i = 0; i < 5; i++) {
      await refusal(bearer(await issuer.sign({}, { key: "foreign", kid: `nope-${i}` })), cooled);
    }
    expect(issuer.fetches()).toBeLessThanOrEqual(fetched + 1);
  });

  describe("with the default timings (a 30 s cooldown and a 10 min cache)", () => {
    let own: TestIssuer;
    beforeAll(async () => {
      own = await startTestIssuer();
    });
    afterEach(() => {
      vi.useRealTimers();
    });
    afterAll(() => own.close());

    it("picks up a rotated key once 30 s have passed since the last fetch, and refetches a stale set", async () => {
      // Only Date is faked: jose's cache and cooldown read Date.now(), sockets keep real timers.
      vi.useFakeTimers({ toFake: ["Date"], now: Date.now() });
      const defaults = createJwtVerifier({
        jwksUrl: own.jwksUrl,
        issuer: own.issuer,
        audience: own.audience,
        adminRole: "acs.admin",
      });
      const old = await own.sign({}, { subject: "old" });
      await defaults.verify(bearer(old));
      expect(own.fetches()).toBe(1);
      for (let i = 0; i < 10; i++) {
        await defaults.verify(bearer(old));
      }
      expect(own.fetches()).toBe(1);

      const kid = await own.rotate();
      vi.advanceTimersByTime(10_000);
      // Within the cooldown an unknown kid is refused without a fetch (no fetch storm)...
      const early = await refusal(bearer(await own.sign({}, { kid, subject: "new" })), defaults);
      expect(early.reason).toBe("invalid");
      expect(own.fetches()).toBe(1);
      // ...and after it, the first such token fetches the set once and verifies.
      vi.advanceTimersByTime(21_000);
      const fresh = await own.sign({}, { kid, subject: "new" });
      expect((await defaults.verify(bearer(fresh))).subject).toBe("new");
      expect(own.fetches()).toBe(2);
      await defaults.verify(bearer(fresh));
      expect(own.fetches()).toBe(2);

      // A set older than 10 minutes is fetched again even for a known kid.
      vi.advanceTimersByTime(10 * 60_000 + 1000);
      await defaults.verify(bearer(await own.sign({}, { kid, subject: "later" })));
      expect(own.fetches()).toBe(3);
    });
  });

  it("refuses as 'unavailable' when it cannot be fetched, without quoting the token", async () => {
    const broken = await serveJwks({ error: "down" }, 503);
    const down = createJwtVerifier({
      jwksUrl: broken.url,
      issuer: issuer.issuer,
      audience: issuer.audience,
      adminRole: "acs.admin",
      timeoutMs: 1000,
    });
    expect((await refusal(bearer(await issuer.sign({})), down)).reason).toBe("unavailable");
    await broken.close();
    // Nothing listens any more: a refused connection.
    expect((await refusal(bearer(await issuer.sign({})), down)).reason).toBe("unavailable");
  });
});

describe("remembered verifications", () => {
  let own: TestIssuer;
  beforeAll(async () => {
    own = await startTestIssuer();
  });
  afterEach(() => {
    vi.useRealTimers();
  });
  afterAll(() => own.close());

  const remembering = (options: Partial<Parameters<typeof createJwtVerifier>[0]> = {}) =>
    createJwtVerifier({
      jwksUrl: own.jwksUrl,
      issuer: own.issuer,
      audience: own.audience,
      adminRole: "acs.admin",
      cooldownMs: 0,
      ...options,
    });

  // A remembered verification hands back the very caller object it built the first time; a full
  // verification builds a new one. That identity is how these tests see which path answered.

  it("serve the same token again without a new verification, until the token's exp and not a millisecond past it", async () => {
    vi.useFakeTimers({ toFake: ["Date"], now: 1_800_000_000_000 });
    const exp = 1_800_000_000 + 90;
    const token = bearer(await own.sign({}, { subject: "ann", expiresIn: exp }));
    const cached = remembering({ clockToleranceSeconds: 0, cacheMaxAgeMs: 10 * 60_000 });
    const first = await cached.verify(token);
    expect(cached.cachedTokens()).toBe(1);
    vi.setSystemTime(exp * 1000 - 1);
    expect(await cached.verify(token)).toBe(first);
    vi.setSystemTime(exp * 1000);
    expect((await refusal(token, cached)).reason).toBe("expired");
    expect(cached.cachedTokens()).toBe(0);
  });

  it("never serve a remembered token after exp, even where the clock tolerance would accept it in full", async () => {
    vi.useFakeTimers({ toFake: ["Date"], now: 1_800_000_000_000 });
    const exp = 1_800_000_000 + 60;
    const token = bearer(await own.sign({}, { expiresIn: exp }));
    const cached = remembering({ clockToleranceSeconds: 30, cacheMaxAgeMs: 10 * 60_000 });
    const first = await cached.verify(token);
    vi.setSystemTime(exp * 1000 + 10_000);
    const again = await cached.verify(token);
    expect(again).not.toBe(first);
    expect(again).toEqual(first);
    vi.setSystemTime(exp * 1000 + 31_000);
    expect((await refusal(token, cached)).reason).toBe("expired");
  });

  it("are not served before the token's nbf", async () => {
    vi.useFakeTimers({ toFake: ["Date"], now: 1_800_000_000_000 });
    const nbf = 1_800_000_000 + 20;
    // Within the 30 s tolerance: accepted in full, but not remembered as valid before nbf.
    const token = bearer(await own.sign({}, { notBefore: nbf, expiresIn: nbf + 600 }));
    const cached = remembering({ cacheMaxAgeMs: 10 * 60_000 });
    const first = await cached.verify(token);
    const second = await cached.verify(token);
    expect(second).not.toBe(first);
    vi.setSystemTime(nbf * 1000);
    const third = await cached.verify(token);
    expect(await cached.verify(token)).toBe(third);
  });

  it("are verified in full again after the max age", async () => {
    vi.useFakeTimers({ toFake: ["Date"], now: 1_800_000_000_000 });
    const token = bearer(await own.sign({}, { expiresIn: "1h" }));
    const cached = remembering({ cacheMaxAgeMs: 60_000 });
    const first = await cached.verify(token);
    vi.advanceTimersByTime(59_999);
    expect(await cached.verify(token)).toBe(first);
    vi.advanceTimersByTime(1);
    expect(await cached.verify(token)).not.toBe(first);
  });

  it("are all dropped when a refetch brings a changed key set, and kept when it brings the same", async () => {
    const cached = remembering();
    const ann = bearer(await own.sign({}, { subject: "ann" }));
    const bob = bearer(await own.sign({}, { subject: "bob", alg: "ES256" }));
    const annCaller = await cached.verify(ann);
    const bobCaller = await cached.verify(bob);
    expect(cached.cachedTokens()).toBe(2);

    // An unknown kid refetches the set; it is unchanged, so nothing is forgotten.
    const fetched = own.fetches();
    await refusal(bearer(await own.sign({}, { key: "foreign", kid: "unknown" })), cached);
    expect(own.fetches()).toBe(fetched + 1);
    expect(await cached.verify(ann)).toBe(annCaller);

    // The issuer rotates its RSA key: the next refetch (for the new kid) changes the set...
    const kid = await own.rotate();
    await cached.verify(bearer(await own.sign({}, { kid, subject: "carol" })));
    expect(own.fetches()).toBe(fetched + 2);
    // ...so the token signed with the withdrawn key is refused, not served from memory,
    expect((await refusal(ann, cached)).reason).toBe("invalid");
    // and one whose key is still published is verified again rather than served.
    const bobAgain = await cached.verify(bob);
    expect(bobAgain).not.toBe(bobCaller);
    expect(bobAgain).toEqual(bobCaller);
  });

  it("keep at most the configured count, dropping the least recently used", async () => {
    const cached = remembering({ cacheEntries: 3 });
    const tokens = await Promise.all(
      ["t1", "t2", "t3", "t4", "t5"].map(async (subject) =>
        bearer(await own.sign({}, { subject })),
      ),
    );
    const t1 = await cached.verify(tokens[0]);
    const t2 = await cached.verify(tokens[1]);
    await cached.verify(tokens[2]);
    // t1 used again: t2 is now the least recently used and goes first.
    expect(await cached.verify(tokens[0])).toBe(t1);
    await cached.verify(tokens[3]);
    expect(cached.cachedTokens()).toBe(3);
    expect(await cached.verify(tokens[0])).toBe(t1);
    expect(await cached.verify(tokens[1])).not.toBe(t2);
    for (const token of tokens) {
      await cached.verify(token);
    }
    expect(cached.cachedTokens()).toBe(3);
  });

  it("are never made of refused tokens, and are off with cacheEntries 0", async () => {
    const cached = remembering();
    await refusal(bearer(await own.sign({}, { key: "foreign" })), cached);
    await refusal(bearer(await own.sign({}, { audience: "api://else" })), cached);
    expect(cached.cachedTokens()).toBe(0);

    const off = remembering({ cacheEntries: 0 });
    const token = bearer(await own.sign({}));
    expect(await off.verify(token)).not.toBe(await off.verify(token));
    expect(off.cachedTokens()).toBe(0);
    expect(() => remembering({ cacheEntries: -1 })).toThrow(TypeError);
    expect(() => remembering({ cacheEntries: 1.5 })).toThrow(TypeError);
  });

  it("hand out a caller that cannot be altered for the next request", async () => {
    const cached = remembering();
    const token = bearer(await own.sign({ roles: ["reader"] }));
    const caller = await cached.verify(token);
    expect(Object.isFrozen(caller) && Object.isFrozen(caller.roles)).toBe(true);
    expect(() => ((caller as { isAdmin: boolean }).isAdmin = true)).toThrow(TypeError);
    expect((await cached.verify(token)).isAdmin).toBe(false);
  });
});
