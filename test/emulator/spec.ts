import { readFileSync } from "node:fs";
import { Ajv, type ValidateFunction } from "ajv";
import addFormatsModule from "ajv-formats";

/**
 * JSON-schema validators built from the published REST spec in ../shared, so a response that drifts
 * from it fails a test. Stricter than the spec in one way: no property the spec does not name
 * (`additionalProperties: false`), because an emulator that invents fields is drifting too.
 */
const specPath = new URL(
  "../../../shared/acs-identity-spec/2023-10-01/CommunicationIdentity.json",
  import.meta.url,
);
const spec = JSON.parse(readFileSync(specPath, "utf8")) as {
  definitions: Record<string, Record<string, unknown>>;
};

function closed(schema: unknown): unknown {
  if (Array.isArray(schema)) {
    return schema.map(closed);
  }
  if (schema && typeof schema === "object") {
    const copy: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(schema)) {
      copy[key] = closed(value);
    }
    if (copy.type === "object" && copy.properties && copy.additionalProperties === undefined) {
      copy.additionalProperties = false;
    }
    return copy;
  }
  return schema;
}

// ajv-formats is CommonJS with a default export; under NodeNext the callable sits on `.default`.
const addFormats = ((addFormatsModule as unknown as { default?: typeof addFormatsModule })
  .default ?? addFormatsModule) as unknown as (ajv: Ajv) => Ajv;

const ajv = new Ajv({ allErrors: true, strict: true });
addFormats(ajv);
// Swagger's own vocabulary, which JSON schema does not know.
ajv.addKeyword("x-ms-enum");
ajv.addFormat("int32", {
  type: "number",
  validate: (n: number) => Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31,
});
ajv.addSchema({ $id: "acs-identity", definitions: closed(spec.definitions) });
ajv.addSchema({
  // The spec refers to Common's CommunicationErrorResponse without shipping it: the shape recorded in
  // ACS-WIRE-FACTS.md ("Errors seen from the real service").
  $id: "communication-error",
  type: "object",
  required: ["error"],
  additionalProperties: false,
  properties: {
    error: {
      type: "object",
      required: ["code", "message"],
      additionalProperties: false,
      properties: {
        code: { type: "string", minLength: 1 },
        message: { type: "string", minLength: 1 },
        target: { type: "string" },
        details: { type: "array" },
        innererror: { type: "object" },
      },
    },
  },
});

export type SpecDefinition =
  | "CommunicationIdentityAccessTokenResult"
  | "CommunicationIdentityAccessToken"
  | "CommunicationIdentity";

const cache = new Map<string, ValidateFunction>();
function validator(ref: string): ValidateFunction {
  let fn = cache.get(ref);
  if (!fn) {
    fn = ajv.compile({ $ref: ref });
    cache.set(ref, fn);
  }
  return fn;
}

/** Throws with ajv's error list when `body` does not match the spec's definition. */
export function assertMatchesSpec(definition: SpecDefinition, body: unknown): void {
  const validate = validator(`acs-identity#/definitions/${definition}`);
  if (!validate(body)) {
    throw new Error(
      `${definition} mismatch: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(body)}`,
    );
  }
}

export function assertErrorShape(body: unknown): void {
  const validate = validator("communication-error");
  if (!validate(body)) {
    throw new Error(
      `error body mismatch: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(body)}`,
    );
  }
}

/** The spec's own request examples, to send exactly what the spec shows. */
export function specExample(name: string): { parameters: Record<string, unknown> } {
  return JSON.parse(
    readFileSync(
      new URL(
        `../../../shared/acs-identity-spec/2023-10-01/examples/${name}.json`,
        import.meta.url,
      ),
      "utf8",
    ),
  ) as { parameters: Record<string, unknown> };
}
