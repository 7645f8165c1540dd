// Bounded diffs between two manifests: every omitted patch says why, one diff's total work is capped,
// and a pool's refusals and overruns come out typed.
import { expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { DIFF_LIMITS, type DiffLimits, diffManifests, type Patcher } from "../../sandbox/diff.ts";
import { WorkerPoolError } from "../../sandbox/diff-pool.ts";
import type { Manifest, ManifestEntry } from "../../sandbox/manifest.ts";
import { SandboxError } from "../../sandbox/provider.ts";

/** Two manifests over an in-memory object store that records which objects were read. */
function trees(before: Record<string, string | Uint8Array>, after: Record<string, string | Uint8Array>) {
  const objects = new Map<string, Uint8Array>();
  const reads: string[] = [];
  const manifest = (files: Record<string, string | Uint8Array>): Manifest =>
    new Map(
      Object.entries(files).map(([path, content]): [string, ManifestEntry] => {
        const data = typeof content === "string" ? new TextEncoder().encode(content) : content;
        const h = createHash("sha256").update(data).digest("hex");
        objects.set(h, data);
        return [path, { t: "f", m: 0o644, s: data.byteLength, h }];
      }),
    );
  const from = manifest(before);
  const to = manifest(after);
  const read = async (hash: string) => {
    reads.push(hash);
    return objects.get(hash)!;
  };
  const readPaths = () => [
    ...new Set(reads.flatMap((h) => [...from, ...to].filter(([, e]) => e.h === h).map(([path]) => path))),
  ];
  return { from, to, read, readPaths };
}

const lines = (n: number, tag: string) => Array.from({ length: n }, (_, i) => `line ${i} ${tag}\n`).join("");
const limits = (overrides: Partial<DiffLimits>): DiffLimits => ({ ...DIFF_LIMITS, ...overrides });

test("text changes get patches; binary, oversized and costly ones say why they have none", async () => {
  const t = trees(
    {
      "small.txt": "one\ntwo\nthree\n",
      "image.png": new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0, 1, 2]),
      "big.txt": "x".repeat(200_000),
      "rewritten.txt": lines(2000, "old"),
    },
    {
      "small.txt": "one\n2\nthree\n",
      "image.png": new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0, 1, 3]),
      "big.txt": "y".repeat(200_000),
      "rewritten.txt": lines(2000, "new"),
    },
  );
  const entries = await diffManifests(
    t.from,
    t.to,
    t.read,
    undefined,
    limits({ maxFileBytes: 100_000, maxEditLength: 100 }),
  );
  const byPath = Object.fromEntries(entries.map((e) => [e.path, e]));
  expect(byPath["small.txt"]!.patch).toContain("-two\n+2\n");
  expect(byPath["small.txt"]!.patchOmitted).toBeUndefined();
  expect(byPath["image.png"]).toMatchObject({ binary: true, patchOmitted: "BINARY" });
  expect(byPath["big.txt"]).toMatchObject({ binary: false, patchOmitted: "TOO_LARGE" });
  expect(byPath["rewritten.txt"]).toMatchObject({ binary: false, patchOmitted: "TOO_COMPLEX" });
  for (const path of ["image.png", "big.txt", "rewritten.txt"]) expect(byPath[path]!.patch).toBeUndefined();
  // An oversized file is never even read.
  expect(t.readPaths()).not.toContain("big.txt");
});

test("an added file or a long append is cheap whatever the edit-length bound, and gets its patch", async () => {
  const t = trees(
    { "log.txt": lines(10, "a") },
    { "log.txt": lines(5000, "a"), "new.txt": lines(5000, "n") },
  );
  const entries = await diffManifests(t.from, t.to, t.read, undefined, limits({ maxEditLength: 10 }));
  expect(entries.map((e) => [e.path, e.change, e.patchOmitted])).toEqual([
    ["log.txt", "modified", undefined],
    ["new.txt", "added", undefined],
  ]);
  expect(entries[0]!.patch).toContain("+line 4999 a");
  expect(entries[1]!.patch).toContain("+line 4999 n");
});

test("one diff patches at most so many files and bytes; the rest are left unread (BUDGET_EXCEEDED)", async () => {
  const before: Record<string, string> = {};
  const after: Record<string, string> = {};
  for (let i = 0; i < 5; i++) {
    before[`f${i}.txt`] = `before ${i}\n`;
    after[`f${i}.txt`] = `after ${i}\n`;
  }
  const t = trees(before, after);
  const byFiles = await diffManifests(t.from, t.to, t.read, undefined, limits({ maxFiles: 2 }));
  expect(byFiles.map((e) => e.patchOmitted ?? "patched")).toEqual([
    "patched",
    "patched",
    "BUDGET_EXCEEDED",
    "BUDGET_EXCEEDED",
    "BUDGET_EXCEEDED",
  ]);
  expect(t.readPaths().sort()).toEqual(["f0.txt", "f1.txt"]);
  // Each file is 9 + 8 bytes: 40 bytes cover two of them.
  const byBytes = await diffManifests(t.from, t.to, t.read, undefined, limits({ maxBytes: 40 }));
  expect(byBytes.filter((e) => e.patch).length).toBe(2);
  expect(byBytes.filter((e) => e.patchOmitted === "BUDGET_EXCEEDED").length).toBe(3);
});

test("a mode change alone has neither a patch nor an omission", async () => {
  const t = trees({ "run.sh": "echo hi\n" }, { "run.sh": "echo hi\n" });
  t.to.set("run.sh", { ...t.to.get("run.sh")!, m: 0o755 });
  const [entry] = await diffManifests(t.from, t.to, t.read);
  expect(entry).toMatchObject({ path: "run.sh", oldMode: 0o644, newMode: 0o755, binary: false });
  expect(entry!.patch).toBeUndefined();
  expect(entry!.patchOmitted).toBeUndefined();
});

test("a patch job that overruns its worker is TOO_COMPLEX; a full or closed pool is UNAVAILABLE", async () => {
  const t = trees({ "a.txt": "1\n" }, { "a.txt": "2\n" });
  const failing =
    (code: WorkerPoolError["code"]): Patcher =>
    async () => {
      throw new WorkerPoolError(code, "test");
    };
  const [overrun] = await diffManifests(t.from, t.to, t.read, failing("DEADLINE"));
  expect(overrun!.patchOmitted).toBe("TOO_COMPLEX");
  const [crashed] = await diffManifests(t.from, t.to, t.read, failing("CRASHED"));
  expect(crashed!.patchOmitted).toBe("TOO_COMPLEX");
  for (const code of ["BUSY", "CLOSED"] as const) {
    const error = await diffManifests(t.from, t.to, t.read, failing(code)).catch((e) => e);
    expect(error).toBeInstanceOf(SandboxError);
    expect(error.code).toBe("UNAVAILABLE");
  }
});

test("a diff of a huge tree lists changes in path order and lets other work run meanwhile", async () => {
  // 60,000 directories in scrambled order, half of them new: no file is read, nothing is patched.
  const dir: ManifestEntry = { t: "d", m: 0o755, s: 0 };
  const names = Array.from({ length: 60_000 }, (_, i) => `d${(i * 7919) % 60_000}`);
  const from: Manifest = new Map(names.filter((_, i) => i % 2).map((n) => [n, dir]));
  const to: Manifest = new Map(names.map((n) => [n, dir]));
  const events: string[] = [];
  setTimeout(() => events.push("timer"), 0);
  const entries = await diffManifests(from, to, async () => {
    throw new Error("nothing is read");
  });
  events.push("diff");
  expect(entries.length).toBe(30_000);
  const paths = entries.map((e) => e.path);
  expect(paths).toEqual(paths.slice().sort());
  expect(new Set(paths).size).toBe(30_000);
  // The timer fired while the diff ran: it yields to the event loop.
  expect(events).toEqual(["timer", "diff"]);
});
