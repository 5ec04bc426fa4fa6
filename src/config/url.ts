import { z } from "zod";

/**
 * The one parser for URL settings (ACS endpoints, Redis, PostgreSQL, the JWKS): it never echoes
 * the value in a problem, since several of these URLs carry a password.
 */

const LOOPBACK = new Set(["localhost", "127.0.0.1", "::1", "[::1]"]);

export function isLoopbackHost(hostname: string): boolean {
  return LOOPBACK.has(hostname) || /^127(\.\d{1,3}){3}$/.test(hostname);
}

export interface UrlOptions {
  /** The schemes accepted, without `:` or `//` (`["redis", "rediss"]`). */
  protocols: readonly string[];
  /**
   * Also `http://` to a loopback host: nothing crosses the network, so a local identity provider
   * or emulator needs no certificate.
   */
  allowLoopbackHttp?: boolean;
  /** Why only these schemes, appended to the problem in parentheses. */
  why?: string;
  /**
   * The WHATWG serialization (`https://host` -> `https://host/`) instead of the value as given.
   * Only for the ACS endpoints, which the SDK joins paths to; a Redis or PostgreSQL URL is passed
   * on as given, since re-encoding a password could change what its client decodes.
   */
  normalize?: boolean;
  /**
   * Only a bare origin (`scheme://host[:port]`: no path, query or trailing slash), as a browser
   * sends it in `Origin` and as CORS compares it.
   */
  origin?: boolean;
  /**
   * Refuse a user name or password in the URL (`https://user:pass@host`): for URLs the gateway
   * fetches, whose fetch refuses such a URL at every call, and would put the password in the
   * error it logs.
   */
  noCredentials?: boolean;
  /** Other wording, for a URL that is part of a larger setting (the connection string's). */
  problems?: { notAUrl?: string; protocol?: string; notAnOrigin?: string };
}

export function url(options: UrlOptions) {
  const schemes = options.protocols.map((p) => `${p}://`);
  const because = options.why ?? (options.allowLoopbackHttp ? "http:// only on loopback" : "");
  const protocolProblem =
    options.problems?.protocol ??
    `${schemes.length === 1 ? `must be ${schemes[0]}` : `must start with ${schemes.join(" or ")}`}${because ? ` (${because})` : ""}`;
  return z.string().transform((value, ctx) => {
    let parsed: URL;
    try {
      parsed = new URL(value);
    } catch {
      ctx.addIssue(options.problems?.notAUrl ?? "not a URL");
      return z.NEVER;
    }
    const scheme = parsed.protocol.slice(0, -1);
    const loopbackHttp =
      options.allowLoopbackHttp === true && scheme === "http" && isLoopbackHost(parsed.hostname);
    if (!options.protocols.includes(scheme) && !loopbackHttp) {
      ctx.addIssue(protocolProblem);
      return z.NEVER;
    }
    if (options.noCredentials && (parsed.username !== "" || parsed.password !== "")) {
      ctx.addIssue("must not carry a user name or password (user:password@)");
      return z.NEVER;
    }
    if (options.origin && parsed.origin !== value) {
      ctx.addIssue(
        options.problems?.notAnOrigin ??
          "not an origin (scheme://host[:port], no path or trailing slash)",
      );
      return z.NEVER;
    }
    return options.normalize ? parsed.href : value;
  });
}

/** TLS, or plain HTTP that never leaves the machine: the bar for anything carrying credentials. */
export const tlsOrLoopback = url({
  protocols: ["https"],
  allowLoopbackHttp: true,
  noCredentials: true,
});
