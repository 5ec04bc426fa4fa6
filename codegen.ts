/* eslint-disable no-console -- a command-line script: its output is for the developer. */
/**
 * `npm run codegen` writes the client entry point's typed operation documents and the
 * trusted-documents manifest from `schema.graphql` and `packages/client/src/operations.graphql`;
 * `npm run codegen:check` fails when the checked-in files differ (as `schema:check` does).
 *
 * GraphQL Code Generator runs through its programmatic core (`@graphql-codegen/core`) rather than
 * its CLI: the CLI's loaders need a newer `@graphql-tools/utils` than the one this project pins
 * for type-graphql and Apollo, and the core with the same plugins gives the same output.
 */
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { codegen } from "@graphql-codegen/core";
import * as typedDocumentNode from "@graphql-codegen/typed-document-node";
import * as typescriptOperations from "@graphql-codegen/typescript-operations";
import {
  buildASTSchema,
  Kind,
  parse,
  print,
  type DocumentNode,
  type GraphQLSchema,
  type OperationDefinitionNode,
} from "graphql";
import { format } from "prettier";

const path = (relative: string) => fileURLToPath(new URL(relative, import.meta.url));

export const CODEGEN_FILES = {
  schema: path("./schema.graphql"),
  documents: path("./packages/client/src/operations.graphql"),
  typed: path("./packages/client/src/generated/graphql.ts"),
  /** The TypedDocumentNode documents: the `/documents` subpath, for GraphQL clients (graphql). */
  typedDocuments: path("./packages/client/src/generated/documents.ts"),
  manifest: path("./packages/client/persisted-documents.json"),
};

/** Plugin options: `DateTime` is an ISO-8601 string on the wire, so it is a `string` here too. */
export const CODEGEN_CONFIG = {
  scalars: { DateTime: "string", ID: "string" },
  strictScalars: true,
  enumsAsTypes: true,
  useTypeImports: true,
  skipTypename: true,
  avoidOptionals: { field: true, inputValue: false, object: true, defaultValue: false },
};

export interface PersistedOperation {
  /** sha256 (hex) of `body`: the id in the manifest and the APQ hash. */
  id: string;
  name: string;
  type: "query" | "mutation" | "subscription";
  body: string;
}

/** Apollo's persisted-query manifest format (what Apollo Router and GraphOS read). */
export interface PersistedQueryManifest {
  format: "apollo-persisted-query-manifest";
  version: 1;
  operations: PersistedOperation[];
}

export interface CodegenOutput {
  /** Operations skipped because their root field is not in the schema yet. */
  waiting: string[];
  typed: string;
  typedDocuments: string;
  manifest: string;
}

function loadSchema(sdl: string): GraphQLSchema {
  // schema.graphql is a federation subgraph schema (@link, @key): the directives mean nothing to
  // a client, and assumeValidSDL lets the schema build without their definitions.
  return buildASTSchema(parse(sdl), { assumeValidSDL: true });
}

function operationsOf(documents: DocumentNode): OperationDefinitionNode[] {
  const operations: OperationDefinitionNode[] = [];
  for (const definition of documents.definitions) {
    if (definition.kind !== Kind.OPERATION_DEFINITION || !definition.name) {
      throw new Error("operations.graphql may hold named operations only");
    }
    operations.push(definition);
  }
  return operations;
}

/**
 * Operations whose root fields all exist, and the names of those that wait for a field another
 * change adds (the GraphQL API described in the README may announce more fields than the schema
 * has on a given branch).
 */
function splitBySchema(
  schema: GraphQLSchema,
  all: OperationDefinitionNode[],
): { operations: OperationDefinitionNode[]; waiting: string[] } {
  const operations: OperationDefinitionNode[] = [];
  const waiting: string[] = [];
  for (const operation of all) {
    const root =
      operation.operation === "query"
        ? schema.getQueryType()
        : operation.operation === "mutation"
          ? schema.getMutationType()
          : schema.getSubscriptionType();
    const fields = root?.getFields() ?? {};
    const present = operation.selectionSet.selections.every(
      (selection) => selection.kind !== Kind.FIELD || selection.name.value in fields,
    );
    if (present) {
      operations.push(operation);
    } else {
      waiting.push(operation.name!.value);
    }
  }
  return { operations, waiting };
}

/** Every root field of the schema must be reachable through a shipped document. */
function missingRootFields(schema: GraphQLSchema, operations: OperationDefinitionNode[]): string[] {
  const covered = new Set<string>();
  for (const operation of operations) {
    for (const selection of operation.selectionSet.selections) {
      if (selection.kind === Kind.FIELD) {
        covered.add(`${operation.operation}.${selection.name.value}`);
      }
    }
  }
  const missing: string[] = [];
  for (const [type, root] of [
    ["query", schema.getQueryType()],
    ["mutation", schema.getMutationType()],
  ] as const) {
    for (const field of Object.keys(root?.getFields() ?? {})) {
      if (!field.startsWith("_") && !covered.has(`${type}.${field}`)) {
        missing.push(`${type} field "${field}"`);
      }
    }
  }
  return missing;
}

export async function generateClientCode(): Promise<CodegenOutput> {
  const schema = loadSchema(readFileSync(CODEGEN_FILES.schema, "utf8"));
  const { operations, waiting } = splitBySchema(
    schema,
    operationsOf(parse(readFileSync(CODEGEN_FILES.documents, "utf8"))),
  );
  const documents: DocumentNode = { kind: Kind.DOCUMENT, definitions: operations };
  const missing = missingRootFields(schema, operations);
  if (missing.length > 0) {
    throw new Error(
      `packages/client/src/operations.graphql has no operation for: ${missing.join(", ")}. Add one per field.`,
    );
  }

  // Two files: the operations' types (no import: the package's main entry needs no graphql), and
  // the TypedDocumentNode documents, which Apollo Client, urql and graphql-request take and which
  // need graphql's types (the package's `/documents` subpath, graphql an optional peer).
  const run = (filename: string, plugin: "typescriptOperations" | "typedDocumentNode") =>
    codegen({
      filename,
      schema: parse(readFileSync(CODEGEN_FILES.schema, "utf8")),
      schemaAst: schema,
      documents: [{ location: CODEGEN_FILES.documents, document: documents }],
      config: CODEGEN_CONFIG,
      plugins: [{ [plugin]: {} }],
      pluginMap: { typescriptOperations, typedDocumentNode },
    });
  const generated = await run(CODEGEN_FILES.typed, "typescriptOperations");
  const generatedDocuments = await run(CODEGEN_FILES.typedDocuments, "typedDocumentNode");

  const persisted: PersistedOperation[] = operations.map((operation) => {
    const body = print({ kind: Kind.DOCUMENT, definitions: [operation] });
    return {
      id: createHash("sha256").update(body).digest("hex"),
      name: operation.name!.value,
      type: operation.operation,
      body,
    };
  });
  const manifest: PersistedQueryManifest = {
    format: "apollo-persisted-query-manifest",
    version: 1,
    operations: persisted,
  };

  const table = Object.fromEntries(persisted.map(({ name, id, body }) => [name, { id, body }]));
  const typed = [
    "// Generated by `npm run codegen` from schema.graphql and packages/client/src/operations.graphql. Do not edit.",
    generated,
    "/**",
    " * Each operation's text and its id (sha256 of the text): send `body` with",
    " * `extensions.persistedQuery.sha256Hash = id` (automatic persisted queries), or the id alone",
    " * when the gateway runs with PERSISTED_DOCUMENTS_ONLY=true.",
    " */",
    `export const persistedOperations = ${JSON.stringify(table)} as const;`,
    "",
    "/** Each operation's result and variables types, by operation name. */",
    "export interface OperationTypes {",
    ...persisted.map(({ name, type }) => {
      const base = `${name}${type[0]!.toUpperCase()}${type.slice(1)}`;
      return `  ${name}: { result: ${base}; variables: ${base}Variables };`;
    }),
    "}",
    "",
  ].join("\n");

  const operationTypes = persisted.flatMap(({ name, type }) => {
    const base = `${name}${type[0]!.toUpperCase()}${type.slice(1)}`;
    return [base, `${base}Variables`];
  });
  const typedDocuments = [
    "// Generated by `npm run codegen` from schema.graphql and packages/client/src/operations.graphql. Do not edit.",
    `import type { ${operationTypes.join(", ")} } from "./graphql.js";`,
    generatedDocuments,
  ].join("\n");
  const typescript = { parser: "typescript", printWidth: 100, trailingComma: "all" } as const;
  return {
    waiting,
    typed: await format(typed, typescript),
    typedDocuments: await format(typedDocuments, typescript),
    manifest: await format(JSON.stringify(manifest), { parser: "json", printWidth: 100 }),
  };
}

async function main(mode: string | undefined): Promise<void> {
  const output = await generateClientCode();
  if (output.waiting.length > 0) {
    console.log(`not in schema.graphql yet, skipped: ${output.waiting.join(", ")}`);
  }
  if (mode === "write") {
    writeFileSync(CODEGEN_FILES.typed, output.typed);
    writeFileSync(CODEGEN_FILES.typedDocuments, output.typedDocuments);
    writeFileSync(CODEGEN_FILES.manifest, output.manifest);
    console.log(
      `wrote ${CODEGEN_FILES.typed}, ${CODEGEN_FILES.typedDocuments} and ${CODEGEN_FILES.manifest}`,
    );
    return;
  }
  if (mode === "check") {
    const read = (file: string) => {
      try {
        return readFileSync(file, "utf8");
      } catch {
        return "";
      }
    };
    if (
      read(CODEGEN_FILES.typed) !== output.typed ||
      read(CODEGEN_FILES.typedDocuments) !== output.typedDocuments ||
      read(CODEGEN_FILES.manifest) !== output.manifest
    ) {
      console.error(
        "The client's typed documents are out of date: run `npm run codegen` and commit the result.",
      );
      process.exit(1);
    }
    console.log("The client's typed documents and manifest match schema.graphql.");
    return;
  }
  console.error("usage: codegen.ts write|check");
  process.exit(2);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await main(process.argv[2]);
}
