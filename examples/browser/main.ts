/**
 * The example page: an ACS credential fed by the gateway, importing the client package as an app
 * does (`@acs-identity-gateway/client`; in this repository its sources, through tsconfig.json's
 * `paths`, so the test bundles what is in the tree).
 */
import { AzureCommunicationTokenCredential } from "@azure/communication-common";
import {
  createTokenRefresher,
  isGatewayClientError,
  type AbortSignalLike,
} from "@acs-identity-gateway/client";

interface Demo {
  /** Finished calls of the tokenRefresher (each one gateway call). */
  refreshes: number;
  /** Resolves once `refreshes` reached `n` (the test waits on this instead of sleeping). */
  waitForRefreshes(n: number): Promise<number>;
  /** The credential's current token expiry (ISO), read through the SDK. */
  expiresOn(): Promise<string>;
}

declare global {
  interface Window {
    demo: Demo;
  }
}

const params = new URLSearchParams(location.search);
const gatewayUrl = params.get("gateway") ?? "http://localhost:4000/graphql";
const show = (id: string, text: string) => {
  document.getElementById(id)!.textContent = text;
};

let refreshes = 0;
const waiters: { n: number; resolve: (count: number) => void }[] = [];

const tokenRefresher = createTokenRefresher({
  url: gatewayUrl,
  scopes: ["VOIP"],
  expiresInMinutes: 60,
  // With AUTH_MODE=jwt, the app's own sign-in token goes here:
  // getHeaders: async () => ({ Authorization: `Bearer ${await getAppToken()}` }),
});

/** Counts finished refreshes; the SDK stores the token in the same microtask turn. */
async function countedRefresher(abortSignal?: AbortSignalLike): Promise<string> {
  try {
    return await tokenRefresher(abortSignal);
  } finally {
    refreshes++;
    show("refreshes", String(refreshes));
    for (const waiter of waiters.filter((w) => refreshes >= w.n)) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve(refreshes);
    }
  }
}

// What @azure/communication-calling's CallClient.createCallAgent(credential) would be given.
const credential = new AzureCommunicationTokenCredential({
  tokenRefresher: countedRefresher,
  refreshProactively: true,
});

async function currentExpiry(): Promise<string> {
  const { expiresOnTimestamp } = await credential.getToken();
  return new Date(expiresOnTimestamp).toISOString();
}

window.demo = {
  get refreshes() {
    return refreshes;
  },
  waitForRefreshes(n) {
    return refreshes >= n
      ? Promise.resolve(refreshes)
      : new Promise((resolve) => waiters.push({ n, resolve }));
  },
  async expiresOn() {
    const iso = await currentExpiry();
    show("expires", iso.replace("T", " ").replace(/\.\d+Z$/, " UTC"));
    return iso;
  },
};

show("gateway", gatewayUrl);
currentExpiry()
  .then((iso) => {
    show("status", "Connected: the credential holds a token from the gateway");
    show("expires", iso.replace("T", " ").replace(/\.\d+Z$/, " UTC"));
    document.body.dataset.state = "ready";
  })
  .catch((error: unknown) => {
    const code = isGatewayClientError(error) ? error.code : "ERROR";
    show("status", `Failed (${code}): ${error instanceof Error ? error.message : String(error)}`);
    document.body.dataset.state = "failed";
  });
