import {
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
} from "node:crypto";
import { base64url, compactVerify, decodeJwt, exportJWK, SignJWT } from "jose";

/**
 * RS256 JWTs shaped like the real service's (docs/acs-wire-facts.md, "Identity ids and tokens"),
 * and the JWKS that verifies them, signed and verified with jose. jose signs asynchronously
 * (WebCrypto), so a caller fixes every claim synchronously, in the same tick as the store reads
 * they depend on (the `iat` chosen from the identity's revocation time, store.ts), and only then
 * awaits the signature: a revoke can never fall between reading the revocation time and choosing
 * the claims, only before the answer is written, as with any answer in flight.
 */
export interface AcsTokenClaims {
  skypeid: string;
  scp: number;
  csi: string;
  exp: number;
  rgn: string;
  acsScope: string;
  resourceId: string;
  resourceLocation: string;
  iat: number;
  [claim: string]: unknown;
}

export interface Jwk {
  kty: string;
  n: string;
  e: string;
  kid: string;
  x5t: string;
  alg: "RS256";
  use: "sig";
}

export interface TokenSigner {
  readonly kid: string;
  /** Any claims: ACS tokens and the managed-identity endpoint's Entra-shaped tokens alike. */
  sign(claims: AcsTokenClaims | Record<string, unknown>): Promise<string>;
  /**
   * The payload when `token` is a JWT this signer made (its header and signature checked), else
   * undefined. Its times are NOT checked: callers judge `exp` and `nbf` by the emulator's clock.
   */
  verify(token: string): Promise<AcsTokenClaims | undefined>;
  jwks(): { keys: Jwk[] };
  /**
   * 32 bytes derived from the private key and `label` (HMAC-SHA256 keyed with the key's PKCS#8 DER):
   * secrets that stay the same exactly as long as the signing key does (a state file or a key file
   * keeps them across restarts), and reveal nothing of the key.
   */
  derive(label: string): Buffer;
}

/** jose refuses RS256 with a shorter key; the emulator says so at start, not at the first token. */
const MIN_MODULUS_BITS = 2048;

export async function createTokenSigner(
  options: { privateKeyPem?: string } = {},
): Promise<TokenSigner> {
  let privateKey: KeyObject;
  if (options.privateKeyPem !== undefined) {
    privateKey = createPrivateKey(options.privateKeyPem);
    if (privateKey.asymmetricKeyType !== "rsa") {
      throw new Error("the signing key must be an RSA private key (PKCS#8 PEM)");
    }
    if ((privateKey.asymmetricKeyDetails?.modulusLength ?? 0) < MIN_MODULUS_BITS) {
      throw new Error(`the signing key must be an RSA key of at least ${MIN_MODULUS_BITS} bits`);
    }
  } else {
    // 2048 bits, as the real service's keys; generated per start, so tokens of an earlier run of the
    // emulator stop verifying (give a PEM to keep them across restarts).
    privateKey = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
  }
  const publicKey: KeyObject = createPublicKey(privateKey);

  // The real service's kid is the SHA-1 thumbprint of its signing certificate; without a
  // certificate, the thumbprint of the public key's DER is the closest stable equivalent.
  const thumbprint = createHash("sha1")
    .update(publicKey.export({ type: "spki", format: "der" }))
    .digest();
  const kid = thumbprint.toString("hex").toUpperCase();
  const x5t = base64url.encode(thumbprint);
  // The members in this order: the tokens' first segment stays byte for byte what it always was.
  const protectedHeader = { alg: "RS256", kid, x5t, typ: "JWT" } as const;
  // What jose writes as the first segment (base64url of the header's JSON): `verify` takes only
  // tokens that start with exactly this, as a token of the same key under another header is not
  // one of this signer's.
  const encodedHeader = base64url.encode(JSON.stringify(protectedHeader));
  const { kty, n, e } = await exportJWK(publicKey);
  const jwk: Jwk = { kty: kty!, n: n!, e: e!, kid, x5t, alg: "RS256", use: "sig" };
  const privateDer = privateKey.export({ type: "pkcs8", format: "der" });

  return {
    kid,
    sign(claims) {
      // RS256 (PKCS#1 v1.5) is deterministic, with jose as without: one identity's tokens of the
      // same scopes and second are byte-identical (why store.ts's `issuedAtSeconds` dates a token
      // minted after a revoke one second on).
      return new SignJWT(claims).setProtectedHeader(protectedHeader).sign(privateKey);
    },
    async verify(token) {
      if (!token.startsWith(`${encodedHeader}.`)) {
        return undefined;
      }
      try {
        // The JWS only: jwtVerify would also judge `exp` and `nbf`, by the wall clock, where the
        // emulator judges them by its own (movable) clock and says which check failed.
        await compactVerify(token, publicKey, { algorithms: ["RS256"] });
        return decodeJwt(token) as AcsTokenClaims;
      } catch {
        return undefined;
      }
    },
    jwks() {
      return { keys: [{ ...jwk }] };
    },
    derive(label) {
      return createHmac("sha256", privateDer).update(label, "utf8").digest();
    },
  };
}

/** A new 2048-bit RSA key as PKCS#8 PEM (the real service's key size). */
export function generateSigningKeyPem(): string {
  return generateKeyPairSync("rsa", { modulusLength: 2048 })
    .privateKey.export({ type: "pkcs8", format: "pem" })
    .toString();
}

/**
 * `2023-10-10T21:39:39.3244584+00:00`: the 7 fractional digits .NET writes. JavaScript clocks stop
 * at milliseconds, so the last four digits are `subMillisecond` (0..9999, ten-thousandths of a ms):
 * the instant stays within its millisecond.
 */
export function formatExpiresOn(epochMs: number, subMillisecond = 0): string {
  const tail = String(Math.max(0, Math.min(9999, Math.trunc(subMillisecond)))).padStart(4, "0");
  return new Date(epochMs).toISOString().replace("Z", `${tail}+00:00`);
}
