// Disk-quota bypasses found in review (issue 12 #3 follow-up), replayed against the real server with
// small limits (a command may write 8 MB, a session keep 12 MB, a user 20 MB):
// 1. space preallocated past a file's end (fallocate --keep-size: st_size stays 0, RLIMIT_FSIZE does
//    not apply) is counted by the write meter and never kept by a snapshot;
// 2. symlinks, empty files and directories cost their entry (README, Quotas: 256 bytes + path + link
//    target; a directory also its block), and a snapshot holds a bounded number of entries;
// 3. a git clone on the host runs under the write cap on every path (file://, a local path, http).
// Each checks what the attack would have left on disk (allocated blocks under the data directory),
// what is charged, and that refusals are typed.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as fs from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { watchWrites } from "../../sandbox/local/write-meter.ts";
import { errorOf, type Gql, newSession, run as runPolling, userOf } from "../utils/quota-user.ts";
import { startTestServer, type TestServer } from "../utils/server.ts";

const MB = 1024 * 1024;
const LIMITS = {
  SANDBOX_MAX_WRITE_BYTES: "8mb",
  QUOTA_SESSION_BYTES: "12mb",
  QUOTA_USER_BYTES: "20mb",
  RUNS_MAX_PARALLEL: "2",
};
/** These attacks run longer than ordinary commands: wait up to 5 minutes for a run to end. */
const run = (ok: Gql, branchId: string, command: string) => runPolling(ok, branchId, command, 6000);
/** Charged per entry besides content (README, Quotas). */
const ENTRY = 256;
const BLOCK = 4096;

const storageOf = async (ok: Gql, sessionId: string): Promise<number> =>
  (await ok(`query($s: ID!) { session(id: $s) { storageBytes } }`, { s: sessionId })).session.storageBytes;

/** Disk space allocated under `dir` (st_blocks, each inode once): what is really kept, sparse or not. */
async function allocated(dir: string): Promise<number> {
  const seen = new Set<string>();
  let total = 0;
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    const stat = await fs.lstat(join(entry.parentPath, entry.name), { bigint: true }).catch(() => null);
    if (!stat) continue;
    const key = `${stat.dev}:${stat.ino}`;
    if (seen.has(key)) continue;
    seen.add(key);
    total += Number(stat.blocks) * 512;
  }
  return total;
}

/**
 * How much the data directory grew over `before`, once writes being thrown away have been deleted:
 * discarded workspaces are removed in the background, so this waits (up to a minute) for the growth
 * to fall under `bound`, and returns the last measure either way.
 */
async function settledGrowth(server: TestServer, before: number, bound: number): Promise<number> {
  let growth = 0;
  for (let i = 0; i < 120; i++) {
    growth = (await allocated(server.dataDir)) - before;
    if (growth < bound) return growth;
    await Bun.sleep(500);
  }
  return growth;
}

// ---- 1. preallocated space ---------------------------------------------------------------------

describe.each(["auto", "copy"])("space reserved past a file's end (%s workspaces)", (workspaces) => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ ...LIMITS, SANDBOX_WORKSPACES: workspaces });
  });
  afterAll(() => server.close());

  test("fallocate --keep-size past the cap stops the command; nothing is kept or charged", async () => {
    const { ok } = await userOf(server);
    const s = await newSession(ok, { "a.txt": "x" }, "bypass");
    const charged = await storageOf(ok, s.id);
    const before = await allocated(server.dataDir);

    // The review's attack: sizes stay 0 while 300 MB, then 600 MB, are reserved on the host's disk.
    const one = await run(ok, s.mainBranch.id, "touch big && fallocate -n -l 300M big && stat -c %s big");
    expect(one).toMatchObject({
      status: "FAILED",
      killedBy: "disk",
      errorCode: "QUOTA_EXCEEDED",
      snapshot: null,
    });
    const three = await run(
      ok,
      s.mainBranch.id,
      "for i in 1 2 3; do touch big$i && fallocate -n -l 200M big$i; done; echo done",
    );
    expect(three).toMatchObject({
      status: "FAILED",
      killedBy: "disk",
      errorCode: "QUOTA_EXCEEDED",
      snapshot: null,
    });

    expect(await settledGrowth(server, before, 2 * MB)).toBeLessThan(2 * MB);
    expect(await storageOf(ok, s.id)).toBe(charged);
    const { branch } = await ok(`query($b: ID!) { branch(id: $b) { head { id } files { path } } }`, {
      b: s.mainBranch.id,
    });
    expect(branch.head.id).toBe(s.mainBranch.head.id);
    expect(branch.files.map((f: { path: string }) => f.path)).toEqual(["a.txt"]);
  }, 120_000);

  test("space reserved under the cap is given back before a snapshot keeps the file", async () => {
    const { ok } = await userOf(server);
    const s = await newSession(ok, {}, "bypass");
    const before = await allocated(server.dataDir);
    // Three runs of 6 MB reserved each: 18 MB would be kept, over the session's 12 MB, if layers or
    // live workspaces kept the reservation. Each run is under the 8 MB cap, so each succeeds.
    for (const i of [1, 2, 3]) {
      const res = await run(ok, s.mainBranch.id, `touch r${i} && fallocate -n -l 6M r${i} && echo ok`);
      expect(res).toMatchObject({ status: "SUCCEEDED", output: "ok\n" });
      // An empty file: its entry is charged, nothing else (it keeps no block).
      expect(res.snapshot.addedBytes).toBe(ENTRY + `r${i}`.length);
    }
    expect(await settledGrowth(server, before, 4 * MB)).toBeLessThan(4 * MB);
    const { branch } = await ok(`query($b: ID!) { branch(id: $b) { file(path: "r3") { size } } }`, {
      b: s.mainBranch.id,
    });
    expect(branch.file.size).toBe(0);
  }, 120_000);
});

test("a command is stopped when the disk falls below the server's free-disk floor", async () => {
  // The floor is set 300 MB under what is free now: a 1 GB reservation crosses it.
  const { bavail, bsize } = await fs.statfs(tmpdir());
  const server = await startTestServer({
    DISK_MIN_FREE_BYTES: String(bavail * bsize - 300 * MB),
    SANDBOX_MAX_WRITE_BYTES: "4gb",
  });
  try {
    const { ok } = await userOf(server);
    const s = await newSession(ok, {}, "bypass");
    const res = await run(ok, s.mainBranch.id, "touch f && fallocate -n -l 1G f; sleep 30; echo finished");
    expect(res).toMatchObject({ status: "FAILED", errorCode: "QUOTA_EXCEEDED", snapshot: null });
    expect(res.output).not.toContain("finished");
    expect(res.error).toContain("disk space");
  } finally {
    await server.close();
  }
}, 120_000);

test("the write meter reports the free-disk floor while it watches", async () => {
  const dir = mkdtempSync(join(tmpdir(), "occ-floor-"));
  try {
    const reason = await new Promise<string | null>((resolve) => {
      const watch = watchWrites(
        dir,
        Date.now(),
        { maxBytes: 1e15, maxEntries: 1e9, minFreeBytes: Number.MAX_SAFE_INTEGER },
        (measure) => resolve(measure.reason),
        20,
      );
      setTimeout(() => {
        void watch.stop();
        resolve(null);
      }, 10_000);
    });
    expect(reason).toBe("disk");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---- 2. entries ---------------------------------------------------------------------------------

describe("symlinks, empty files and directories are charged", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer(LIMITS);
  });
  afterAll(() => server.close());

  const target = "t".repeat(4000);

  test("the review's attack: 40,000 symlinks with 4,000-byte targets stop at the cap, nothing kept", async () => {
    const { ok } = await userOf(server);
    const s = await newSession(ok, {}, "bypass");
    const before = await allocated(server.dataDir);
    const res = await run(
      ok,
      s.mainBranch.id,
      `T=${target}; i=0; while [ $i -lt 40000 ]; do ln -s "$T$i" l$i; i=$((i+1)); done; echo finished`,
    );
    expect(res).toMatchObject({
      status: "FAILED",
      killedBy: "disk",
      errorCode: "QUOTA_EXCEEDED",
      snapshot: null,
    });
    expect(res.output).not.toContain("finished");
    expect(await settledGrowth(server, before, 2 * MB)).toBeLessThan(2 * MB);
    expect(await storageOf(ok, s.id)).toBe(0);
  }, 300_000);

  test("150,000 empty files in one run stop at the cap", async () => {
    const { ok } = await userOf(server);
    const s = await newSession(ok, {}, "bypass");
    const before = await allocated(server.dataDir);
    const res = await run(
      ok,
      s.mainBranch.id,
      'mkdir d && cd d && i=0; while [ $i -lt 1500 ]; do j=0; set --; while [ $j -lt 100 ]; do set -- "$@" f$i-$j; j=$((j+1)); done; touch "$@"; i=$((i+1)); done; echo finished',
    );
    expect(res).toMatchObject({
      status: "FAILED",
      killedBy: "disk",
      errorCode: "QUOTA_EXCEEDED",
      snapshot: null,
    });
    expect(res.output).not.toContain("finished");
    expect(await settledGrowth(server, before, 2 * MB)).toBeLessThan(2 * MB);
  }, 300_000);

  test("entries under the cap are charged: links their target, directories their block, and the quota ends it", async () => {
    const { ok } = await userOf(server);
    const s = await newSession(ok, {}, "bypass");
    const b = s.mainBranch.id;

    // 800 links with 4,000-byte targets: about 6.7 MB charged (entry, path, target in the listing, and
    // the block the target takes), none of it content.
    const links = await run(
      ok,
      b,
      `T=${target}; i=0; while [ $i -lt 800 ]; do ln -s "$T$i" l$i; i=$((i+1)); done; echo ok`,
    );
    expect(links.status).toBe("SUCCEEDED");
    let expected = 0;
    for (let i = 0; i < 800; i++)
      expected += ENTRY + `l${i}`.length + target.length + String(i).length + BLOCK;
    expect(links.snapshot.addedBytes).toBe(expected);

    // 100 empty directories and 100 empty files.
    const dirs = await run(ok, b, "for i in $(seq 1 100); do mkdir d$i; touch e$i; done; echo ok");
    expect(dirs.status).toBe("SUCCEEDED");
    let more = 0;
    for (let i = 1; i <= 100; i++) more += ENTRY + `d${i}`.length + BLOCK + ENTRY + `e${i}`.length;
    expect(dirs.snapshot.addedBytes).toBe(more);
    expect(await storageOf(ok, s.id)).toBe(expected + more);

    // More links until the session's 12 MB are used: the run that does not fit is stopped, typed.
    let stopped = null;
    for (let round = 0; round < 6 && !stopped; round++) {
      const res = await run(
        ok,
        b,
        `T=${target}; i=0; while [ $i -lt 500 ]; do ln -s "$T$i" r${round}-$i; i=$((i+1)); done; echo ok`,
      );
      if (res.status !== "SUCCEEDED") stopped = res;
    }
    expect(stopped).toMatchObject({ status: "FAILED", errorCode: "QUOTA_EXCEEDED", snapshot: null });
    expect(stopped.error).toContain("session's");
    const storage = await storageOf(ok, s.id);
    expect(storage).toBeLessThanOrEqual(12 * MB);
    // The snapshot records (every link target is in them: this is the only session with any) take
    // less than what was charged for them.
    expect(await snapshotRecordBytes(server)).toBeLessThan(storage);
  }, 300_000);
});

test("a run that changes nothing pays for the listing when the store keeps it whole", async () => {
  const server = await startTestServer(LIMITS);
  try {
    const { ok } = await userOf(server);
    const s = await newSession(ok, {}, "bypass");
    const b = s.mainBranch.id;
    const target = "t".repeat(2000);
    const links = await run(ok, b, `T=${target}; for i in $(seq 1 300); do ln -s "$T$i" l$i; done`);
    expect(links.status).toBe("SUCCEEDED");
    // The chain's 16th snapshot stores the listing (300 targets of 2 KB) whole again: 15 runs that
    // change nothing cost nothing, the 16th at least the targets it copies.
    const charges: number[] = [];
    for (let i = 0; i < 16; i++) charges.push((await run(ok, b, "true")).snapshot.addedBytes);
    expect(charges.filter((c) => c === 0)).toHaveLength(15);
    expect(Math.max(...charges)).toBeGreaterThan(300 * 2000);
    // Whatever the records take on disk, the session was charged at least as much.
    expect(await snapshotRecordBytes(server)).toBeLessThan(await storageOf(ok, s.id));
  } finally {
    await server.close();
  }
}, 180_000);

/** Bytes of snapshot records in the store (every session of the server). */
async function snapshotRecordBytes(server: TestServer): Promise<number> {
  const dir = join(server.dataDir, "sandbox", "store", "snapshots");
  let total = 0;
  for (const name of await fs.readdir(dir)) total += (await fs.stat(join(dir, name))).size;
  return total;
}

describe("a snapshot holds a bounded number of entries", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ ...LIMITS, SANDBOX_MAX_SNAPSHOT_ENTRIES: "1000" });
  });
  afterAll(() => server.close());

  test("a run past the cap is stopped typed; a write past it is refused typed", async () => {
    const { ok, raw } = await userOf(server);
    const s = await newSession(ok, {}, "bypass");
    const b = s.mainBranch.id;
    const over = await run(ok, b, "for i in $(seq 1 1200); do echo > f$i; done; echo finished");
    expect(over).toMatchObject({
      status: "FAILED",
      killedBy: "disk",
      errorCode: "QUOTA_EXCEEDED",
      snapshot: null,
    });

    // 990 fit; 20 more do not (the meter counts against what the head already holds).
    const fits = await run(ok, b, "for i in $(seq 1 990); do : > f$i; done; echo ok");
    expect(fits.status).toBe("SUCCEEDED");
    const more = await run(ok, b, "for i in $(seq 1 20); do : > g$i; done; echo ok");
    expect(more).toMatchObject({
      status: "FAILED",
      killedBy: "disk",
      errorCode: "QUOTA_EXCEEDED",
      snapshot: null,
    });

    // A write of 11 new entries (10 directories and a file) would take the snapshot past 1,000.
    const write = await raw(
      `mutation($b: ID!) { writeFile(branchId: $b, path: "a/b/c/d/e/f/g/h/i/j/k.txt", content: "x") { id } }`,
      { b },
    );
    expect(errorOf(write)).toMatchObject({ code: "QUOTA_EXCEEDED" });
    expect(write.errors?.[0]?.message).toContain("1,000");
  }, 180_000);
});

// ---- 3. git clone on the host --------------------------------------------------------------------

describe("git clone runs under the write cap", () => {
  const root = mkdtempSync(join(tmpdir(), "occ-clone-"));
  const git = (cwd: string, ...args: string[]) =>
    execFileSync("git", ["-c", "user.email=t@example.com", "-c", "user.name=t", ...args], {
      cwd,
      stdio: "pipe",
    });
  /** A repository with one commit of `files` (written by `write`), and a bare copy served over dumb HTTP. */
  const makeRepo = (name: string, write: (dir: string) => void) => {
    const dir = join(root, name);
    mkdirSync(dir);
    git(dir, "init", "-q", "-b", "main");
    write(dir);
    git(dir, "add", "-A");
    git(dir, "commit", "-qm", "init");
    git(root, "clone", "-q", "--bare", "--no-local", dir, `${name}.git`);
    git(join(root, `${name}.git`), "update-server-info");
    return dir;
  };
  let http: ReturnType<typeof Bun.serve>;
  let server: TestServer;

  beforeAll(async () => {
    // 20 MB of random bytes: the pack alone is over the 8 MB cap.
    makeRepo("blob", (dir) => writeFileSync(join(dir, "blob.bin"), randomBytes(20 * MB)));
    // 12 files of 2 MB that compress to almost nothing: a small pack, a 24 MB checkout (the meter).
    makeRepo("spread", (dir) => {
      for (let i = 0; i < 12; i++) writeFileSync(join(dir, `f${i}.txt`), `${i}\n`.repeat(MB));
    });
    makeRepo("small", (dir) => writeFileSync(join(dir, "README.md"), "# small\n"));
    // A static file server: git's dumb HTTP protocol reads the bare repositories' files as they are.
    http = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch(req) {
        const path = decodeURIComponent(new URL(req.url).pathname);
        if (path.includes("..")) return new Response("no", { status: 400 });
        try {
          return new Response(readFileSync(join(root, path)));
        } catch {
          return new Response("not found", { status: 404 });
        }
      },
    });
    server = await startTestServer({
      ...LIMITS,
      SANDBOX_ALLOW_LOCAL_REPOS: "true",
      OUTBOUND_ALLOW_HOSTS: `127.0.0.1:${http.port}`,
    });
  });
  afterAll(async () => {
    await server.close();
    http.stop(true);
    rmSync(root, { recursive: true, force: true });
  });

  const createFrom = (raw: (q: string, v?: Record<string, unknown>) => Promise<any>, url: string) =>
    raw(
      `mutation($u: String!) { createSession(input: { title: "clone", repoUrl: $u }) { id storageBytes } }`,
      {
        u: url,
      },
    );

  test.each([
    ["file://", (name: string) => `file://${join(root, name)}`],
    ["a local path", (name: string) => join(root, name)],
    ["http", (name: string) => `http://127.0.0.1:${http.port}/${name}.git`],
  ])(
    "over %s: a big pack and a big checkout are refused QUOTA_EXCEEDED, nothing kept",
    async (_, urlOf) => {
      const { raw, ok } = await userOf(server);
      const before = await allocated(server.dataDir);
      for (const name of ["blob", "spread"]) {
        const res = await createFrom(raw, urlOf(name));
        expect(errorOf(res)).toMatchObject({ code: "QUOTA_EXCEEDED" });
        expect(res.errors[0].message).toContain("8 MB");
      }
      expect(await settledGrowth(server, before, 2 * MB)).toBeLessThan(2 * MB);
      const { me } = await ok(`{ me { usage { storageBytes } } }`);
      expect(me.usage.storageBytes).toBe(0);

      // The same path still clones a repository that fits.
      const small = await createFrom(raw, urlOf("small"));
      expect(small.errors).toBeUndefined();
      expect(small.data.createSession.storageBytes).toBeGreaterThan(0);
    },
    180_000,
  );
});
