// Prints the GraphQL schema (SDL) to schema.graphql, the reviewed public contract.
// `bun scripts/print-schema.ts --check` exits 1 when the committed file is out of date.
import { readFileSync, writeFileSync } from "node:fs";
import { printSchema } from "graphql";
import { schema } from "../schema/index.ts";

const file = new URL("../schema.graphql", import.meta.url);
const sdl = `${printSchema(schema)}\n`;

if (process.argv.includes("--check")) {
  let committed = "";
  try {
    committed = readFileSync(file, "utf8");
  } catch {}
  if (committed !== sdl) {
    console.error("schema.graphql is out of date: run npm run schema:print");
    process.exit(1);
  }
  console.log("schema.graphql is up to date");
} else {
  writeFileSync(file, sdl);
  console.log(`wrote ${file.pathname}`);
}
