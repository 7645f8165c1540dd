import { defineConfig } from "drizzle-kit";

// Generation only needs the schema; migrations are applied by the server at start (db/migrate.ts).
export default defineConfig({
  schema: "./db/schema.ts",
  out: "./db/migrations",
  dialect: "turso",
  dbCredentials: { url: "file:.data/drizzle-kit.db" },
});
