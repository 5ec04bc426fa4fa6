import {
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
  type KeyObject,
} from "node:crypto";

/**
 * RS256 JWTs shaped like the real service's (docs/acs-wire-facts.md, "Identity ids and tokens"),
 * and the JWKS that verifies them. node:crypto rather than jose: signing is synchronous, so reading
 * the identity's revocation time and minting happen in one tick and cannot interleave with a
 * revoke.
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
  sign(claims: AcsTokenClaims | Record<string, unknown>): string;
  /** The payload when `token` is a JWT this signer made (signature checked), else undefined. */
  verify(token: string): AcsTokenClaims | undefined;
  jwks(): { keys: Jwk[] };
  /**
   * 32 bytes derived from the private key and `label` (HMAC-SHA256 keyed with the key's PKCS#8 DER):
   * secrets that stay the same exactly as long as the signing key does (a state file or a key file
   * keeps them across restarts), and reveal nothing of the key.
   */
  derive(label: string): Buffer;
}

const b64url = (value: Buffer | string) => Buffer.from(value).toString("base64url");

export function createTokenSigner(options: { privateKeyPem?: string } = {}): TokenSigner {
  let privateKey: KeyObject;
  if (options.privateKeyPem !== undefined) {
    privateKey = createPrivateKey(options.privateKeyPem);
    if (privateKey.asymmetricKeyType !== "rsa") {
      throw new Error("the signing key must be an RSA private key (PKCS#8 PEM)");
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
  const header = b64url(JSON.stringify({ alg: "RS256", kid, x5t: b64url(thumbprint), typ: "JWT" }));
  const jwk = publicKey.export({ format: "jwk" }) as { kty: string; n: string; e: string };
  const privateDer = privateKey.export({ type: "pkcs8", format: "der" });

  return {
    kid,
    sign(claims) {
      const signingInput = `${header}.${b64url(JSON.stringify(claims))}`;
      return `${signingInput}.${b64url(sign("sha256", Buffer.from(signingInput), privateKey))}`;
    },
    verify(token) {
      const parts = token.split(".");
      if (parts.length !== 3 || parts[0] !== header) {
        return undefined;
      }
      const ok = verify(
        "sha256",
        Buffer.from(`${parts[0]}.${parts[1]}`),
        publicKey,
        Buffer.from(parts[2]!, "base64url"),
      );
      if (!ok) {
        return undefined;
      }
      try {
        return JSON.parse(Buffer.from(parts[1]!, "base64url").toString("utf8")) as AcsTokenClaims;
      } catch {
        return undefined;
      }
    },
    jwks() {
      return {
        keys: [
          {
            kty: jwk.kty,
            n: jwk.n,
            e: jwk.e,
            kid,
            x5t: b64url(thumbprint),
            alg: "RS256",
            use: "sig",
          },
        ],
      };
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
