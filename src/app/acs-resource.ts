import { startEmulator, type Emulator, type EmulatorOptions } from "@acs-identity-gateway/emulator";
import type { TokenCredential } from "@azure/identity";
import type { Config } from "../config.js";
import { createAcsIdentityProvider } from "../identity/acs-identity-provider.js";
import { createEntraCredential } from "../identity/entra-credential.js";
import type { IdentityProvider } from "../identity/identity-provider.js";
import { quieter, type Logger } from "../logger.js";
import type { Metrics } from "../server/metrics.js";

/** The ACS resource the gateway talks to, and how it signs its calls. */
export interface AcsResource {
  endpoint: string;
  /** The resource's access key (connection string, or the embedded emulator's); none with Entra. */
  accessKey: string | undefined;
  /** The Entra ID credential the gateway signs with instead of an access key (ACS_ENDPOINT). */
  credential: TokenCredential | undefined;
  /** The emulator the gateway started in-process, when it embeds one: its owner closes it. */
  emulator: Emulator | undefined;
}

/**
 * Which ACS the gateway uses, as config.ts decided (`embeddedEmulator`, `acsEntraEndpoint` or
 * `acs`): the bundled emulator, started here; Entra ID (a credential, no key); or the connection
 * string's resource. Nothing here decides again.
 */
export async function openAcsResource(
  config: Readonly<Config>,
  options: {
    logger: Logger;
    /** Over `config.embeddedEmulator`'s, used only when the emulator is embedded. */
    emulator?: EmulatorOptions | undefined;
  },
): Promise<AcsResource> {
  if (config.embeddedEmulator !== undefined) {
    const { logger } = options;
    // Loopback and a free port unless ACS_EMULATOR_* said otherwise: config.ts decided both.
    const emulator = await startEmulator({
      ...config.embeddedEmulator,
      ...options.emulator,
      // Its "listening" line would repeat what the gateway's start-up line says.
      logger: logger.child({ component: "emulator" }, { level: quieter(logger.level, "warn") }),
    });
    return {
      endpoint: emulator.endpoint,
      accessKey: emulator.accessKey,
      credential: undefined,
      emulator,
    };
  }
  if (config.acsEntraEndpoint) {
    const credential = await createEntraCredential({
      credentialOptions: config.entraCredentialOptions,
    });
    return {
      endpoint: config.acsEntraEndpoint,
      accessKey: undefined,
      credential,
      emulator: undefined,
    };
  }
  if (config.acs) {
    return { ...config.acs, credential: undefined, emulator: undefined };
  }
  // config.ts decides exactly one of the three; a Config built by hand might not.
  throw new Error(
    "the configuration names no ACS resource (connection string, ACS_ENDPOINT or the emulator)",
  );
}

/** The ACS client for `resource`: plain HTTP only when its endpoint says so (the emulator). */
export function createAcsClient(
  resource: AcsResource,
  options: { metrics: Metrics; logger: Logger },
): IdentityProvider {
  return createAcsIdentityProvider({
    endpoint: resource.endpoint,
    accessKey: resource.accessKey,
    credential: resource.credential,
    allowInsecureConnection: new URL(resource.endpoint).protocol === "http:",
    metrics: options.metrics,
    logger: options.logger.child({ component: "acs" }),
  });
}
