import type { DirectoryIdentity, IdentityConnection, ListArgs } from "../directory/index.js";
import type { Actor } from "../tokens/upstream-budget.js";

/**
 * What the GraphQL layer asks of the directory of identities (src/directory/): the admin
 * queries and `updateUser`, and the records behind `CommunicationUser`'s fields, `me` and
 * `_entities` by `externalId`. Implemented over `createDirectory` in src/app/; errors are the
 * domain's (`BAD_USER_INPUT` for a bad cursor or page size, `NOT_FOUND` for an unknown user).
 */
export interface IdentityDirectory {
  /** The identity with this ACS id, deleted or not; undefined when the directory never saw it. */
  get(id: string): Promise<DirectoryIdentity | undefined>;
  /** The live identity with this external id. */
  getByExternalId(externalId: string): Promise<DirectoryIdentity | undefined>;
  /** A page in creation order (Relay connection); `first` 1..100. */
  list(args: ListArgs): Promise<IdentityConnection>;
  /** Sets (or clears, with null) the display name; `identity.updated` when it changed. */
  updateDisplayName(
    actor: Actor,
    id: string,
    displayName: string | null,
  ): Promise<DirectoryIdentity>;
}

/** `createUser`'s input: both optional; with `externalId` the create is idempotent. */
export interface CreateUserInput {
  externalId?: string | undefined;
  displayName?: string | undefined;
}
