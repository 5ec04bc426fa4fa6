/**
 * `@acs-identity-gateway/client`: what a browser or Node app needs to get ACS tokens from the
 * gateway. No runtime dependency beyond `fetch`.
 */
export {
  GatewayClientError,
  isGatewayClientError,
  type GatewayAssignedErrorCode,
  type GatewayErrorCode,
} from "./errors.js";
export {
  createGatewayClient,
  type AbortSignalLike,
  type GatewayClient,
  type GatewayClientOptions,
  type OperationName,
  type RequestOptions,
} from "./gateway-client.js";
export {
  createTokenRefresher,
  type TokenRefresher,
  type TokenRefresherOptions,
} from "./token-refresher.js";
export { toTokenScope, type AcsTokenScope, type TokenScopeInput } from "./scopes.js";
export * from "./generated/graphql.js";
