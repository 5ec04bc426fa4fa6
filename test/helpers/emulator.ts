import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CommunicationIdentityClient } from "@azure/communication-identity";
import { startEmulator, type Emulator, type EmulatorOptions } from "@acs-identity-gateway/emulator";
import { testSigningKeyPem } from "./signing-keys.js";

/**
 * An emulator on a free port, silent; the test file owns it and closes it in afterAll. It signs
 * with a key of the test pool (testSigningKeyPem) unless `options` give one or a state file.
 */
export async function startTestEmulator(options: EmulatorOptions = {}): Promise<Emulator> {
  const key = options.stateFile === undefined ? await testSigningKeyPem() : undefined;
  return startEmulator({ port: 0, signingKeyPem: key, ...options });
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

export interface TestCa {
  dir: string;
  /** PEM file of the throwaway CA: what a client trusts (NODE_EXTRA_CA_CERTS, REQUESTS_CA_BUNDLE). */
  caFile: string;
  certFile: string;
  keyFile: string;
  ca: string;
  cert: string;
  key: string;
  remove(): void;
}

/** The PEM texts of the CA and leaf this process made (see createTestCa). */
let made: { ca: string; cert: string; key: string } | undefined;

/**
 * A throwaway CA and a server certificate it signed for 127.0.0.1 and localhost, made with the
 * openssl command line. A leaf signed by a CA (not a self-signed leaf) because Python's ssl, like
 * browsers, refuses a CA certificate used as a server certificate. Each call gets a temporary
 * directory of its own with the three files (`remove()` deletes it), but the keys are made once
 * per test process: two 2048-bit RSA keys and three openssl runs block the worker for about half
 * a second, and ten files ask for a CA. No test needs a CA nobody used before: each needs one its
 * clients are told to trust, which a client not told about it does not trust.
 */
export function createTestCa(): TestCa {
  made ??= makeCa();
  const dir = mkdtempSync(join(tmpdir(), "acs-emulator-ca-"));
  const file = (name: string) => join(dir, name);
  writeFileSync(file("ca.pem"), made.ca);
  writeFileSync(file("server.pem"), made.cert);
  writeFileSync(file("server.key"), made.key, { mode: 0o600 });
  return {
    dir,
    caFile: file("ca.pem"),
    certFile: file("server.pem"),
    keyFile: file("server.key"),
    ...made,
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

function makeCa(): { ca: string; cert: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), "acs-emulator-ca-"));
  const file = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
  openssl(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "2",
    "-subj",
    "/CN=ACS emulator test CA",
    "-keyout",
    file("ca.key"),
    "-out",
    file("ca.pem"),
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  );
  openssl(
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-subj",
    "/CN=127.0.0.1",
    "-keyout",
    file("server.key"),
    "-out",
    file("server.csr"),
  );
  writeFileSync(
    file("server.ext"),
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
  );
  openssl(
    "x509",
    "-req",
    "-in",
    file("server.csr"),
    "-CA",
    file("ca.pem"),
    "-CAkey",
    file("ca.key"),
    "-CAcreateserial",
    "-days",
    "2",
    "-out",
    file("server.pem"),
    "-extfile",
    file("server.ext"),
  );
  try {
    return {
      ca: readFileSync(file("ca.pem"), "utf8"),
      cert: readFileSync(file("server.pem"), "utf8"),
      key: readFileSync(file("server.key"), "utf8"),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
