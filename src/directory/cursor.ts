import { z } from "zod";
import { DirectoryInputError } from "./errors.js";

/**
 * Paging cursors: base64url of the row's sort key (created_at, id) with a version tag. Opaque to
 * clients (they must not build or parse them) but stateless for us: any instance continues any
 * page, and a row deleted in between does not break the page after it (keyset, not offset).
 */
export interface SortKey {
  createdAt: Date;
  id: string;
}

const CURSOR = z.tuple([
  z.literal(1),
  z.iso.datetime({ offset: false, precision: 3 }),
  z.string().min(1).max(256),
]);

export function encodeCursor(key: SortKey): string {
  return Buffer.from(JSON.stringify([1, key.createdAt.toISOString(), key.id])).toString(
    "base64url",
  );
}

export function decodeCursor(cursor: string): SortKey {
  const invalid = () => new DirectoryInputError("BAD_CURSOR", "the `after` cursor is not valid");
  if (cursor.length === 0 || cursor.length > 512 || !/^[A-Za-z0-9_-]+$/.test(cursor)) {
    throw invalid();
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    throw invalid();
  }
  const result = CURSOR.safeParse(parsed);
  if (!result.success) {
    throw invalid();
  }
  const [, createdAt, id] = result.data;
  // A well-formed date PostgreSQL cannot compare (year 0000: "out of range") would fail the query
  // instead, answered as the directory being unavailable. No row was created outside these years.
  const year = Number(createdAt.slice(0, 4));
  if (year < 1970 || year > 9999) {
    throw invalid();
  }
  return { createdAt: new Date(createdAt), id };
}
