/**
 * The gateway's Dockerfile and Kubernetes manifest, read offline (no Docker engine or cluster
 * here): what a container needs that a checkout on a laptop does not.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { EXPLORER_PACKAGE_FILES, loadExplorerFiles } from "../../src/server/explorer.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const dockerfile = readFileSync(join(ROOT, "Dockerfile"), "utf8");
/** The image's last stage: what the container runs. */
const runtimeStage = dockerfile.slice(dockerfile.search(/^FROM .* AS runtime$/m));
/** `COPY --from=build <sources...> <destination>` lines of the runtime stage, joined continuations. */
const copiesFromBuild = runtimeStage
  .replace(/\\\n/g, " ")
  .split("\n")
  .filter((line) => line.startsWith("COPY --from=build "))
  .map((line) => {
    const words = line.split(/\s+/).filter(Boolean).slice(2);
    return { sources: words.slice(0, -1), destination: words.at(-1)! };
  });

const scratch = mkdtempSync(join(tmpdir(), "acsgw-image-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe("the gateway image (Dockerfile, read offline)", () => {
  it("listens on every interface in a container, where loopback would be unreachable", () => {
    expect(runtimeStage).toMatch(/^\s*HOST=0\.0\.0\.0\b/m);
  });

  it("carries the explorer's files, which an --omit=dev install lacks, so docker compose up has an explorer", () => {
    expect(runtimeStage).toContain("npm ci --omit=dev");
    // Lay the copied files out as the image would (its /app is `app` here), then load the
    // explorer from there through node's own package resolution, as the gateway does.
    const app = join(scratch, "app");
    for (const { sources, destination } of copiesFromBuild) {
      for (const source of sources.filter((path) => path.startsWith("/app/node_modules/"))) {
        const target = join(
          app,
          destination,
          destination.endsWith("/") ? source.split("/").at(-1)! : "",
        );
        mkdirSync(dirname(target), { recursive: true });
        copyFileSync(join(ROOT, source.slice("/app/".length)), target);
      }
    }
    const require = createRequire(join(app, "dist/src/server/explorer.js"));
    const files = loadExplorerFiles((pkg) => dirname(require.resolve(`${pkg}/package.json`)));
    expect(files.installed ? [...files.assets.keys()] : files.reason).toEqual(
      expect.arrayContaining(EXPLORER_PACKAGE_FILES.map(({ name }) => name)),
    );
  });
});

describe("the Kubernetes deployment (read offline)", () => {
  it("sets HOST for the container", () => {
    const deployment = parse(
      readFileSync(join(ROOT, "deploy/kubernetes/base/deployment.yaml"), "utf8"),
    ) as {
      spec: { template: { spec: { containers: { env?: { name: string; value?: string }[] }[] } } };
    };
    const env = deployment.spec.template.spec.containers[0]!.env ?? [];
    expect(env.find(({ name }) => name === "HOST")?.value).toBe("0.0.0.0");
  });
});
