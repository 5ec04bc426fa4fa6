/**
 * `@acs-identity-gateway/client/documents`: the gateway's operations as `TypedDocumentNode`s, for
 * GraphQL clients (Apollo Client, urql, graphql-request). Kept apart from the main entry because
 * their types come from `graphql` (through `@graphql-typed-document-node/core`), which every such
 * client already has and an app that only needs `createTokenRefresher` should not.
 */
export * from "./generated/documents.js";
