import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createDirectory, openDirectoryDb } from "../../src/directory/index.js";
import { startPostgres, type PostgresServer } from "../helpers/postgres.js";
import { pgliteTemplate, silent } from "./support.js";

/**
 * The gateway's way in: openDirectoryDb returns at once and opens in the background (PGlite's
 * start takes seconds), and every call waits for it. These open real databases from scratch, so
 * they also measure what a gateway start pays off its critical path.
 */
describe("openDirectoryDb", () => {
  const folders: string[] = [];
  let postgres: PostgresServer | undefined;
  afterAll(async () => {
    await postgres?.stop();
    folders.forEach((folder) => rmSync(folder, { recursive: true, force: true }));
  });

  it("opens PGlite in the background, queues calls until then, and keeps data in its folder", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "acsgw-directory-"));
    folders.push(dataDir);

    // Seeded from initdb's tarball: a new folder otherwise runs initdb (seconds, measured apart).
    const loadDataDir = await pgliteTemplate();
    const called = performance.now();
    const db = openDirectoryDb({ logger: silent, dataDir, pglite: { loadDataDir } });
    // Returned before the database is open (no wall-clock bound: on a busy machine any bound
    // is a guess): the open is still in progress.
    expect(db.status().state).toBe("opening");
    const directory = createDirectory({ db });
    // Issued before the database exists: it waits for the open, then runs.
    const recorded = await directory.recordCreated({ id: "8:acs:kept", origin: "admin" });
    const firstCallIn = performance.now() - called;
    await db.ready;
    const fresh = db.openedInMs()!;
    await db.close();

    const reopened = openDirectoryDb({ logger: silent, dataDir });
    expect(await createDirectory({ db: reopened }).get("8:acs:kept")).toEqual(recorded.identity);
    await reopened.ready;
    const resumed = reopened.openedInMs()!;
    await reopened.close();

    console.log(
      "PGlite directory open (ms):",
      JSON.stringify({
        newFolderFromTemplate: Math.round(fresh),
        firstCallAnswered: Math.round(firstCallIn),
        existingFolder: Math.round(resumed),
      }),
    );
  }, 60_000);

  it("opens PostgreSQL the same way; a failed open fails the calls (not the process) and is retried", async () => {
    postgres = await startPostgres();
    const db = openDirectoryDb({ logger: silent, databaseUrl: await postgres.newDatabase() });
    expect(db.dialect).toBe("postgres");
    const directory = createDirectory({ db });
    await directory.recordCreated({ id: "8:acs:pg", origin: "self-service" });
    expect((await directory.list()).edges.map((e) => e.node.id)).toEqual(["8:acs:pg"]);
    await db.close();

    const unreachable = openDirectoryDb({
      logger: silent,
      databaseUrl: "postgres://nobody@127.0.0.1:1/none",
    });
    await expect(createDirectory({ db: unreachable }).get("8:acs:x")).rejects.toThrow();
    expect(unreachable.status().state).toBe("failed"); // and retried in the background
    await unreachable.close();
  }, 60_000);
});
