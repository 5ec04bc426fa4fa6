import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  hkdfSync,
  randomBytes,
  type CipherKey,
} from "node:crypto";
import type { IssuedToken } from "../identity/identity-provider.js";

/**
 * Cached tokens are sealed with AES-256-GCM before they reach Redis (Microsoft: "encrypt tokens
 * that you cache in a backing store"). The additional authenticated data binds a sealed value to
 * the key it was written under (and to the entry's epoch header), so a value copied to another
 * key, or a header rewritten to a newer epoch, fails to open instead of being served.
 *
 * Sealed layout: 12-byte random IV | ciphertext | 16-byte tag.
 * Plaintext layout: expiresOn (float64 BE, epoch ms) | token (utf8). No JSON on the hot path.
 * The key may be a KeyObject (`createSecretKey`, made once): a Buffer is turned into one by every
 * cipher created with it.
 */
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;

export function seal(key: CipherKey, aad: string, plaintext: Buffer): Buffer {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key, iv);
  cipher.setAAD(Buffer.from(aad, "utf8"));
  const body = cipher.update(plaintext);
  cipher.final();
  return Buffer.concat([iv, body, cipher.getAuthTag()]);
}

/** `undefined` when the value is malformed, tampered with, bound to another key, or sealed with another key. */
export function open(key: CipherKey, aad: string, sealed: Buffer): Buffer | undefined {
  if (sealed.length < IV_BYTES + TAG_BYTES) {
    return undefined;
  }
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, sealed.subarray(0, IV_BYTES));
    decipher.setAAD(Buffer.from(aad, "utf8"));
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    const body = decipher.update(sealed.subarray(IV_BYTES, sealed.length - TAG_BYTES));
    decipher.final();
    return body;
  } catch {
    return undefined;
  }
}

export function encodeToken(token: IssuedToken): Buffer {
  const text = Buffer.from(token.token, "utf8");
  const out = Buffer.allocUnsafe(8 + text.length);
  out.writeDoubleBE(token.expiresOn, 0);
  text.copy(out, 8);
  return out;
}

export function decodeToken(plaintext: Buffer): IssuedToken | undefined {
  if (plaintext.length < 9) {
    return undefined;
  }
  return { expiresOn: plaintext.readDoubleBE(0), token: plaintext.toString("utf8", 8) };
}

export function sealToken(key: CipherKey, aad: string, token: IssuedToken): Buffer {
  return seal(key, aad, encodeToken(token));
}

export function openToken(key: CipherKey, aad: string, sealed: Buffer): IssuedToken | undefined {
  const plaintext = open(key, aad, sealed);
  return plaintext && decodeToken(plaintext);
}

function accessKeyBytes(accessKey: string): Buffer {
  // ACS access keys are base64; anything else is used as its utf8 bytes rather than refused here
  // (config.ts validates the connection string).
  const decoded = Buffer.from(accessKey, "base64");
  return decoded.length >= 16 ? decoded : Buffer.from(accessKey, "utf8");
}

/**
 * The encryption key when TOKEN_CACHE_ENCRYPTION_KEY is not set: HKDF-SHA256 over the ACS access
 * key. Every instance with the same connection string derives the same key, and a rotated access
 * key gives a new one (old values then fail to open: misses, never errors).
 */
export function deriveCacheKey(accessKey: string): Buffer {
  return Buffer.from(
    hkdfSync(
      "sha256",
      accessKeyBytes(accessKey),
      Buffer.from("acsgw token cache", "utf8"),
      Buffer.from("aes-256-gcm key v1", "utf8"),
      KEY_BYTES,
    ),
  );
}

/** Throws when a configured key is not 32 bytes (config.ts already refuses it; this guards direct use). */
export function assertCacheKey(key: Buffer): Buffer {
  if (key.length !== KEY_BYTES) {
    throw new Error("the token cache encryption key must be 32 bytes");
  }
  return key;
}

/**
 * 12 hex characters naming the ACS resource and key a cached token belongs to. Part of every
 * Redis key, so rotating the access key (which revokes every token at ACS) moves the gateway to an
 * empty namespace. An HMAC keyed with the access key: the fingerprint tells nothing about the key.
 */
export function namespaceFingerprint(endpoint: string, accessKey: string): string {
  let normalised = endpoint.trim().toLowerCase();
  try {
    normalised = new URL(endpoint).toString().toLowerCase();
  } catch {
    // keep the trimmed text
  }
  return createHmac("sha256", accessKeyBytes(accessKey))
    .update(`acsgw namespace v1\n${normalised}`)
    .digest("hex")
    .slice(0, 12);
}
