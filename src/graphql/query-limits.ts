import {
  GraphQLError,
  Kind,
  type ASTVisitor,
  type DocumentNode,
  type OperationDefinitionNode,
  type SelectionSetNode,
  type ValidationContext,
  type ValidationRule,
} from "graphql";
import type { Config } from "../config.js";

/**
 * Per-operation limits as graphql-js validation rules (Apollo Server's `validationRules`), so they
 * run before any resolver, and so before any upstream call: 50 aliased `issueToken` fields are
 * refused without one ACS request.
 *
 * Each operation is measured once (shared by the three rules) with fragments expanded. Fragment
 * results are memoised by name, so a document of fragments that each spread the next one twice
 * costs linear time instead of exponential; the counts it yields are exact (and huge), not capped.
 * Fragment cycles are cut (a spread of a fragment being measured counts as empty): these rules may
 * run before NoFragmentCyclesRule rejects the document, and must terminate on it.
 */

/**
 * Introspection subtrees do not count towards depth: Sandbox's introspection query is about 15
 * levels deep, only introspection types are reachable below these fields, and production disables
 * introspection altogether. Their aliases and their own level still count.
 */
const INTROSPECTION = new Set(["__schema", "__type"]);

/** The code Apollo gives every validation failure; set here too so it holds outside Apollo. */
const CODE = "GRAPHQL_VALIDATION_FAILED";

interface Measure {
  /** Field levels below and including this selection set's fields (0 for an empty set). */
  height: number;
  /** Aliased fields, counting a fragment once per spread (as execution would visit them). */
  aliases: number;
  /** Fields of this selection set itself, through fragments and inline fragments, not below. */
  fields: number;
}

const EMPTY: Measure = { height: 0, aliases: 0, fields: 0 };

function measureOperation(context: ValidationContext, operation: OperationDefinitionNode): Measure {
  const fragments = new Map<string, Measure | "measuring">();

  const measure = (set: SelectionSetNode): Measure => {
    let height = 0;
    let aliases = 0;
    let fields = 0;
    for (const selection of set.selections) {
      let inner: Measure;
      if (selection.kind === Kind.FIELD) {
        const aliased = selection.alias !== undefined ? 1 : 0;
        const below = selection.selectionSet ? measure(selection.selectionSet) : EMPTY;
        const exempt = INTROSPECTION.has(selection.name.value);
        height = Math.max(height, exempt ? 1 : 1 + below.height);
        aliases += aliased + below.aliases;
        fields += selection.name.value === "__typename" ? 0 : 1;
        continue;
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        inner = measure(selection.selectionSet);
      } else {
        inner = spread(selection.name.value);
      }
      height = Math.max(height, inner.height);
      aliases += inner.aliases;
      fields += inner.fields;
    }
    return { height, aliases, fields };
  };

  const spread = (name: string): Measure => {
    const known = fragments.get(name);
    if (known === "measuring") {
      return EMPTY; // a cycle: invalid anyway, and NoFragmentCyclesRule says so
    }
    if (known) {
      return known;
    }
    const fragment = context.getFragment(name);
    if (!fragment) {
      return EMPTY; // unknown fragment: KnownFragmentNamesRule reports it
    }
    fragments.set(name, "measuring");
    const result = measure(fragment.selectionSet);
    fragments.set(name, result);
    return result;
  };

  return measure(operation.selectionSet);
}

/** One measurement per operation per document, however many of the rules run. */
const measured = new WeakMap<DocumentNode, WeakMap<OperationDefinitionNode, Measure>>();

function measureOf(context: ValidationContext, operation: OperationDefinitionNode): Measure {
  const document = context.getDocument();
  let byOperation = measured.get(document);
  if (!byOperation) {
    byOperation = new WeakMap();
    measured.set(document, byOperation);
  }
  let result = byOperation.get(operation);
  if (!result) {
    result = measureOperation(context, operation);
    byOperation.set(operation, result);
  }
  return result;
}

/** Counts from a fragment bomb can be astronomically large; say so without printing 1e+300. */
const count = (n: number) => (n > 1_000_000 ? "more than 1000000" : String(n));

function operationRule(
  check: (measure: Measure, operation: OperationDefinitionNode) => string | undefined,
): ValidationRule {
  return (context): ASTVisitor => ({
    OperationDefinition(node) {
      const problem = check(measureOf(context, node), node);
      if (problem) {
        context.reportError(
          new GraphQLError(problem, { nodes: [node], extensions: { code: CODE } }),
        );
      }
      return false; // the rule needs nothing below the operation node from the visitor
    },
  });
}

const named = (operation: OperationDefinitionNode) =>
  operation.name ? `The operation ${operation.name.value}` : "The operation";

/** Deepest field nesting, root fields being level 1; introspection subtrees exempt. */
export function depthLimit(max: number): ValidationRule {
  return operationRule(({ height }, operation) =>
    height > max
      ? `${named(operation)} is ${count(height)} levels deep; at most ${max} are allowed.`
      : undefined,
  );
}

/** Aliased fields in the whole operation, in fragments too (once per spread). */
export function aliasLimit(max: number): ValidationRule {
  return operationRule(({ aliases }, operation) =>
    aliases > max
      ? `${named(operation)} uses ${count(aliases)} aliases; at most ${max} are allowed.`
      : undefined,
  );
}

/** Fields selected at the operation's root, through fragments; `__typename` is free. */
export function rootFieldLimit(max: number): ValidationRule {
  return operationRule(({ fields }, operation) =>
    fields > max
      ? `${named(operation)} selects ${count(fields)} root fields; at most ${max} are allowed.`
      : undefined,
  );
}

export function createQueryLimitRules(limits: Config["limits"]): ValidationRule[] {
  return [
    depthLimit(limits.maxDepth),
    aliasLimit(limits.maxAliases),
    rootFieldLimit(limits.maxRootFields),
  ];
}
