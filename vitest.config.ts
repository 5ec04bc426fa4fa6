import { relative } from "node:path";
import { fileURLToPath } from "node:url";
import { BaseSequencer, type TestSpecification } from "vitest/node";
import { configDefaults, defineConfig } from "vitest/config";

/**
 * Files that take longest, longest first (measured on the 2-core machine, alone and in the suite):
 * most of their time is waiting on processes they start (builds, npm start, Redis pauses and a
 * Redis Cluster, PGlite, the SDK suites, Chromium). A fresh clone (CI) has no duration cache, and
 * vitest then starts the largest files first: these ended up in the tail, and the suite took 58 s
 * instead of 47 s. Starting them first lets the short files fill the gaps.
 */
const START_FIRST = [
  "test/ops/start-commands.test.ts",
  "test/cache/redis-pause.test.ts",
  "test/client/packed-client.test.ts",
  "test/emulator/command.test.ts",
  "test/identity/entra-credential.test.ts",
  "test/directory/webhooks.test.ts",
  "test/ops/graceful-stop.test.ts",
  "test/identity/crash.test.ts",
  "test/directory/gateway-directory.test.ts",
  "test/emulator/main.test.ts",
  "test/directory/directory.test.ts",
  "test/identity/provisioning.test.ts",
  "test/auth/authentication.test.ts",
  "test/graphql/federation-directory.test.ts",
  "test/ops/compose.test.ts",
  "test/cache/redis-cluster-failover.test.ts",
  "test/emulator/gateway-entra-authority.test.ts",
  "test/graphql/directory.test.ts",
  "test/emulator/entra-authority.test.ts",
  "test/identity/provisioning-states.test.ts",
  "test/browser/explorer.test.ts",
  "test/directory/open.test.ts",
  "test/ops/dev-issuer.test.ts",
  "test/tokens/acs-budget-under-load.test.ts",
  "test/identity/user-mapping-store.test.ts",
  "test/browser/example-page.test.ts",
  "test/cache/redis-outage.test.ts",
  "test/emulator/python-sdk.test.ts",
  "test/cache/redis-cluster-outage.test.ts",
];

const source = (path: string) => fileURLToPath(new URL(path, import.meta.url));

class SlowFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const rank = (spec: TestSpecification) => {
      const index = START_FIRST.indexOf(relative(process.cwd(), spec.moduleId));
      return index === -1 ? START_FIRST.length : index;
    };
    // Array.prototype.sort is stable: the rest keep vitest's own order (cached durations).
    return (await super.sort(files)).sort((a, b) => rank(a) - rank(b));
  }
}

export default defineConfig({
  resolve: {
    // graphql 16 ships index.js (CJS) and index.mjs; Vite would give transformed source files the
    // .mjs build while externalized packages (type-graphql, Apollo) get index.js through Node:
    // two graphql realms, and "Cannot determine GraphQL output type". One copy, as in production.
    alias: [
      { find: /^graphql$/, replacement: "graphql/index.js" },
      // The workspace packages from their sources, as tsconfig.json's `paths` give them to tsc and
      // tsx: a test never runs a stale build. The packed tarballs are tested on their own.
      {
        find: /^@acs-identity-gateway\/emulator$/,
        replacement: source("packages/emulator/src/index.ts"),
      },
      {
        find: /^@acs-identity-gateway\/client$/,
        replacement: source("packages/client/src/index.ts"),
      },
      {
        find: /^@acs-identity-gateway\/client\/documents$/,
        replacement: source("packages/client/src/documents.ts"),
      },
      {
        find: /^@acs-identity-gateway\/client\/persisted-documents\.json$/,
        replacement: source("packages/client/persisted-documents.json"),
      },
    ],
  },
  test: {
    include: ["test/**/*.test.ts"],
    // The fresh-clone check (git clone, npm ci, npm start) is a CI step of its own
    // (`npm run test:newcomer`, run by .ci/run): it tests what is committed, not the work tree.
    exclude: [...configDefaults.exclude, "test/newcomer/**"],
    // Integration files start their own redis-server and emulator on free ports, so files may run
    // in parallel; the machine has 2 cores, so keep the pool small.
    pool: "forks",
    // Forks are reused across files (no fresh module graph per file): importing Apollo, the
    // Azure SDK and graphql again for each of ~60 files cost more than a third of the suite's
    // time. Every file starts and stops what it uses (servers, fake timers), so nothing leaks.
    isolate: false,
    maxWorkers: 3,
    sequence: { sequencer: SlowFirstSequencer },
    // Bounds for a test that hangs, not measures: on a busy 2-core machine (another suite, a
    // build) a process start-up takes three to five times as long as on an idle one, and a test
    // that starts one took over 25 s. Files that start several set their own, longer ones.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    setupFiles: ["reflect-metadata"],
  },
});
