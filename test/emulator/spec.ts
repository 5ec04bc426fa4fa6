import { readFileSync } from "node:fs";
import { Ajv, type ValidateFunction } from "ajv";
import addFormatsModule from "ajv-formats";

/**
 * JSON-schema validators built from the published REST specs in test/fixtures/acs-identity-spec
 * (see its SOURCE.md), one per api-version, so a response that drifts from the spec of the version
 * asked for fails a test. Stricter than the spec in one way: no property the spec does not name
 * (`additionalProperties: false`), because an emulator that invents fields is drifting too.
 */
const fixture = (path: string) => new URL(`../fixtures/acs-identity-spec/${path}`, import.meta.url);
interface Spec {
  paths: Record<
    string,
    Record<string, { parameters: { in: string; schema?: { $ref: string } }[] } | undefined>
  >;
  definitions: Record<string, Record<string, unknown>>;
}
const load = (version: string) =>
  JSON.parse(readFileSync(fixture(`${version}/CommunicationIdentity.json`), "utf8")) as Spec;

/**
 * The copied spec each api-version is validated against (SOURCE.md says why some share one), and,
 * for 2025-03-02-preview, its `CommunicationIdentity` as published (commit b2f74197), the one
 * response definition that differs from 2023-10-01.
 */
const SPEC_OF_VERSION: Record<string, string> = {
  "2020-07-20-preview2": "2020-07-20-preview2",
  "2021-02-22-preview1": "2021-02-22-preview1",
  "2021-03-07": "2021-03-07",
  "2021-03-31-preview1": "2021-03-31-preview1",
  "2021-10-31-preview": "2021-10-31-preview",
  "2021-11-01": "2021-03-07",
  "2022-06-01": "2022-10-01",
  "2022-09-01": "2022-09-01",
  "2022-10-01": "2022-10-01",
  "2023-08-01": "2023-08-01",
  "2023-10-01": "2023-10-01",
  "2025-03-02-preview": "2023-10-01",
  "2025-04-01-preview": "2023-10-01",
  "2025-06-30": "2023-10-01",
};
const PREVIEW_2025_IDENTITY = {
  description: "A communication identity.",
  required: ["id"],
  type: "object",
  properties: {
    customId: {
      description: "The custom Id if one has been associated with the identity.",
      type: "string",
    },
    lastTokenIssuedAt: {
      format: "date-time",
      description: "Last time a token has been issued for the identity.",
      type: "string",
    },
    id: { description: "Identifier of the identity.", type: "string" },
  },
};
/**
 * The `/access` answers' definitions, as published for 2025-03-02-preview (commit b2f74197; the
 * Teams Phone extension's are the same in 2025-06-30 at commit 37c60514). The exchanges answer
 * `CommunicationIdentityAccessTokenResult`, whose shape is 2023-10-01's.
 */
const TEAMS_EXTENSION_DEFINITIONS = {
  TeamsExtensionAssignmentResponse: {
    required: ["objectId", "principalType", "tenantId"],
    type: "object",
    properties: {
      objectId: { type: "string" },
      tenantId: { type: "string" },
      principalType: { $ref: "#/definitions/TeamsExtensionPrincipalType" },
      clientIds: { type: "array", items: { type: "string" } },
    },
  },
  TeamsExtensionPrincipalType: {
    description: "The type of principal the assignment is for.",
    enum: ["resourceAccount", "user"],
    type: "string",
    "x-ms-enum": { name: "TeamsExtensionPrincipalType", modelAsString: true },
  },
};
const ENTRA_DEFINITIONS = {
  EntraAssignment: {
    required: ["objectId", "principalType", "tenantId", "clientIds"],
    type: "object",
    properties: {
      objectId: { type: "string" },
      tenantId: { type: "string" },
      principalType: { $ref: "#/definitions/EntraPrincipalType" },
      clientIds: { type: "array", items: { type: "string" } },
    },
  },
  EntraAssignmentsResponse: {
    required: ["value"],
    type: "object",
    properties: {
      value: { type: "array", items: { $ref: "#/definitions/EntraAssignment" } },
      nextLink: { type: "string" },
    },
  },
  EntraPrincipalType: {
    enum: ["user", "group", "tenant"],
    type: "string",
    "x-ms-enum": { name: "EntraPrincipalType", modelAsString: true },
  },
};
export const SPEC_VERSIONS = Object.keys(SPEC_OF_VERSION);

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
for (const [version, specVersion] of Object.entries(SPEC_OF_VERSION)) {
  const definitions = { ...load(specVersion).definitions };
  if (version === "2025-03-02-preview") {
    definitions.CommunicationIdentity = PREVIEW_2025_IDENTITY;
    Object.assign(definitions, ENTRA_DEFINITIONS, TEAMS_EXTENSION_DEFINITIONS);
  }
  if (version === "2025-06-30") {
    Object.assign(definitions, TEAMS_EXTENSION_DEFINITIONS);
  }
  ajv.addSchema({ $id: `acs-identity-${version}`, definitions: closed(definitions) });
}
ajv.addSchema({
  // The spec refers to Common's CommunicationErrorResponse without shipping it: the shape recorded in
  // docs/acs-wire-facts.md ("Errors seen from the real service").
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
  | "CommunicationIdentity"
  | "CommunicationIdentityToken"
  | "TeamsExtensionAssignmentResponse"
  | "EntraAssignment"
  | "EntraAssignmentsResponse";

const cache = new Map<string, ValidateFunction>();
function validator(ref: string): ValidateFunction {
  let fn = cache.get(ref);
  if (!fn) {
    fn = ajv.compile({ $ref: ref });
    cache.set(ref, fn);
  }
  return fn;
}

/** Throws with ajv's error list when `body` does not match the definition in `version`'s spec. */
export function assertMatchesSpec(
  definition: SpecDefinition,
  body: unknown,
  version = "2023-10-01",
): void {
  if (!(version in SPEC_OF_VERSION)) {
    throw new Error(`no spec for api-version ${version}`);
  }
  const validate = validator(`acs-identity-${version}#/definitions/${definition}`);
  if (!validate(body)) {
    throw new Error(
      `${definition} (${version}) mismatch: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(body)}`,
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

/**
 * Whether `version`'s own spec takes `body` as the JSON body of `POST path` (a key of its `paths`,
 * e.g. `/identities/{id}/:issueAccessToken`): the body parameter's schema, closed as above.
 * Undefined when the spec has no such operation. Only for a version validated against a spec of its
 * own: a neighbour's spec says nothing of another version's requests.
 */
export function specAcceptsRequest(
  version: string,
  path: string,
  body: unknown,
): boolean | undefined {
  if (SPEC_OF_VERSION[version] !== version) {
    throw new Error(`api-version ${version} has no spec of its own`);
  }
  const operation = load(version).paths[path]?.post;
  if (!operation) {
    return undefined;
  }
  const param = operation.parameters.find((p) => p.in === "body");
  if (!param?.schema) {
    return body === undefined;
  }
  return validator(`acs-identity-${version}${param.schema.$ref}`)(body);
}

/** The spec's own request examples, to send exactly what the spec shows. */
export function specExample(name: string): { parameters: Record<string, unknown> } {
  return JSON.parse(readFileSync(fixture(`2023-10-01/examples/${name}.json`), "utf8")) as {
    parameters: Record<string, unknown>;
  };
}
