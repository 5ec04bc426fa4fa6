import { fileURLToPath } from "node:url";
import { directoryDataDir } from "./directory-folder.js";
import { spawnGateway, type GatewayProcess } from "./processes.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

export interface SourceGateway extends GatewayProcess {
  /** SIGTERM, wait for the exit, remove the directory folder. */
  stop(): Promise<void>;
}

/**
 * The gateway from its sources as a real process (`node --import tsx src/main.ts`, as `npm start`
 * runs it) on a loopback port of the system's choosing, with a directory folder of its own (never
 * the repository's `.data/directory`, which other test processes may open too) and, besides,
 * exactly `env`: what a test of the gateway's settings (ACS_ENDPOINT with an Entra credential,
 * say) needs.
 */
export async function startSourceGateway(env: Record<string, string>): Promise<SourceGateway> {
  const directory = await directoryDataDir();
  try {
    const gateway = await spawnGateway(process.execPath, ["--import", "tsx", "src/main.ts"], {
      cwd: ROOT,
      env: {
        HOST: "127.0.0.1",
        // Port 0: the system picks a free one as the gateway binds, and its ready line gives the
        // URL. A port picked beforehand can be taken by another process during the start-up's
        // seconds (it was, once, on a busy machine: EADDRINUSE).
        PORT: "0",
        DIRECTORY_DATA_DIR: directory.dir,
        ...env,
      },
    });
    return {
      ...gateway,
      async stop() {
        gateway.child.kill("SIGTERM");
        await gateway.exited;
        directory.remove();
      },
    };
  } catch (error) {
    directory.remove();
    throw error;
  }
}
