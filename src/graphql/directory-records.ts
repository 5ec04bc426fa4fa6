import type { DirectoryIdentity } from "../directory/index.js";
import type { GatewayContext } from "./context.js";

/** What the directory's resolvers read: the request's context, with `directory` among its services. */
export type DirectoryContext = Pick<GatewayContext, "directory">;

interface RequestRecords {
  byId: Map<string, Promise<DirectoryIdentity | undefined>>;
  byExternalId: Map<string, Promise<DirectoryIdentity | undefined>>;
}

/**
 * The records a request has read, keyed by its context object (one per request, dropped with it):
 * however many fields, payload items or entity representations ask, one directory read per
 * distinct id (or external id) per request, and none for a record a payload already brought.
 */
const perRequest = new WeakMap<object, RequestRecords>();

function recordsOf(context: object): RequestRecords {
  let records = perRequest.get(context);
  if (!records) {
    records = { byId: new Map(), byExternalId: new Map() };
    perRequest.set(context, records);
  }
  return records;
}

/** Later reads of this identity in the request answer with `identity`, without a query. */
export function remember(context: DirectoryContext, identity: DirectoryIdentity): void {
  const records = recordsOf(context);
  records.byId.set(identity.id, Promise.resolve(identity));
  if (identity.externalId !== null && identity.deletedAt === null) {
    records.byExternalId.set(identity.externalId, Promise.resolve(identity));
  }
}

function memoised(
  memo: Map<string, Promise<DirectoryIdentity | undefined>>,
  key: string,
  load: () => Promise<DirectoryIdentity | undefined>,
): Promise<DirectoryIdentity | undefined> {
  let pending = memo.get(key);
  if (!pending) {
    pending = load();
    memo.set(key, pending);
    // A failed read is not remembered: a later field of the request may try again.
    pending.catch(() => memo.delete(key));
  }
  return pending;
}

/** The record of the identity with this ACS id (deleted or not), read at most once per request. */
export function recordById(
  context: DirectoryContext,
  id: string,
): Promise<DirectoryIdentity | undefined> {
  return memoised(recordsOf(context).byId, id, () => context.directory.get(id));
}

/** The live identity with this external id, read at most once per request. */
export async function recordByExternalId(
  context: DirectoryContext,
  externalId: string,
): Promise<DirectoryIdentity | undefined> {
  const identity = await memoised(recordsOf(context).byExternalId, externalId, () =>
    context.directory.getByExternalId(externalId),
  );
  if (identity) {
    remember(context, identity);
  }
  return identity;
}
