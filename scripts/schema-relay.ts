// Compiles the sample Relay operations in test/relay/ (@connection both ways, @refetchable through
// node(id:), a mutation) against the committed schema.graphql with relay-compiler, as a Relay app
// would. The artifacts go to a temporary directory and are thrown away: only the verdict matters.
// `bun scripts/schema-relay.ts` exits non-zero with the compiler's errors when it refuses the schema.
import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const work = mkdtempSync(join(tmpdir(), "relay-sample-"));
try {
  cpSync(join(root, "test/relay"), join(work, "src"), { recursive: true });
  const config = {
    src: "./src",
    schema: join(root, "schema.graphql"),
    language: "typescript",
    artifactDirectory: "./__generated__",
    // The schema's own scalars, typed as the server serialises them.
    customScalarTypes: { DateTime: "string", JSON: "unknown" },
  };
  mkdirSync(join(work, "__generated__"));
  writeFileSync(join(work, "relay.config.json"), JSON.stringify(config, null, 2));
  // relay-compiler's npm package ships the native compiler for each platform; its cli.js picks one.
  const cli = createRequire(import.meta.url).resolve("relay-compiler/cli.js");
  const run = spawnSync(process.execPath, [cli, "--output", "quiet-with-errors"], {
    cwd: work,
    encoding: "utf8",
  });
  process.stdout.write(run.stdout ?? "");
  process.stderr.write(run.stderr ?? "");
  if (run.status !== 0) {
    console.error("relay-compiler refused the sample operations in test/relay/ against schema.graphql");
    process.exit(1);
  }
  console.log("relay-compiler accepts the sample operations (test/relay/) against schema.graphql");
} finally {
  rmSync(work, { recursive: true, force: true });
}
