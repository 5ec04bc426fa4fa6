import { createServer, type Server } from "node:http";
import { exportJWK, generateKeyPair, SignJWT, type JWK, type KeyObject } from "jose";

/**
 * A local identity provider for tests: a JWKS endpoint on a free loopback port, and a signer for
 * tokens with whatever claims a test needs (including broken ones).
 */
export interface TestIssuer {
  jwksUrl: string;
  issuer: string;
  audience: string;
  /** Signs with the published key unless `key` says otherwise. */
  sign(claims: Record<string, unknown>, options?: SignOptions): Promise<string>;
  /** Replace the published RS256 key (rotation; the ES256 key stays); returns the new kid. */
  rotate(): Promise<string>;
  /** How often the JWKS was fetched. */
  fetches(): number;
  close(): Promise<void>;
}

export interface SignOptions {
  /** "foreign": a key not in the JWKS (its kid is the published one unless kid is given). */
  key?: "published" | "foreign";
  /** RS256 (the default) or ES256; the JWKS publishes one key of each. */
  alg?: "RS256" | "ES256";
  kid?: string;
  /** Relative ("10m", the default) or absolute (seconds since the epoch); null: no `exp` at all. */
  expiresIn?: string | number | null;
  notBefore?: string | number;
  issuer?: string;
  audience?: string;
  subject?: string | null;
}

interface KeyPair {
  kid: string;
  privateKey: KeyObject;
  jwk: JWK;
}

async function newKey(kid: string, alg: "RS256" | "ES256" = "RS256"): Promise<KeyPair> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
  return { kid, privateKey: privateKey as KeyObject, jwk };
}

export async function startTestIssuer(): Promise<TestIssuer> {
  let published = await newKey("key-1");
  const ec = await newKey("key-ec", "ES256");
  const foreign = await newKey("key-foreign");
  const foreignEc = await newKey("key-foreign-ec", "ES256");
  let generation = 1;
  let count = 0;
  const server: Server = createServer((req, res) => {
    count++;
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ keys: [published.jwk, ec.jwk] }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  const issuer = "https://issuer.test/";
  const audience = "api://acs-gateway";

  return {
    jwksUrl: `http://127.0.0.1:${port}/keys`,
    issuer,
    audience,
    async sign(claims, options = {}) {
      const alg = options.alg ?? "RS256";
      const own = alg === "ES256" ? ec : published;
      const key = options.key === "foreign" ? (alg === "ES256" ? foreignEc : foreign) : own;
      let jwt = new SignJWT(claims)
        .setProtectedHeader({ alg, kid: options.kid ?? own.kid, typ: "JWT" })
        .setIssuedAt()
        .setIssuer(options.issuer ?? issuer)
        .setAudience(options.audience ?? audience);
      if (options.expiresIn !== null) {
        jwt = jwt.setExpirationTime(options.expiresIn ?? "10m");
      }
      if (options.subject !== null) {
        jwt = jwt.setSubject(options.subject ?? "user-1");
      }
      if (options.notBefore !== undefined) {
        jwt = jwt.setNotBefore(options.notBefore);
      }
      return jwt.sign(key.privateKey);
    },
    async rotate() {
      generation++;
      published = await newKey(`key-${generation}`);
      return published.kid;
    },
    fetches: () => count,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
