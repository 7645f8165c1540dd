import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { printSchema } from "graphql";
import { schema } from "../../schema/index.ts";

test("schema.graphql is the printed schema (run `npm run schema:print` after changing the schema)", () => {
  const committed = readFileSync(new URL("../../schema.graphql", import.meta.url), "utf8");
  expect(committed).toBe(`${printSchema(schema)}\n`);
});

test("the contract's names from the design sketch are present", () => {
  const sdl = printSchema(schema);
  for (const name of [
    "me: User",
    "health: Health!",
    "register(",
    "login(",
    "createApiKey(",
    "revokeApiKey(",
  ]) {
    expect(sdl).toContain(name);
  }
});
