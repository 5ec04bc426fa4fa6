import { configDefaults, defineConfig } from "vitest/config";
import base from "./vitest.config.js";

/** `npm run test:newcomer`: only the fresh-clone check, which `npm test` leaves out. */
export default defineConfig({
  ...base,
  test: {
    ...base.test,
    include: ["test/newcomer/**/*.test.ts"],
    exclude: configDefaults.exclude,
  },
});
