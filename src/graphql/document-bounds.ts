import { BREAK, Kind, visit, type DocumentNode, type SelectionSetNode } from "graphql";

/**
 * Bounds on a parsed document, checked BEFORE graphql-js validation. Validation's
 * OverlappingFieldsCanBeMerged rule compares every pair of selections sharing a response name, so
 * `{ ... on CommunicationUser { id id id ... } }` within the body limit took seconds of CPU while
 * passing the depth, alias and root-field limits (which are validation rules themselves, and so run
 * too late to help). These checks are linear in the document's size:
 * - at most `maxSelections` fields, inline fragments and fragment spreads in the whole document
 *   (Sandbox's own introspection query needs about 90);
 * - within one selection set, counting through inline fragments, at most `maxSameName` selections
 *   with the same response name (real operations repeat a name only when merging fragments).
 * Together they cap what OverlappingFieldsCanBeMerged can be made to compare at a few thousand pairs.
 */
export interface DocumentBounds {
  /** @default 150 */
  maxSelections: number;
  /** @default 5 */
  maxSameName: number;
}

export const DEFAULT_DOCUMENT_BOUNDS: DocumentBounds = { maxSelections: 150, maxSameName: 5 };

/** Parser bound: enough for Sandbox's introspection query; a 32 KB body of `id id ...` is not. */
export const MAX_DOCUMENT_TOKENS = 2000;

/** Why the document is out of bounds (a message for the client), or undefined when it is not. */
export function documentBoundsProblem(
  document: DocumentNode,
  bounds: DocumentBounds = DEFAULT_DOCUMENT_BOUNDS,
): string | undefined {
  let selections = 0;
  let problem: string | undefined;
  visit(document, {
    SelectionSet(node) {
      selections += node.selections.length;
      problem =
        selections > bounds.maxSelections
          ? `The document has more than ${bounds.maxSelections} selections; split it into smaller operations.`
          : sameNameProblem(node, bounds.maxSameName);
      return problem === undefined ? undefined : BREAK;
    },
  });
  return problem;
}

function sameNameProblem(set: SelectionSetNode, max: number): string | undefined {
  const seen = new Map<string, number>();
  const walk = (inner: SelectionSetNode): string | undefined => {
    for (const selection of inner.selections) {
      if (selection.kind === Kind.INLINE_FRAGMENT) {
        const found = walk(selection.selectionSet);
        if (found !== undefined) {
          return found;
        }
      } else if (selection.kind === Kind.FIELD) {
        const name = selection.alias?.value ?? selection.name.value;
        const count = (seen.get(name) ?? 0) + 1;
        if (count > max) {
          return `"${name}" is selected more than ${max} times in one selection set.`;
        }
        seen.set(name, count);
      }
    }
    return undefined;
  };
  return walk(set);
}
