// The committed migrations match db/schema.ts: generating again produces nothing new.
import { expect, test } from "bun:test";
import { cpSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

test("drizzle-kit finds no schema change missing from db/migrations", () => {
  const root = resolve(import.meta.dir, "../..");
  const dir = mkdtempSync(join(tmpdir(), "occ-migrations-"));
  try {
    cpSync(join(root, "db/migrations"), join(dir, "migrations"), { recursive: true });
    const config = join(dir, "drizzle.config.ts");
    writeFileSync(
      config,
      `export default { schema: ${JSON.stringify(join(root, "db/schema.ts"))}, out: ${JSON.stringify(join(dir, "migrations"))}, dialect: "turso", dbCredentials: { url: "file:${dir}/x.db" } };\n`,
    );
    const before = readdirSync(join(dir, "migrations")).length;
    const run = Bun.spawnSync([join(root, "node_modules/.bin/drizzle-kit"), "generate", "--config", config], {
      cwd: root,
      stdout: "pipe",
      stderr: "pipe",
    });
    const output = run.stdout.toString() + run.stderr.toString();
    expect(run.exitCode, output).toBe(0);
    expect(readdirSync(join(dir, "migrations")).length, output).toBe(before);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
