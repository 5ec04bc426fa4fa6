/**
 * What the directory takes as an external id or display name (docs/directory.md), in one place:
 * the GraphQL arguments check it before any call, and the JWT verifier takes a caller's external
 * id claim only when it passes, so that a sign-in never ends in an input error about an argument
 * the caller did not send.
 */

/**
 * The longest external id, display name or prefix, in UTF-16 code units. An external id is a
 * btree key in PostgreSQL, which caps an index entry at about 2.7 KB: 256 characters of up to 4
 * UTF-8 bytes each stay below it.
 */
export const MAX_DIRECTORY_TEXT = 256;

/**
 * "Printable": no control characters (C0, DEL, C1), no line or paragraph separators, no lone
 * surrogates. Spaces and any other Unicode letter, digit, symbol or punctuation are fine.
 */
const UNPRINTABLE = /[\p{Cc}\p{Zl}\p{Zp}\p{Cs}]/u;

/** 1 to `maxLength` printable characters. */
export function isDirectoryText(value: string, maxLength = MAX_DIRECTORY_TEXT): boolean {
  return value.length > 0 && value.length <= maxLength && !UNPRINTABLE.test(value);
}
