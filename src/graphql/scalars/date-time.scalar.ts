import { GraphQLError, GraphQLScalarType, Kind } from "graphql";

/**
 * ISO-8601 instants in UTC (`2026-11-25T06:30:27.000Z`). Resolvers hand over epoch milliseconds
 * (what the SDK and the cache use), so serialising is one `toISOString`.
 */
export const DateTimeScalar = new GraphQLScalarType<Date, string>({
  name: "DateTime",
  description: "An instant in time, serialised as an ISO-8601 string in UTC.",
  serialize(value) {
    const date =
      value instanceof Date ? value : typeof value === "number" ? new Date(value) : undefined;
    if (!date || Number.isNaN(date.getTime())) {
      throw new GraphQLError("DateTime cannot represent this value");
    }
    return date.toISOString();
  },
  parseValue(value) {
    return parseIso(value);
  },
  parseLiteral(ast) {
    if (ast.kind !== Kind.STRING) {
      throw new GraphQLError("DateTime must be an ISO-8601 string");
    }
    return parseIso(ast.value);
  },
});

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

function parseIso(value: unknown): Date {
  if (typeof value !== "string" || !ISO.test(value)) {
    throw new GraphQLError("DateTime must be an ISO-8601 string with a time zone");
  }
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) {
    throw new GraphQLError("DateTime is not a valid instant");
  }
  return date;
}
