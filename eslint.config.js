import js from "@eslint/js";
import prettier from "eslint-config-prettier";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["**/dist/**", "**/node_modules/**", "coverage/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  prettier,
  {
    rules: {
      curly: ["error", "all"],
      "@typescript-eslint/consistent-type-imports": ["error", { fixStyle: "inline-type-imports" }],
      "@typescript-eslint/no-unused-vars": [
        "error",
        { argsIgnorePattern: "^_", varsIgnorePattern: "^_" },
      ],
      "no-console": "error",
      // Settings enter each package in one module (the gateway's src/config.ts, the emulator's
      // options.ts); everything below receives values.
      "no-process-env": "error",
    },
  },
  {
    files: ["src/config.ts", "packages/emulator/src/options.ts"],
    rules: { "no-process-env": "off" },
  },
  {
    // Tests, scripts, the bench and tool configs set up processes and read their own knobs.
    files: ["test/**", "scripts/**", "bench/**", "examples/**", "*.config.ts", "codegen.ts"],
    rules: { "no-process-env": "off" },
  },
  {
    files: ["scripts/**", "test/**", "src/main.ts", "packages/emulator/src/main.ts"],
    rules: { "no-console": "off" },
  },
  {
    // GraphQL results in tests are untyped JSON; asserting on them is the point.
    files: ["test/**"],
    rules: { "@typescript-eslint/no-explicit-any": "off" },
  },
);
