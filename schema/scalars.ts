import { GraphQLError, Kind } from "graphql";
import { builder } from "./builder.ts";

const invalid = (message: string) => new GraphQLError(message, { extensions: { code: "BAD_USER_INPUT" } });

function parseDate(value: unknown): Date {
  if (typeof value !== "string") throw invalid("DateTime must be an ISO-8601 string");
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) throw invalid(`Not a valid DateTime: "${value}"`);
  return date;
}

builder.scalarType("DateTime", {
  description: "An ISO-8601 date and time in UTC, e.g. 2026-11-24T09:30:00.000Z",
  serialize: (value) => (value instanceof Date ? value : new Date(value as string | number)).toISOString(),
  parseValue: parseDate,
  parseLiteral: (ast) => {
    if (ast.kind !== Kind.STRING) throw invalid("DateTime must be an ISO-8601 string");
    return parseDate(ast.value);
  },
});

builder.scalarType("JSON", {
  description: "Any JSON value",
  serialize: (value) => value,
  parseValue: (value) => value,
  parseLiteral: function literal(ast): unknown {
    switch (ast.kind) {
      case Kind.STRING:
      case Kind.BOOLEAN:
        return ast.value;
      case Kind.INT:
      case Kind.FLOAT:
        return Number(ast.value);
      case Kind.NULL:
        return null;
      case Kind.LIST:
        return ast.values.map((v) => literal(v));
      case Kind.OBJECT:
        return Object.fromEntries(ast.fields.map((f) => [f.name.value, literal(f.value)]));
      default:
        throw invalid("JSON literals cannot contain variables");
    }
  },
});
