import { createServer as createHttpServer, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { pino } from "pino";
import type { Logger } from "./logger.js";
import { createAccessHandlers } from "./access-exchange.js";
import { createAuthenticator } from "./authenticator.js";
import {
  createEntraAuthority,
  describeTenant,
  EMULATOR_CLIENT_ID,
  EMULATOR_TENANT_ID,
  EMULATOR_USER_OBJECT_ID,
  MANAGED_IDENTITY_PATH,
  type EmulatorEntraAuthority,
} from "./entra.js";
import { createExtraHandlers } from "./extras.js";
import { createHandlers } from "./handlers.js";
import {
  EMULATOR_OPERATIONS,
  resolveOptions,
  type EmulatorOperation,
  type EmulatorOptions,
} from "./options.js";
import { createPipeline, type RespondInfo, type RespondOverride } from "./pipeline.js";
import { createIdentityStore } from "./store.js";
import { createTeamsTokenVerifier } from "./teams-jwks.js";
import { createThrottle } from "./throttle.js";
import { createTokenSigner, generateSigningKeyPem } from "./token-signer.js";

export { MAX_BODY_BYTES } from "./context.js";
export type { RespondInfo, RespondOverride } from "./pipeline.js";

export interface Emulator {
  /** `http://HOST:PORT/`, or `https://` with TLS. */
  readonly endpoint: string;
  readonly accessKey: string;
  readonly resourceId: string;
  /** `endpoint=<endpoint>;accesskey=KEY` */
  readonly connectionString: string;
  /**
   * With `entra: "on"` (or `"any"`): the managed-identity endpoint and its secret, as the
   * `IDENTITY_ENDPOINT` / `IDENTITY_HEADER` environment variables of Azure App Service.
   */
  readonly managedIdentity: { endpoint: string; header: string } | undefined;
  /**
   * With Entra on (or any) and TLS: the Entra ID token authority of the emulator's test tenant
   * (its host, application, secret, user), and the `AZURE_*` settings `@azure/identity` reads.
   */
  readonly entraAuthority: EmulatorEntraAuthority | undefined;
  /**
   * The lines (`NAME=value`) the `acs-identity-emulator` command prints after its connection
   * string line, in order: each mode appends its own here (Entra: with TLS AZURE_TENANT_ID,
   * AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_AUTHORITY_HOST; IDENTITY_ENDPOINT and
   * IDENTITY_HEADER; with TLS AZURE_USERNAME and AZURE_PASSWORD).
   */
  readonly outputLines: readonly string[];
  /** Successfully answered (2xx) requests per operation since start: the way tests count upstream calls. */
  readonly counters: Readonly<Record<EmulatorOperation, number>>;
  /**
   * Test hook, settable at run time: awaited after the handler produced its answer (token already
   * minted) and before the response is written. Lets a test deliver an issue answer late, e.g.
   * after a concurrent revoke, or (returning a `RespondOverride`) replace the answer of work already
   * done with an error or a dropped connection: a create whose answer was lost.
   */
  hooks: {
    beforeRespond?: (
      operation: EmulatorOperation,
      info: RespondInfo,
    ) => Promise<RespondOverride | void> | RespondOverride | void;
  };
  close(): Promise<void>;
}

/**
 * Starts the emulator (see pipeline.ts for the stages). Resolves once it listens; the caller owns
 * it and must `close()` it.
 */
export async function startEmulator(options: EmulatorOptions = {}): Promise<Emulator> {
  const o = resolveOptions(options);
  const log: Logger = o.logger ?? pino({ level: "silent" });

  const store = createIdentityStore({
    resourceId: o.resourceId,
    stateFile: o.stateFile,
    newSigningKeyPem: o.signingKeyPem === undefined ? generateSigningKeyPem : undefined,
    revocationDelayMs: o.revocationDelaySeconds * 1000,
  });
  const signer = await createTokenSigner({
    privateKeyPem: o.signingKeyPem ?? store.signingKeyPem,
  });
  const entra = createEntraAuthority(o.entra, signer, { tls: o.tls !== undefined });
  const counters = Object.fromEntries(EMULATOR_OPERATIONS.map((op) => [op, 0])) as Record<
    EmulatorOperation,
    number
  >;
  const hooks: Emulator["hooks"] = {};

  const handle = createPipeline({
    now: o.now,
    latencyMs: o.latencyMs,
    loose: o.loose,
    log,
    authenticator: createAuthenticator({ accessKey: o.accessKey }),
    entra,
    signer,
    throttle: createThrottle(o.throttle),
    handlers: {
      ...createHandlers({
        resourceId: o.resourceId,
        store,
        signer,
        teamsVerifier: o.teamsJwksUrl
          ? createTeamsTokenVerifier({ jwksUrl: o.teamsJwksUrl, logger: log })
          : undefined,
      }),
      ...createAccessHandlers({
        resourceId: o.resourceId,
        signer,
        entra,
        logger: log,
        // The test tenant's users may exchange through its application from the start: the
        // tenant holds an Entra assignment, the test user a Teams Phone extension assignment.
        initialEntraAssignments: [
          {
            objectId: EMULATOR_TENANT_ID,
            tenantId: EMULATOR_TENANT_ID,
            principalType: "tenant",
            clientIds: [EMULATOR_CLIENT_ID],
          },
        ],
        initialTeamsExtensionAssignments: [
          {
            objectId: EMULATOR_USER_OBJECT_ID,
            tenantId: EMULATOR_TENANT_ID,
            principalType: "user",
            clientIds: [EMULATOR_CLIENT_ID],
          },
        ],
      }),
      ...createExtraHandlers({
        store,
        resetCounters: () => {
          for (const operation of EMULATOR_OPERATIONS) {
            counters[operation] = 0;
          }
        },
      }),
    },
    counted: (operation) => {
      counters[operation] += 1;
    },
    beforeRespond: (operation, info) => hooks.beforeRespond?.(operation, info),
  });

  const listener = (req: Parameters<typeof handle>[0], res: Parameters<typeof handle>[1]) => {
    void handle(req, res).catch(() => res.destroy());
  };
  // Like Azurite's --cert/--key: TLS only when asked; the embedded emulator stays plain loopback.
  const server: Server = o.tls
    ? createHttpsServer({ cert: o.tls.cert, key: o.tls.key }, listener)
    : createHttpServer(listener);
  // An idle keep-alive socket is closed after two minutes, not Node's 5 s: the SDKs' agents never
  // close idle sockets themselves, so a server that does so soon races their next request on
  // the same socket (ECONNRESET). ACS's front end keeps idle connections for minutes, and with
  // Node's 5 s a gateway whose event loop was busy for a few seconds (an embedded PGlite's
  // initdb) lost its next create to that race: a create is never retried, since ACS may have
  // made the identity. close() still ends every socket at once.
  server.keepAliveTimeout = 120_000;

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, o.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  // A wildcard bind is reachable on loopback; a connection string needs an address a client can dial.
  const dialHost =
    o.host === "0.0.0.0" || o.host === "::"
      ? "127.0.0.1"
      : o.host.includes(":")
        ? `[${o.host}]`
        : o.host;
  const endpoint = `${o.tls ? "https" : "http"}://${dialHost}:${port}/`;
  const managedIdentity =
    o.entra === "off"
      ? undefined
      : { endpoint: new URL(MANAGED_IDENTITY_PATH, endpoint).href, header: entra.identityHeader };
  entra.tenant?.listening(endpoint);
  const entraAuthority = entra.tenant ? describeTenant(entra.tenant) : undefined;
  const outputLines: string[] = [];
  const azure = (names: string[]) => {
    for (const name of names) {
      outputLines.push(`${name}=${entraAuthority!.settings[name]}`);
    }
  };
  // The application's settings (what ClientSecretCredential and EnvironmentCredential read), the
  // managed identity's, then the test user's.
  if (entraAuthority) {
    azure(["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_AUTHORITY_HOST"]);
  }
  if (managedIdentity) {
    outputLines.push(`IDENTITY_ENDPOINT=${managedIdentity.endpoint}`);
    outputLines.push(`IDENTITY_HEADER=${managedIdentity.header}`);
  }
  if (entraAuthority) {
    azure(["AZURE_USERNAME", "AZURE_PASSWORD"]);
  }
  log.info(
    {
      endpoint,
      resourceId: o.resourceId,
      throttle: o.throttle ? "on" : "off",
      latencyMs: o.latencyMs,
      entra: o.entra,
      persistent: o.stateFile !== undefined,
      loose: o.loose,
      revocationDelaySeconds: o.revocationDelaySeconds,
    },
    "ACS Identity emulator listening",
  );

  let closing: Promise<void> | undefined;
  return {
    endpoint,
    accessKey: o.accessKey,
    resourceId: o.resourceId,
    connectionString: `endpoint=${endpoint};accesskey=${o.accessKey}`,
    managedIdentity,
    entraAuthority,
    outputLines,
    counters,
    hooks,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
