import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CODEGEN_FILES, generateClientCode } from "../../codegen.js";

describe("the client's generated documents", () => {
  it("match what npm run codegen makes from schema.graphql (run it and commit when this fails)", async () => {
    const output = await generateClientCode();
    expect(readFileSync(CODEGEN_FILES.typed, "utf8")).toBe(output.typed);
    expect(readFileSync(CODEGEN_FILES.typedDocuments, "utf8")).toBe(output.typedDocuments);
    expect(readFileSync(CODEGEN_FILES.manifest, "utf8")).toBe(output.manifest);
  });

  it("type DateTime fields as strings, not unknown", () => {
    const typed = readFileSync(CODEGEN_FILES.typed, "utf8");
    expect(typed).toMatch(/expiresOn: string;/);
    expect(typed).toMatch(/revokedAt: string;/);
    expect(typed).not.toMatch(/: unknown;/);
  });

  it("give every manifest operation the sha256 of its text as its id", () => {
    const manifest = JSON.parse(readFileSync(CODEGEN_FILES.manifest, "utf8"));
    expect(manifest.format).toBe("apollo-persisted-query-manifest");
    expect(manifest.operations.length).toBeGreaterThanOrEqual(6);
    for (const operation of manifest.operations) {
      expect(operation.id).toBe(createHash("sha256").update(operation.body).digest("hex"));
    }
  });
});
