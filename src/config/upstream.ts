import { emulatorOptionsFromEnv, type EmulatorOptions } from "@acs-identity-gateway/emulator";
import { z } from "zod";
import type { Config } from "../config.js";
import { entraCredentialOptions } from "../identity/entra-credential.js";
import { connectionString } from "./connection-string.js";
import type { Decisions } from "./decisions.js";
import { bool, ignored, required, settings, unset, whenParsed } from "./fields.js";
import { tlsOrLoopback, url } from "./url.js";

type Upstream = Pick<Config, "acs" | "acsEntraEndpoint" | "acsAllowInsecure">;

const allowInsecure = { ACS_ALLOW_INSECURE: bool(false) };

/**
 * An access key, from the connection string. Its endpoint may be http:// (the emulator in another
 * container), but off loopback only with ACS_ALLOW_INSECURE: every request is signed with the key.
 */
const withConnectionString = settings({
  ...allowInsecure,
  // Reached without a connection string only in production, where the emulator is no option.
  COMMUNICATION_SERVICES_CONNECTION_STRING: required(
    "required when NODE_ENV=production, or ACS_ENDPOINT for Entra ID (the bundled emulator is for development)",
    connectionString,
  ),
  ACS_ENDPOINT: unset(
    "set it (Entra ID) or COMMUNICATION_SERVICES_CONNECTION_STRING (access key), not both",
  ),
})
  .superRefine(
    (s, ctx) => {
      if (
        !s.ACS_ALLOW_INSECURE &&
        !tlsOrLoopback.safeParse(s.COMMUNICATION_SERVICES_CONNECTION_STRING.endpoint).success
      ) {
        ctx.addIssue({
          code: "custom",
          path: ["COMMUNICATION_SERVICES_CONNECTION_STRING"],
          message:
            "an http:// endpoint off loopback sends signed requests in clear text; use https:// or set ACS_ALLOW_INSECURE=true",
        });
      }
    },
    whenParsed("ACS_ALLOW_INSECURE", "COMMUNICATION_SERVICES_CONNECTION_STRING"),
  )
  .transform((s): Upstream => ({
    acs: s.COMMUNICATION_SERVICES_CONNECTION_STRING,
    acsEntraEndpoint: undefined,
    acsAllowInsecure: s.ACS_ALLOW_INSECURE,
  }));

/** Entra ID through `DefaultAzureCredential`: no access key anywhere. */
const withEntra = settings({
  ...allowInsecure,
  // The Azure SDK sends bearer tokens only over TLS, as ACS requires.
  ACS_ENDPOINT: url({
    protocols: ["https"],
    normalize: true,
    why: "Entra ID tokens are sent only over TLS",
  }),
}).transform((s): Upstream => ({
  acs: undefined,
  acsEntraEndpoint: s.ACS_ENDPOINT,
  acsAllowInsecure: s.ACS_ALLOW_INSECURE,
}));

/** The embedded emulator: its own settings are `embeddedEmulator`'s. */
const withEmbeddedEmulator = settings(allowInsecure).transform((s): Upstream => ({
  acs: undefined,
  acsEntraEndpoint: undefined,
  acsAllowInsecure: s.ACS_ALLOW_INSECURE,
}));

/** ACS: where tokens come from. */
export const upstream = (d: Decisions) =>
  ({
    "connection-string": withConnectionString,
    entra: withEntra,
    "embedded-emulator": withEmbeddedEmulator,
  })[d.upstream];

/**
 * The embedded emulator's options from the `ACS_EMULATOR_*` settings, through the emulator
 * package's own reader (from the whole environment: the package owns those names). Read only
 * when it runs: with a connection string or ACS_ENDPOINT no emulator starts, so its settings
 * cannot stop that gateway. The embedded one stays plain loopback HTTP with access-key signing
 * (TLS and Entra ID modes are for clients of `npm run emulator`), on a free port unless
 * ACS_EMULATOR_PORT is set, so it never clashes with a standalone emulator on the documented port.
 */
export const embeddedEmulator = (d: Decisions) =>
  d.upstream !== "embedded-emulator"
    ? ignored<Pick<Config, "embeddedEmulator">>({ embeddedEmulator: undefined })
    : z
        .custom<Record<string, string | undefined>>()
        .transform((env, ctx): Pick<Config, "embeddedEmulator"> => {
          let options: EmulatorOptions;
          try {
            // TLS and Entra ID are the standalone emulator's modes: not read here at all, so a
            // compose file that hands both services the same variables (a certificate path that
            // exists only in the emulator's container) cannot stop the gateway.
            options = emulatorOptionsFromEnv({
              ...env,
              ACS_EMULATOR_TLS_CERT: undefined,
              ACS_EMULATOR_TLS_KEY: undefined,
              ACS_EMULATOR_ENTRA: undefined,
            });
          } catch (error) {
            // The package lists every problem, each naming its variable: one line each here too.
            const problems = (error as { problems?: unknown }).problems;
            const lines = Array.isArray(problems)
              ? problems.map(String)
              : [error instanceof Error ? error.message : String(error)];
            for (const line of lines) {
              ctx.addIssue(line);
            }
            return z.NEVER;
          }
          return { embeddedEmulator: { ...options, port: options.port ?? 0 } };
        });

/**
 * `AZURE_AUTHORITY_HOST` (read from the whole environment: `@azure/identity` reads it itself), as
 * `DefaultAzureCredential` needs it. Checked by the one URL parser: the authority receives the
 * gateway's Entra secrets, so TLS, or plain HTTP on loopback (the emulator's test authority).
 */
const authorityHost = url({
  protocols: ["https"],
  allowLoopbackHttp: true,
  why: "the authority receives the gateway's credentials",
});
export const entraAuthority = z
  .object({ AZURE_AUTHORITY_HOST: z.string().optional() })
  .transform((env, ctx): Pick<Config, "entraCredentialOptions"> => {
    const value = env.AZURE_AUTHORITY_HOST;
    if (value === undefined || value === "") {
      return { entraCredentialOptions: {} };
    }
    const parsed = authorityHost.safeParse(value);
    if (!parsed.success) {
      ctx.addIssue(`AZURE_AUTHORITY_HOST: ${parsed.error.issues[0]?.message ?? "invalid"}`);
      return z.NEVER;
    }
    return { entraCredentialOptions: entraCredentialOptions(parsed.data) };
  });
