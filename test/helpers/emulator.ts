import { CommunicationIdentityClient } from "@azure/communication-identity";
import { startEmulator, type Emulator, type EmulatorOptions } from "../../src/emulator/index.js";

/** An emulator on a free port, silent; the test file owns it and closes it in afterAll. */
export function startTestEmulator(options: EmulatorOptions = {}): Promise<Emulator> {
  return startEmulator({ port: 0, ...options });
}

/**
 * The real SDK client pointed at `emulator`: plain http allowed (loopback), retries off so a test
 * sees every answer exactly once. `accessKey`/`endpoint` override, e.g. a wrong key for a 401.
 */
export function identityClient(
  emulator: Emulator,
  opts: { accessKey?: string; endpoint?: string } = {},
): CommunicationIdentityClient {
  const endpoint = opts.endpoint ?? emulator.endpoint;
  const accessKey = opts.accessKey ?? emulator.accessKey;
  return new CommunicationIdentityClient(`endpoint=${endpoint};accesskey=${accessKey}`, {
    allowInsecureConnection: true,
    retryOptions: { maxRetries: 0 },
  });
}
