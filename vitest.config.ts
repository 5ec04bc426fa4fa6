import { configDefaults, defineConfig } from "vitest/config";

export default defineConfig({
  resolve: {
    // graphql 16 ships index.js (CJS) and index.mjs; Vite would give transformed source files the
    // .mjs build while externalized packages (type-graphql, Apollo) get index.js through Node:
    // two graphql realms, and "Cannot determine GraphQL output type". One copy, as in production.
    alias: [{ find: /^graphql$/, replacement: "graphql/index.js" }],
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
    testTimeout: 30_000,
    hookTimeout: 60_000,
    setupFiles: ["reflect-metadata"],
  },
});
