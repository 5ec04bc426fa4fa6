/** A caller's input the directory refuses (bad cursor, page size, prefix...): a client error. */
export class DirectoryInputError extends Error {
  constructor(
    readonly code: "BAD_CURSOR" | "BAD_PAGE_SIZE" | "BAD_INPUT",
    message: string,
  ) {
    super(message);
    this.name = "DirectoryInputError";
  }
}

/** The external id already names another live identity. */
export class DirectoryConflictError extends Error {
  constructor(readonly externalId: string) {
    super("the external id already belongs to another identity");
    this.name = "DirectoryConflictError";
  }
}

/**
 * Another caller's create for this external id did not finish in the wait allowed: retryable
 * (its lease expires and the next call takes over).
 */
export class DirectoryBusyError extends Error {
  constructor(readonly externalId: string) {
    super("an identity for this external id is being created; retry shortly");
    this.name = "DirectoryBusyError";
  }
}

/**
 * ACS created the identity but the directory could not record it (database unavailable after
 * retries). `userId` is the created identity: the caller may still return it, and should log it
 * so that an operator can import it (otherwise the next call for the external id creates another).
 */
export class DirectoryRecordError extends Error {
  constructor(
    readonly userId: string,
    readonly externalId: string,
    options: { cause: unknown },
  ) {
    super("the identity was created at ACS but could not be recorded in the directory", options);
    this.name = "DirectoryRecordError";
  }
}
