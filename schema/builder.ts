// The schema builder: configuration only (context type, scalars, root types). No domain types here.
import SchemaBuilder from "@pothos/core";
import type { Context } from "../resolvers/context.ts";

export const builder = new SchemaBuilder<{
  Context: Context;
  Scalars: {
    DateTime: { Input: Date; Output: Date };
    JSON: { Input: unknown; Output: unknown };
  };
  DefaultFieldNullability: false;
}>({
  defaultFieldNullability: false,
});

builder.queryType({});
builder.mutationType({});
builder.subscriptionType({});
