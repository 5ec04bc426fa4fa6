/**
 * An unsigned-looking JWT with the given claims (the signature part is filler), the shape of an
 * Entra token as far as the emulator's unverified modes look at it.
 */
export function unsignedJwt(claims: Record<string, unknown>): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${part({ alg: "RS256", typ: "JWT", kid: "test" })}.${part(claims)}.c2lnbmF0dXJl`;
}
