import { afterAll, beforeAll, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import { startGateway } from "../helpers/gateway.js";

/**
 * The start-up credential check revokes the tokens of an identity of no resource and expects 401
 * IdentityNotOwned (or 404). That answer is the probe working, not ACS failing: it must not show in
 * the series the documented alert fires on (docs/operations.md, `AcsGatewayUpstreamFailing`).
 */
let app: App;
let base: string;

beforeAll(async () => {
  app = await startGateway({ HOST: "127.0.0.1" });
  base = new URL(await app.listen(0)).origin;
});
afterAll(async () => {
  await app?.close();
});

it("a fresh gateway's /metrics has no failed ACS call: the start-up credential probe is not counted", async () => {
  expect((await app.readiness()).status).toBe("ok");
  const text = await (await fetch(`${base}/metrics`)).text();
  const series = text
    .split("\n")
    .filter((line) => line.startsWith("acsgw_upstream_requests_total{"));
  const failed = series.filter((line) => !/status="2\d\d"/.test(line));
  expect(failed).toEqual([]);
});
