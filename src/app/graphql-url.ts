/**
 * The GraphQL URL a developer can open for a server bound to `host:port`: `localhost` for a
 * wildcard bind (every interface), an IPv6 literal in brackets.
 */
export function graphqlUrl(host: string, port: number): string {
  const wildcard = host === "0.0.0.0" || host === "::";
  const shown = wildcard ? "localhost" : host.includes(":") ? `[${host}]` : host;
  return `http://${shown}:${port}/graphql`;
}
