import type { RestError } from "@azure/core-rest-pipeline";
import { expect } from "vitest";

/** The SDK's RestError of a call that must fail (fails the test if the call succeeds). */
export async function refusal(promise: Promise<unknown>): Promise<RestError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, "the call should have been refused").toBeDefined();
  return error as RestError;
}
