import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { Emulator } from "@acs-identity-gateway/emulator";
import { introspect } from "../helpers/introspect.js";
import { identityClient, startTestEmulator } from "../helpers/emulator.js";
import { refusal } from "./refusal.js";
import { rawRequest } from "./signing.js";

/** ACS_EMULATOR_STATE_FILE: identities, deletions and revocations survive a restart. */
const dir = mkdtempSync(join(tmpdir(), "acs-emulator-state-"));
const stateFile = join(dir, "nested", "state.json");
const open: Emulator[] = [];

async function start(file = stateFile): Promise<Emulator> {
  const emulator = await startTestEmulator({ stateFile: file });
  open.push(emulator);
  return emulator;
}

afterAll(async () => {
  await Promise.all(open.map((e) => e.close()));
  rmSync(dir, { recursive: true, force: true });
});

describe("a state file", () => {
  it("keeps identities, deletions, revocations and the signing key across a restart", async () => {
    const first = await start();
    const client = identityClient(first);
    const kept = await client.createUser();
    const keptToken = await client.getToken(kept, ["chat"]);
    const revoked = await client.createUserAndToken(["voip"]);
    await client.revokeTokens(revoked.user);
    const deleted = await client.createUser();
    await client.deleteUser(deleted);
    await first.close();

    const second = await start();
    const again = identityClient(second);
    // Tokens of the first run still verify: the key lives in the state file.
    expect(await introspect(second, keptToken.token)).toMatchObject({ active: true });
    expect(await introspect(second, revoked.token)).toMatchObject({
      active: false,
      reason: "revoked",
    });
    await expect(again.getToken(kept, ["voip"])).resolves.toBeDefined();
    expect((await refusal(again.getToken(deleted, ["chat"]))).statusCode).toBe(404);
    expect((await refusal(again.revokeTokens(deleted))).statusCode).toBe(404);
  });

  it("keeps a revoke still propagating, which takes effect at its time after the restart", async () => {
    let clock = Date.now();
    const file = join(dir, "delayed.json");
    const first = await startTestEmulator({
      stateFile: file,
      revocationDelaySeconds: 600,
      now: () => clock,
    });
    open.push(first);
    const client = identityClient(first);
    const { user, token } = await client.createUserAndToken(["chat"]);
    clock += 1000;
    const revokedAt = clock;
    await client.revokeTokens(user);
    await first.close();

    // Restarted without a delay: the revoke made before keeps its own.
    const second = await startTestEmulator({ stateFile: file, now: () => clock });
    open.push(second);
    expect(await introspect(second, token)).toMatchObject({ active: true });
    clock = revokedAt + 600_000;
    expect(await introspect(second, token)).toMatchObject({ active: false, reason: "revoked" });
  });

  it("is emptied by POST /emulator/reset, its signing key kept", async () => {
    const file = join(dir, "reset.json");
    const first = await start(file);
    const user = await identityClient(first).createUser();
    const before = JSON.parse(readFileSync(file, "utf8"));
    expect(before.identities).toHaveLength(1);
    const reset = await rawRequest(first.endpoint, first.accessKey, {
      method: "POST",
      path: "/emulator/reset",
    });
    expect(reset.status).toBe(204);
    const after = JSON.parse(readFileSync(file, "utf8"));
    expect(after.identities).toEqual([]);
    expect(after.signingKeyPem).toBe(before.signingKeyPem);
    await first.close();
    const second = await start(file);
    expect((await refusal(identityClient(second).getToken(user, ["chat"]))).statusCode).toBe(404);
  });

  it("keeps lastTokenIssuedAt in memory only: absent after a restart, whatever was saved since", async () => {
    const file = join(dir, "last-token.json");
    const first = await start(file);
    const client = identityClient(first);
    const user = await client.createUser();
    await client.getToken(user, ["chat"]);
    // A later change saves the file again, with the token's time in memory.
    await client.createUser();
    const listed = async (emulator: Emulator) =>
      (
        (
          await rawRequest(emulator.endpoint, emulator.accessKey, {
            method: "GET",
            path: "/emulator/identities",
          })
        ).json as { value: { id: string; lastTokenIssuedAt?: string }[] }
      ).value.find((identity) => identity.id === user.communicationUserId)!;
    expect((await listed(first)).lastTokenIssuedAt).toEqual(expect.any(String));
    await first.close();

    const second = await start(file);
    expect(await listed(second)).not.toHaveProperty("lastTokenIssuedAt");
  });

  it("is written atomically and readable only by its owner", async () => {
    await start();
    expect(statSync(stateFile).mode & 0o777).toBe(0o600);
    // No temp file is left beside it.
    expect(readdirSync(join(dir, "nested"))).toEqual(["state.json"]);
  });

  it("refuses to start on a file that is not a state file, or of another resource", async () => {
    const broken = join(dir, "broken.json");
    writeFileSync(broken, "{ not json");
    await expect(start(broken)).rejects.toThrow(/not an emulator state file/);

    const other = join(dir, "other.json");
    const emulator = await startTestEmulator({
      stateFile: other,
      resourceId: "11111111-2222-4333-8444-555555555555",
    });
    await emulator.close();
    await expect(start(other)).rejects.toThrow(/belongs to resource 11111111/);
  });

  it("without a state file, a restart forgets everything", async () => {
    const first = await startTestEmulator();
    const user = await identityClient(first).createUser();
    await first.close();
    const second = await startTestEmulator();
    open.push(second);
    expect((await refusal(identityClient(second).getToken(user, ["chat"]))).statusCode).toBe(404);
  });
});
