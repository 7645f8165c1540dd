// Benchmarks the snapshot engine on a generated tree shaped like a real project (an npm install of a
// dozen packages: ~28,000 files, 200+ MB), for both workspace strategies, against `cp -a` and
// `git add -A && git write-tree` on the same tree. Prints medians and ratios.
//
//   bun scripts/bench-snapshots.ts [--files 28000] [--reps 5] [--strategies overlay,copy]
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { LocalProvider } from "../sandbox/local/provider.ts";

const { values } = parseArgs({
  options: {
    files: { type: "string", default: "28000" },
    reps: { type: "string", default: "5" },
    strategies: { type: "string", default: "overlay,copy" },
    keep: { type: "boolean", default: false },
  },
});
const FILES = Number(values.files);
const REPS = Number(values.reps);
const STRATEGIES = values.strategies!.split(",") as ("overlay" | "copy")[];

// ---- the tree -------------------------------------------------------------------------------------

/** xorshift32: deterministic, fast, good enough for file contents. */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

const TOKENS = "const let function return import export from require module if else for while async await "
  .concat("this.value = null; }) => { [0, 1, 2] 'use strict'; /** @param {string} name */ \n  ")
  .split("");

function textContent(rand: () => number, size: number): Buffer {
  const buf = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) buf[i] = TOKENS[(rand() * TOKENS.length) | 0]!.charCodeAt(0);
  return buf;
}

function generateTree(dir: string, files: number): { bytes: number } {
  const marker = join(dir, ".generated");
  const spec = `v2 ${files}`;
  if (existsSync(marker) && readFileSync(marker, "utf8").startsWith(spec)) {
    return { bytes: Number(readFileSync(marker, "utf8").split(" ")[2]) };
  }
  rmSync(dir, { recursive: true, force: true });
  const rand = rng(42);
  const packages = [
    "react",
    "lodash",
    "typescript",
    "webpack",
    "@babel/core",
    "eslint",
    "rxjs",
    "moment",
    "axios",
    "express",
    "jest",
    "next",
  ];
  const kinds = [".js", ".js", ".js", ".d.ts", ".js.map", ".json", ".md", ".mjs", ".cjs"];
  let bytes = 0;
  // Each package gets ~300 directories up to 5 deep (a real install of this size has a few thousand
  // directories in all, about 8 files each), and files are spread over them.
  const names = ["lib", "dist", "src", "esm", "cjs", "internal", "utils", "types", "helpers", "plugins"];
  const folders = packages.map((pkg) => {
    const list = [join(dir, "node_modules", pkg)];
    while (list.length < 300) {
      const parent = list[(rand() * list.length) | 0]!;
      if (parent.split("/").length - dir.split("/").length > 6) continue;
      list.push(join(parent, names[(rand() * names.length) | 0]! + list.length));
    }
    for (const folder of list) mkdirSync(folder, { recursive: true });
    return list;
  });
  for (let i = 0; i < files; i++) {
    const list = folders[i % packages.length]!;
    const folder = list[(rand() * list.length) | 0]!;
    // Log-uniform sizes from 200 B to 30 kB, plus a few large bundles and binaries (as real installs have).
    let size = Math.round(200 * Math.exp(rand() * Math.log(150)));
    let binary = false;
    if (i % 700 === 0) {
      size = 500_000 + ((rand() * 1_500_000) | 0);
      binary = i % 1400 === 0;
    }
    const name = binary ? `addon${i}.node` : `file${i}${kinds[(rand() * kinds.length) | 0]}`;
    const data = binary
      ? Buffer.from(Array.from({ length: size }, () => (rand() * 256) | 0))
      : textContent(rand, size);
    writeFileSync(join(folder, name), data);
    bytes += size;
  }
  writeFileSync(join(dir, "package.json"), '{"name":"bench","private":true}\n');
  writeFileSync(marker, `${spec} ${bytes}`);
  return { bytes };
}

// ---- measuring ------------------------------------------------------------------------------------

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;

async function time(fn: () => Promise<unknown> | unknown): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

async function medianOf(reps: number, fn: (i: number) => Promise<number>): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < reps; i++) xs.push(await fn(i));
  return median(xs);
}

/** Changes 10 files of the tree in place, as a command would. */
function touchTen(root: string, files: string[], round: number) {
  for (let i = 0; i < 10; i++) {
    const f = join(root, files[(round * 10 + i * 997) % files.length]!);
    writeFileSync(f, `// edited in round ${round}\n${readFileSync(f, "utf8").slice(0, 5000)}`);
  }
}

function sample(root: string): string[] {
  return execFileSync("find", [".", "-type", "f", "-name", "*.js"], { cwd: root, maxBuffer: 64 << 20 })
    .toString()
    .trim()
    .split("\n")
    .slice(0, 5000);
}

const work = mkdtempSync(join(tmpdir(), "occ-bench-"));
const treeDir = join(tmpdir(), "occ-bench-tree");
console.log(`generating ${FILES} files in ${treeDir} ...`);
const { bytes } = generateTree(treeDir, FILES);
const treeFiles = sample(treeDir);
const fileCount = Number(execFileSync("sh", ["-c", `find ${treeDir} -type f | wc -l`]).toString());
console.log(`tree: ${fileCount} files, ${(bytes / 1e6).toFixed(0)} MB of file data\n`);

const rows: [string, number][] = [];
const row = (name: string, ms: number) => {
  rows.push([name, ms]);
  console.log(`${name.padEnd(62)} ${ms.toFixed(1).padStart(9)} ms`);
};

// Baselines
row(
  "baseline: cp -a (whole tree)",
  await medianOf(Math.min(REPS, 3), async (i) => {
    const dst = join(work, `cp-${i}`);
    const ms = await time(() => execFileSync("cp", ["-a", treeDir, dst]));
    rmSync(dst, { recursive: true, force: true });
    return ms;
  }),
);
const gitDir = join(work, "git");
execFileSync("cp", ["-a", treeDir, gitDir]);
execFileSync("git", ["init", "-q"], { cwd: gitDir });
const git = (...args: string[]) => execFileSync("git", args, { cwd: gitDir, maxBuffer: 64 << 20 });
row(
  "baseline: git add -A && git write-tree (first)",
  await time(() => {
    git("add", "-A");
    git("write-tree");
  }),
);
row(
  "baseline: git add -A && git write-tree (after 10 changed files)",
  await medianOf(REPS, async (i) => {
    touchTen(gitDir, treeFiles, 100 + i);
    return time(() => {
      git("add", "-A");
      git("write-tree");
    });
  }),
);
rmSync(gitDir, { recursive: true, force: true });

for (const strategy of STRATEGIES) {
  console.log(`\n-- local provider, ${strategy} workspaces`);
  let provider: LocalProvider | undefined;
  let sbx = "";
  let first = "";
  const firsts: number[] = [];
  for (let i = 0; i < Math.min(REPS, 3); i++) {
    await provider?.close();
    // A fresh store each time: the first snapshot must hash and store everything.
    provider = await new LocalProvider({ dir: join(work, `${strategy}-${i}`), workspaces: strategy }).init();
    sbx = await provider.create({ kind: "empty" });
    execFileSync("cp", ["-a", `${treeDir}/.`, provider.hostPath(sbx)]);
    firsts.push(
      await time(async () => {
        first = (await provider!.snapshot(sbx)).id;
      }),
    );
  }
  const p = provider!;
  row(`${strategy}: first snapshot`, median(firsts));

  const snaps = [first];
  row(
    `${strategy}: incremental snapshot after 10 changed files`,
    await medianOf(REPS, async (i) => {
      touchTen(p.hostPath(sbx), treeFiles, i);
      let id = "";
      const ms = await time(async () => {
        id = (await p.snapshot(sbx)).id;
      });
      snaps.push(id);
      return ms;
    }),
  );

  row(
    `${strategy}: new sandbox ready (create + first command)`,
    await medianOf(REPS, async () => {
      let id = "";
      const ms = await time(async () => {
        id = await p.create({ kind: "empty" });
        await p.exec(id, { command: "true" });
      });
      await p.destroy(id);
      return ms;
    }),
  );
  row(
    `${strategy}: command overhead (exec "true")`,
    await medianOf(REPS, () => time(() => p.exec(sbx, { command: "true" }))),
  );

  row(
    `${strategy}: fork of the project snapshot`,
    await medianOf(REPS, async () => {
      let id = "";
      const ms = await time(async () => {
        id = await p.fork(snaps.at(-1)!);
      });
      await p.destroy(id);
      return ms;
    }),
  );
  row(
    `${strategy}: fork + first command`,
    await medianOf(REPS, async () => {
      let id = "";
      const ms = await time(async () => {
        id = await p.fork(snaps.at(-1)!);
        await p.exec(id, { command: "test -f package.json" });
      });
      await p.destroy(id);
      return ms;
    }),
  );
  row(
    `${strategy}: rollback (reset to an earlier snapshot)`,
    await medianOf(REPS, (i) => time(() => p.reset(sbx, snaps[i % 2 === 0 ? 1 : snaps.length - 1]!))),
  );
  row(
    `${strategy}: diff of two neighbouring snapshots`,
    await medianOf(REPS, async (i) => {
      const a = snaps[1 + (i % (snaps.length - 2))]!;
      const b = snaps[2 + (i % (snaps.length - 2))]!;
      return time(() => p.diff(a, b));
    }),
  );
  const rss = process.memoryUsage().rss / 1e6;
  console.log(`${strategy}: benchmark process RSS ${rss.toFixed(0)} MB`);
  await p.close();
}

const get = (name: string) => rows.find(([n]) => n === name)?.[1];
console.log("\nratios (lower is better for us):");
const cp = get("baseline: cp -a (whole tree)")!;
const gitFirst = get("baseline: git add -A && git write-tree (first)")!;
const gitIncr = get("baseline: git add -A && git write-tree (after 10 changed files)")!;
for (const strategy of STRATEGIES) {
  const ratio = (a: string, b: number) => `${((get(`${strategy}: ${a}`) ?? Number.NaN) / b).toFixed(3)}`;
  console.log(
    `${strategy}: first snapshot / git first = ${ratio("first snapshot", gitFirst)}; ` +
      `incremental / git incremental = ${ratio("incremental snapshot after 10 changed files", gitIncr)}; ` +
      `fork / cp -a = ${ratio("fork of the project snapshot", cp)}; rollback / cp -a = ${ratio("rollback (reset to an earlier snapshot)", cp)}`,
  );
}
console.log("\ntargets: fork, rollback, ready, incremental < 100 ms; first snapshot < 2000 ms");

if (!values.keep) rmSync(work, { recursive: true, force: true });
