import { GraphQLError, parse, type DocumentNode, type ValidationRule } from "graphql";
import { documentBoundsProblem, type DocumentBounds } from "../../graphql/document-bounds.js";

const PROBLEM = Symbol("document bounds problem");

/** A document that is cheap to validate and carries why the real one was set aside. */
function standIn(problem: string): DocumentNode {
  return Object.assign(parse("{ __typename }"), { [PROBLEM]: problem });
}

/**
 * Checks a freshly parsed document's bounds (graphql/document-bounds.ts) before Apollo validates
 * it. Apollo offers no hook that may refuse a document between parsing and validation (an error
 * thrown there becomes a 500), so a document out of bounds is swapped for a tiny stand-in that the
 * `documentBoundsRule` below refuses with the problem: the client gets an ordinary 400
 * GRAPHQL_VALIDATION_FAILED, and the expensive validation rules never see the real document.
 * Runs only when Apollo's document store does not hold the document yet, so repeated operations
 * (the token path) pay nothing.
 */
export function swapOutOfBoundsDocument(
  requestContext: { document: DocumentNode },
  bounds?: DocumentBounds,
): void {
  const problem = documentBoundsProblem(requestContext.document, bounds);
  if (problem !== undefined) {
    requestContext.document = standIn(problem);
  }
}

/** Reports the problem a stand-in document carries; a no-op for every real document. */
export const documentBoundsRule: ValidationRule = (context) => {
  const problem = (context.getDocument() as { [PROBLEM]?: string })[PROBLEM];
  if (problem !== undefined) {
    context.reportError(new GraphQLError(problem));
  }
  return {};
};
