import {
  GraphQLError,
  Kind,
  type ASTVisitor,
  type SelectionSetNode,
  type ValidationContext,
  type ValidationRule,
} from "graphql";
import type { Config } from "../config.js";

/**
 * Per-operation limits, enforced at validation, i.e. before any resolver (and so any upstream
 * call) runs. Fragments are followed with a guard, because these rules may run before
 * NoFragmentCyclesRule has rejected a cyclic document.
 */

const INTROSPECTION = new Set(["__schema", "__type"]);

interface Walk {
  depth: number;
  aliases: number;
}

/** Deepest field nesting and aliased-field count of a selection set, fragments expanded. */
function walk(
  context: ValidationContext,
  selectionSet: SelectionSetNode,
  depth: number,
  visiting: Set<string>,
  budget: { nodes: number },
): Walk {
  let result: Walk = { depth, aliases: 0 };
  for (const selection of selectionSet.selections) {
    if (--budget.nodes < 0) {
      break; // a pathological document: stop counting, the limits below will already be hit
    }
    let inner: Walk | undefined;
    if (selection.kind === Kind.FIELD) {
      const aliased = selection.alias !== undefined ? 1 : 0;
      if (INTROSPECTION.has(selection.name.value)) {
        // Sandbox's introspection query is deep by nature; it is harmless and disabled in production.
        inner = { depth, aliases: aliased };
      } else if (selection.selectionSet) {
        const child = walk(context, selection.selectionSet, depth + 1, visiting, budget);
        inner = { depth: child.depth, aliases: child.aliases + aliased };
      } else {
        inner = { depth, aliases: aliased };
      }
    } else if (selection.kind === Kind.INLINE_FRAGMENT) {
      inner = walk(context, selection.selectionSet, depth, visiting, budget);
    } else {
      const name = selection.name.value;
      const fragment = context.getFragment(name);
      if (fragment && !visiting.has(name)) {
        visiting.add(name);
        inner = walk(context, fragment.selectionSet, depth, visiting, budget);
        visiting.delete(name);
      }
    }
    if (inner) {
      result = {
        depth: Math.max(result.depth, inner.depth),
        aliases: result.aliases + inner.aliases,
      };
    }
  }
  return result;
}

/** Root fields of an operation, through fragments and inline fragments on the root type. */
function countRootFields(
  context: ValidationContext,
  selectionSet: SelectionSetNode,
  visiting: Set<string>,
): number {
  let count = 0;
  for (const selection of selectionSet.selections) {
    if (selection.kind === Kind.FIELD) {
      count += selection.name.value === "__typename" ? 0 : 1;
    } else if (selection.kind === Kind.INLINE_FRAGMENT) {
      count += countRootFields(context, selection.selectionSet, visiting);
    } else {
      const name = selection.name.value;
      const fragment = context.getFragment(name);
      if (fragment && !visiting.has(name)) {
        visiting.add(name);
        count += countRootFields(context, fragment.selectionSet, visiting);
        visiting.delete(name);
      }
    }
  }
  return count;
}

function operationRule(
  check: (context: ValidationContext, selectionSet: SelectionSetNode) => string | undefined,
): ValidationRule {
  return (context): ASTVisitor => ({
    OperationDefinition(node) {
      const problem = check(context, node.selectionSet);
      if (problem) {
        context.reportError(new GraphQLError(problem, { nodes: [node] }));
      }
    },
  });
}

const NODE_BUDGET = 10_000;

export function depthLimit(max: number): ValidationRule {
  return operationRule((context, set) => {
    const { depth } = walk(context, set, 1, new Set(), { nodes: NODE_BUDGET });
    return depth > max
      ? `The operation is ${depth} levels deep; at most ${max} are allowed.`
      : undefined;
  });
}

export function aliasLimit(max: number): ValidationRule {
  return operationRule((context, set) => {
    const { aliases } = walk(context, set, 1, new Set(), { nodes: NODE_BUDGET });
    return aliases > max
      ? `The operation uses ${aliases} aliases; at most ${max} are allowed.`
      : undefined;
  });
}

export function rootFieldLimit(max: number): ValidationRule {
  return operationRule((context, set) => {
    const count = countRootFields(context, set, new Set());
    return count > max
      ? `The operation selects ${count} root fields; at most ${max} are allowed.`
      : undefined;
  });
}

export function createQueryLimitRules(limits: Config["limits"]): ValidationRule[] {
  return [
    depthLimit(limits.maxDepth),
    aliasLimit(limits.maxAliases),
    rootFieldLimit(limits.maxRootFields),
  ];
}
