/**
 * The identity directory: durable records of the ACS identities the gateway creates or
 * provisions, their lifecycle events (outbox) and the events' webhook delivery. See
 * docs/directory.md for the design, the schema and how the gateway wires it.
 */
export { systemClock, type Clock } from "./clock.js";
export {
  createPgliteDb,
  createPostgresDb,
  DatabaseNotOpenError,
  isUniqueViolation,
  openDirectoryDb,
  openEmbeddedPglite,
  type Db,
  type OpenedDirectoryDb,
  type Queryable,
  type QueryResult,
} from "./db.js";
export {
  createDirectory,
  likePrefix,
  MAX_TOUCHES,
  type CreateDetails,
  type Directory,
  type DirectoryIdentity,
  type DirectoryOptions,
  type IdentityConnection,
  type ImportRecord,
  type ListArgs,
  type Reservation,
} from "./directory.js";
export {
  DirectoryBusyError,
  DirectoryConflictError,
  DirectoryInputError,
  DirectoryRecordError,
} from "./errors.js";
export {
  EVENT_TYPES,
  OUTBOX_CHANNEL,
  type IdentityOrigin,
  type LifecycleEventBody,
  type LifecycleEventType,
} from "./events.js";
export {
  DIRECTORY_SCHEMA,
  migrate,
  migrateDirectory,
  type Migration,
  type Schema,
} from "./migrations.js";
export {
  createWebhookDispatcher,
  type Backlog,
  type DeliveryReport,
  type WebhookDispatcher,
  type WebhookDispatcherOptions,
} from "./webhooks.js";
