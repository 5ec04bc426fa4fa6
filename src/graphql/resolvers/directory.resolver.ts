import { Args, Ctx, FieldResolver, Mutation, Query, Resolver, Root } from "type-graphql";
import type { DirectoryIdentity } from "../../directory/index.js";
import { invalidInput, notFound } from "../../errors.js";
import {
  checkExternalId,
  checkUserId,
  CommunicationUserArgs,
  CommunicationUsersArgs,
  displayNameOf,
  pageSizeOf,
  UpdateUserArgs,
} from "../args/directory.args.js";
import type { SignedInContext } from "../context.js";
import {
  recordByExternalId,
  recordById,
  remember,
  type DirectoryContext,
} from "../directory-records.js";
import { CommunicationUserConnection } from "../types/communication-user-connection.type.js";
import { CommunicationUser } from "../types/communication-user.type.js";

/** The record behind a user's directory fields: the payload's own, or read once per request. */
async function recordOf(
  user: CommunicationUser,
  context: DirectoryContext,
): Promise<DirectoryIdentity | undefined> {
  if (user.record !== undefined) {
    return user.record ?? undefined;
  }
  const record = await recordById(context, user.id);
  user.record = record ?? null;
  return record;
}

/** The user of a record, which later fields of the request read without a query. */
export function userOf(context: DirectoryContext, identity: DirectoryIdentity): CommunicationUser {
  remember(context, identity);
  return CommunicationUser.from(identity);
}

/**
 * The directory's fields of every CommunicationUser, wherever it appears (a payload, `me`,
 * `_entities`, a page). Null when the directory does not know the identity (one created before
 * the directory and never imported).
 */
@Resolver(() => CommunicationUser)
export class CommunicationUserResolver {
  @FieldResolver()
  async externalId(
    @Root() user: CommunicationUser,
    @Ctx() context: DirectoryContext,
  ): Promise<string | null> {
    return (await recordOf(user, context))?.externalId ?? null;
  }

  @FieldResolver()
  async displayName(
    @Root() user: CommunicationUser,
    @Ctx() context: DirectoryContext,
  ): Promise<string | null> {
    return (await recordOf(user, context))?.displayName ?? null;
  }

  @FieldResolver()
  async createdAt(
    @Root() user: CommunicationUser,
    @Ctx() context: DirectoryContext,
  ): Promise<Date | null> {
    return (await recordOf(user, context))?.createdAt ?? null;
  }

  @FieldResolver()
  async lastTokenIssuedAt(
    @Root() user: CommunicationUser,
    @Ctx() context: DirectoryContext,
  ): Promise<Date | null> {
    return (await recordOf(user, context))?.lastTokenIssuedAt ?? null;
  }

  @FieldResolver()
  async deletedAt(
    @Root() user: CommunicationUser,
    @Ctx() context: DirectoryContext,
  ): Promise<Date | null> {
    return (await recordOf(user, context))?.deletedAt ?? null;
  }
}

/** The directory of identities, for admins (the rights table); end users see theirs through `me`. */
@Resolver()
export class DirectoryResolver {
  @Query(() => CommunicationUser, {
    nullable: true,
    description:
      "One identity, by exactly one of `id` (deleted ones too, with `deletedAt`) or `externalId` (live ones); null when unknown. Admins only.",
  })
  async communicationUser(
    @Ctx() context: SignedInContext,
    @Args(() => CommunicationUserArgs) { id, externalId }: CommunicationUserArgs,
  ): Promise<CommunicationUser | null> {
    const byId = id !== undefined && id !== null;
    if (byId === (externalId !== undefined && externalId !== null)) {
      throw invalidInput("Give exactly one of id and externalId.", byId ? "externalId" : "id");
    }
    if (byId) {
      checkUserId(id, "id");
      const identity = await recordById(context, id);
      return identity ? CommunicationUser.from(identity) : null;
    }
    checkExternalId(externalId!);
    const identity = await recordByExternalId(context, externalId!);
    return identity ? CommunicationUser.from(identity) : null;
  }

  @Query(() => CommunicationUserConnection, {
    description:
      "The identities in creation order, a page at a time (`first` 1 to 100, default 20; `after`: the previous page's `endCursor`). Admins only.",
  })
  async communicationUsers(
    @Ctx() context: SignedInContext,
    @Args(() => CommunicationUsersArgs) { first, after, filter }: CommunicationUsersArgs,
  ): Promise<CommunicationUserConnection> {
    const size = pageSizeOf(first);
    const prefix = filter?.externalIdPrefix;
    if (prefix) {
      checkExternalId(prefix, "externalIdPrefix");
    }
    const page = await context.directory.list({
      first: size,
      after: after ?? null,
      externalIdPrefix: prefix || null,
      includeDeleted: filter?.includeDeleted === true,
    });
    for (const { node } of page.edges) {
      remember(context, node);
    }
    return CommunicationUserConnection.from(page);
  }

  @Mutation(() => CommunicationUser, {
    description:
      'Changes an identity\'s display name (null or `""` clears it). NOT_FOUND for an unknown or deleted identity. Admins only.',
  })
  async updateUser(
    @Ctx() context: SignedInContext,
    @Args(() => UpdateUserArgs) args: UpdateUserArgs,
  ): Promise<CommunicationUser> {
    checkUserId(args.userId);
    const displayName = displayNameOf(args.displayName);
    if (displayName === undefined) {
      // Nothing to change: the identity as it is, if it is live.
      const current = await recordById(context, args.userId);
      if (!current || current.deletedAt !== null) {
        throw notFound();
      }
      return CommunicationUser.from(current);
    }
    const identity = await context.directory.updateDisplayName(
      context.actor,
      args.userId,
      displayName,
    );
    return userOf(context, identity);
  }
}
