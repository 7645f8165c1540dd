#!/usr/bin/env node
// `npm test`: the whole Bun suite, then the end-to-end suites again against the real Deno server
// (TEST_RUNTIME=deno: test/utils/server.ts starts `deno run -A api/main-deno.ts` instead of the
// in-process Bun server). Both passes stream as they run; the end is one combined line
//
//   skipped: <reason>; <reason>          (only when tests were skipped for a reason)
//   N passed, N failed[, N skipped]
//
// which .ci/run repeats. Arguments (`npm test -- test/x.test.ts`, `-t name`) run just those on Bun.
// Plain Node on purpose: it only starts bun and reads its summary.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

/** The end-to-end suites that run on both runtimes (the Deno pass). */
const DENO_E2E = [
  "test/api/accounts.test.ts",
  "test/api/graphql-ws.test.ts",
  "test/api/graphql-http-audits.test.ts",
  "test/api/routes.test.ts",
  "test/api/branching.e2e.test.ts",
  "test/api/runs.test.ts",
  "test/collab/collab.test.ts",
  "test/collab/files.test.ts",
];

/** Real servers, sandboxes and agents exceed bun's 5 s default on a 2-core machine. */
const TIMEOUT = ["--timeout", "30000"];

const binary = (name) => {
  const local = join(ROOT, "node_modules", ".bin", name);
  return existsSync(local) ? local : null;
};

/** Runs `bun test …`, copying its output through; resolves with its counts and skip reasons. */
function bunTest(args, env = {}) {
  return new Promise((resolve) => {
    const child = spawn(binary("bun") ?? "bun", ["test", ...TIMEOUT, ...args], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ["inherit", "pipe", "pipe"],
    });
    let text = "";
    const tee = (from, to) =>
      from.on("data", (chunk) => {
        to.write(chunk);
        text += chunk.toString("utf8");
      });
    tee(child.stdout, process.stdout);
    tee(child.stderr, process.stderr);
    child.on("error", (error) => {
      text += `\n${error.message}\n`;
    });
    child.on("close", (code, signal) => {
      const count = (word) => {
        const all = [...text.matchAll(new RegExp(`^\\s*(\\d+) ${word}$`, "gm"))];
        return all.length > 0 ? Number(all.at(-1)[1]) : 0;
      };
      const reasons = [...text.matchAll(/^skipped: (.+)$/gm)].flatMap((m) => m[1].split("; "));
      let failed = count("fail");
      // A crash before bun's summary (or a failure it does not count) is one failure.
      if ((code !== 0 || signal) && failed === 0) failed = 1;
      resolve({ passed: count("pass"), failed, skipped: count("skip"), reasons });
    });
  });
}

const forwarded = process.argv.slice(2);
const passes = [await bunTest(forwarded)];
if (forwarded.length === 0) {
  if (binary("deno")) {
    console.log(
      `\n::: the end-to-end suites on the Deno server (TEST_RUNTIME=deno): ${DENO_E2E.length} files`,
    );
    passes.push(await bunTest(DENO_E2E, { TEST_RUNTIME: "deno" }));
  } else {
    passes.push({
      passed: 0,
      failed: 0,
      skipped: 0,
      reasons: ["the Deno pass (deno is not installed: it is an npm dependency, run npm install)"],
    });
  }
}

const total = (key) => passes.reduce((sum, pass) => sum + pass[key], 0);
const [passed, failed, skipped] = [total("passed"), total("failed"), total("skipped")];
const reasons = [...new Set(passes.flatMap((pass) => pass.reasons))];
console.log("");
if (reasons.length > 0) console.log(`skipped: ${reasons.join("; ")}`);
console.log(
  skipped > 0
    ? `${passed} passed, ${failed} failed, ${skipped} skipped`
    : `${passed} passed, ${failed} failed`,
);
process.exit(failed > 0 ? 1 : 0);
