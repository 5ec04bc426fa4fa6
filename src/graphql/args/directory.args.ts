import { ArgsType, Field, ID, InputType, Int } from "type-graphql";
import { DomainError, invalidInput } from "../../errors.js";
import type { CreateUserInput } from "../../identity/identity-directory.js";
import { isDirectoryText, MAX_DIRECTORY_TEXT } from "../../identity/external-id.js";
import { isAcsUserId } from "../../tokens/scopes.js";

export { MAX_DIRECTORY_TEXT };
export const MAX_PAGE_SIZE = 100;
export const DEFAULT_PAGE_SIZE = 20;

function printable(name: string, value: string, maxLength = MAX_DIRECTORY_TEXT): void {
  if (!isDirectoryText(value, maxLength)) {
    throw invalidInput(
      `${name} must be 1 to ${maxLength} printable characters (no control characters or line breaks).`,
      name,
    );
  }
}

/**
 * The rules of the directory's arguments, checked before any call (docs/directory.md):
 * - `externalId`: 1 to 256 printable characters, taken exactly as sent (case and spaces count);
 * - `displayName`: up to 256 printable characters; `""` or null means none;
 * - `externalIdPrefix`: like an external id; `""` or null means no filter;
 * - `first`: 1 to 100, 20 when omitted (never clamped).
 */
export function checkExternalId(externalId: string, name = "externalId"): void {
  printable(name, externalId);
}

/** The display name to store: null for `""` or null; undefined when absent (no change). */
export function displayNameOf(value: string | null | undefined): string | null | undefined {
  if (value === undefined || value === null || value === "") {
    return value === undefined ? undefined : null;
  }
  printable("displayName", value);
  return value;
}

export function checkUserId(userId: string, name = "userId"): void {
  if (!isAcsUserId(userId)) {
    throw invalidInput(
      `${name} is not an ACS communication user id (8:acs:<resource>_<user>).`,
      name,
    );
  }
}

export function pageSizeOf(first: number | null | undefined): number {
  const size = first ?? DEFAULT_PAGE_SIZE;
  if (!Number.isInteger(size) || size < 1 || size > MAX_PAGE_SIZE) {
    // The reason the directory's own check gives (docs/directory.md): checked here first so that
    // nothing is read for a page that would be refused.
    throw new DomainError(
      "invalid-input",
      `first must be from 1 to ${MAX_PAGE_SIZE} (default ${DEFAULT_PAGE_SIZE}).`,
      { field: "first", reason: "BAD_PAGE_SIZE" },
    );
  }
  return size;
}

@InputType({ description: "Which identities `communicationUsers` lists." })
export class CommunicationUserFilter {
  @Field(() => String, {
    nullable: true,
    description:
      "Only identities whose external id starts with this, taken literally (`%` and `_` are plain characters; case counts).",
  })
  externalIdPrefix?: string | null;

  @Field(() => Boolean, {
    nullable: true,
    description: "Deleted identities too (with `deletedAt` set); false by default.",
  })
  includeDeleted?: boolean | null;
}

@ArgsType()
export class CommunicationUserArgs {
  @Field(() => ID, { nullable: true, description: "The ACS id; give this or `externalId`." })
  id?: string | null;

  @Field(() => String, {
    nullable: true,
    description: "The app's own id of a live identity; give this or `id`.",
  })
  externalId?: string | null;
}

@ArgsType()
export class CommunicationUsersArgs {
  @Field(() => Int, { nullable: true, description: "Page size, 1 to 100; 20 when omitted." })
  first?: number | null;

  @Field(() => String, {
    nullable: true,
    description: "The `endCursor` (or an edge's `cursor`) of the previous page.",
  })
  after?: string | null;

  @Field(() => CommunicationUserFilter, { nullable: true })
  filter?: CommunicationUserFilter | null;
}

@ArgsType()
export class CreateUserArgs {
  @Field(() => String, {
    nullable: true,
    description:
      "The app's own id for the person (1 to 256 printable characters). With it the call is idempotent: the live identity with this external id is returned, never a second one.",
  })
  externalId?: string | null;

  @Field(() => String, {
    nullable: true,
    description: "Up to 256 printable characters. Not changed when the identity already exists.",
  })
  displayName?: string | null;
}

/** createUser's arguments, checked, as the token service takes them. */
export function createUserInput(args: CreateUserArgs): CreateUserInput {
  const input: CreateUserInput = {};
  if (args.externalId !== undefined && args.externalId !== null) {
    checkExternalId(args.externalId);
    input.externalId = args.externalId;
  }
  const displayName = displayNameOf(args.displayName);
  if (displayName) {
    input.displayName = displayName;
  }
  return input;
}

@ArgsType()
export class UpdateUserArgs {
  @Field(() => ID)
  userId!: string;

  @Field(() => String, {
    nullable: true,
    description:
      'The new display name (up to 256 printable characters); null or `""` clears it, omitted leaves it as it is.',
  })
  displayName?: string | null;
}
