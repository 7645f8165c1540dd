// Breaking-change check of the committed schema.graphql (graphql-inspector), so that breaking the API's
// clients is a decision, not an accident. The baseline is, in order: $SCHEMA_BASE_REF (any git ref);
// the latest release tag; HEAD while schema.graphql has uncommitted changes; otherwise the version
// before the last commit that changed it.
//
// A breaking change passes only when allowed: a line in scripts/schema-breaking-allow.txt naming its
// path as printed here (e.g. `Session.title`, then `# why`), or BREAKING_CHANGE_OK=1 for one run.
// Dangerous changes (new arguments, new interfaces...) are listed but pass.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { CriticalityLevel, diff } from "@graphql-inspector/core";
import { buildSchema } from "graphql";

const root = new URL("..", import.meta.url).pathname;
const FILE = "schema.graphql";
const ALLOW = "scripts/schema-breaking-allow.txt";

const git = (...args: string[]) =>
  execFileSync("git", args, { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
const tryGit = (...args: string[]) => {
  try {
    return git(...args);
  } catch {
    return null;
  }
};

function baseline(): { ref: string; why: string } | null {
  if (process.env.SCHEMA_BASE_REF) return { ref: process.env.SCHEMA_BASE_REF, why: "SCHEMA_BASE_REF" };
  const tag = tryGit("describe", "--tags", "--abbrev=0");
  if (tag) return { ref: tag, why: "the latest release tag" };
  if (tryGit("status", "--porcelain", "--", FILE)) return { ref: "HEAD", why: "the last commit" };
  const last = tryGit("log", "-1", "--format=%H", "--", FILE);
  if (last && tryGit("rev-parse", "--verify", "--quiet", `${last}^`))
    return { ref: `${last}^`, why: "the version before its last change" };
  return null;
}

const base = baseline();
const before = base && tryGit("show", `${base.ref}:${FILE}`);
if (!base || !before) {
  console.log(`schema-breaking: no earlier ${FILE} to compare with (no history); nothing to check`);
  process.exit(0);
}
const changes = await diff(buildSchema(before), buildSchema(readFileSync(`${root}${FILE}`, "utf8")));

const allowed = new Set(
  readFileSync(`${root}${ALLOW}`, "utf8")
    .split("\n")
    .map((line) => line.replace(/#.*/, "").trim())
    .filter(Boolean),
);
const everything = process.env.BREAKING_CHANGE_OK === "1";
const breaking = changes.filter((c) => c.criticality.level === CriticalityLevel.Breaking);
const refused = breaking.filter((c) => !everything && !allowed.has(c.path ?? ""));
const dangerous = changes.filter((c) => c.criticality.level === CriticalityLevel.Dangerous);

console.log(`schema-breaking: ${FILE} against ${base.ref} (${base.why}): ${changes.length} changes`);
for (const c of dangerous) console.log(`  dangerous  ${c.path}: ${c.message}`);
for (const c of breaking)
  console.log(`  ${refused.includes(c) ? "BREAKING" : "allowed "}   ${c.path}: ${c.message}`);
if (refused.length > 0) {
  console.error(
    `schema-breaking: ${refused.length} breaking change(s). If they are meant, list their paths in ${ALLOW} (with why), or run with BREAKING_CHANGE_OK=1, and say so in the README's API section.`,
  );
  process.exit(1);
}
