// Disk quotas against the real server with small limits: a command may write 8 MB into its workspace,
// a session may keep 12 MB and a user 20 MB, over 4 sessions of 3 branches at most. A command past
// its cap is stopped and its writes never reach the store; quotas refuse typed (QUOTA_EXCEEDED with
// scope, limit, used) and show in the API; deleting a session frees its share; other users and
// /healthz carry on throughout; below the free-disk floor writes are refused, not crashed on.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs/promises";
import { join } from "node:path";
import { errorOf, type Gql, newSession, run, userOf } from "../utils/quota-user.ts";
import { startTestServer, type TestServer } from "../utils/server.ts";

const MB = 1024 * 1024;
const LIMITS = {
  SANDBOX_MAX_WRITE_BYTES: "8mb",
  QUOTA_SESSION_BYTES: "12mb",
  QUOTA_USER_BYTES: "20mb",
  QUOTA_USER_SESSIONS: "4",
  QUOTA_SESSION_BRANCHES: "3",
  RUNS_MAX_PARALLEL: "2",
};

/**
 * What a snapshot charges for a new file (README, Quotas): its content in whole 4 KB blocks, plus
 * 256 bytes for the entry and the bytes of its path.
 */
const fileCost = (path: string, size: number) => Math.ceil(size / 4096) * 4096 + 256 + path.length;

/** Writes `bytes` of random data (random: the store would keep one copy of repeated content). */
const writeRandom = (name: string, bytes: number) => `head -c ${bytes} /dev/urandom > ${name}`;

async function fileNames(ok: Gql, branchId: string): Promise<string[]> {
  const { branch } = await ok(`query($b: ID!) { branch(id: $b) { files { path } } }`, { b: branchId });
  return branch.files.map((f: { path: string }) => f.path).sort();
}

/** Bytes held by the snapshot store's objects, layers and records (hard links counted once). */
async function storeBytes(server: TestServer): Promise<number> {
  const root = join(server.dataDir, "sandbox", "store");
  const seen = new Set<number>();
  let total = 0;
  for (const part of ["objects", "layers", "snapshots"]) {
    const entries = await fs
      .readdir(join(root, part), { recursive: true, withFileTypes: true })
      .catch(() => []);
    for (const entry of entries) {
      if (!entry.isFile()) continue;
      const stat = await fs.lstat(join(entry.parentPath, entry.name));
      if (seen.has(stat.ino)) continue;
      seen.add(stat.ino);
      total += stat.size;
    }
  }
  return total;
}

async function healthy(server: TestServer): Promise<boolean> {
  const res = await fetch(`${server.url}/healthz`);
  return res.status === 200 && (await res.json()).ok === true;
}

// The per-command cap on both kinds of workspace: overlay (the upper directory is measured) where this
// machine can mount, and copy (the whole workspace is walked) everywhere.
describe.each(["auto", "copy"])("per-command write cap (%s workspaces)", (workspaces) => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ ...LIMITS, SANDBOX_WORKSPACES: workspaces });
  });
  afterAll(() => server.close());

  test("a command writing past its cap is stopped, typed, and none of its data is stored", async () => {
    const { ok } = await userOf(server);
    const s = await newSession(ok, { "keep.txt": "kept" });
    const before = await storeBytes(server);

    // One big file: the file size limit stops the writer at the cap.
    const big = await run(ok, s.mainBranch.id, `${writeRandom("big.bin", 50 * MB)}; echo wrote`);
    expect(big).toMatchObject({
      status: "FAILED",
      killedBy: "disk",
      errorCode: "QUOTA_EXCEEDED",
      snapshot: null,
    });
    expect(big.error).toContain("8.0 MB");
    expect(big.error).toContain("discarded");

    // Many files, each under the file size limit: the workspace is measured while the command runs,
    // and the command is stopped long before its last line (it would sleep 40 s, then print).
    const many = await run(
      ok,
      s.mainBranch.id,
      `for i in $(seq 1 40); do ${writeRandom("f$i.bin", MB)}; done; sleep 40; echo finished`,
    );
    expect(many).toMatchObject({
      status: "FAILED",
      killedBy: "disk",
      errorCode: "QUOTA_EXCEEDED",
      snapshot: null,
    });
    expect(many.output).not.toContain("finished");

    // Nothing of either is in the workspace or the store; the head did not move.
    expect(await fileNames(ok, s.mainBranch.id)).toEqual(["keep.txt"]);
    const { branch } = await ok(`query($b: ID!) { branch(id: $b) { head { id } } }`, { b: s.mainBranch.id });
    expect(branch.head.id).toBe(s.mainBranch.head.id);
    expect((await storeBytes(server)) - before).toBeLessThan(1 * MB);
    const { session } = await ok(`query($s: ID!) { session(id: $s) { storageBytes } }`, { s: s.id });
    expect(session.storageBytes).toBe(fileCost("keep.txt", 4));

    // The branch is not wedged: the next command runs and is kept.
    const next = await run(ok, s.mainBranch.id, `${writeRandom("small.bin", MB)}; echo ok`);
    expect(next).toMatchObject({ status: "SUCCEEDED", killedBy: null, errorCode: null });
    expect(next.snapshot.addedBytes).toBe(fileCost("small.bin", MB));
    expect(await fileNames(ok, s.mainBranch.id)).toEqual(["keep.txt", "small.bin"]);
    expect(await healthy(server)).toBe(true);
  }, 120_000);

  test("the measuring walk does not follow symlinks out of the workspace", async () => {
    const { ok } = await userOf(server);
    const s = await newSession(ok);
    // Links to host trees far bigger than the 8 MB cap: measured as links, never as what they point at.
    const res = await run(ok, s.mainBranch.id, "ln -s / root; ln -s /usr usr; sleep 1; echo linked");
    expect(res.output).toBe("linked\n");
    expect(res.killedBy).toBeNull();
    expect(res.errorCode).toBeNull();
  }, 60_000);
});

describe("storage quotas", () => {
  let server: TestServer;
  beforeAll(async () => {
    // Bodies big enough for the megabyte writes below.
    server = await startTestServer({ ...LIMITS, MAX_BODY_BYTES: "8mb" });
  });
  afterAll(() => server.close());

  const usageQuery = `query($s: ID!) {
    me { usage { storageBytes storageLimitBytes } quota { commandWriteBytes sessionStorageBytes userStorageBytes sessions branchesPerSession } }
    session(id: $s) { storageBytes usage { storageBytes storageLimitBytes } }
  }`;

  test("session and user quotas refuse with QUOTA_EXCEEDED, usage shows in the API, deleting a session frees it", async () => {
    const alice = await userOf(server);
    const bob = await userOf(server);
    const s1 = await newSession(alice.ok);
    const b1 = s1.mainBranch.id;

    const first = await run(alice.ok, b1, writeRandom("a.bin", 6 * MB));
    expect(first.status).toBe("SUCCEEDED");
    const a = fileCost("a.bin", 6 * MB);
    expect(first.snapshot.addedBytes).toBe(a);
    let usage = await alice.ok(usageQuery, { s: s1.id });
    expect(usage.me.usage).toEqual({ storageBytes: a, storageLimitBytes: 20 * MB });
    expect(usage.me.quota).toEqual({
      commandWriteBytes: 8 * MB,
      sessionStorageBytes: 12 * MB,
      userStorageBytes: 20 * MB,
      sessions: 4,
      branchesPerSession: 3,
    });
    expect(usage.session).toEqual({
      storageBytes: a,
      usage: { storageBytes: a, storageLimitBytes: 12 * MB },
    });

    // The store keeps whole files: appending one byte would keep a second full copy (6 MB + 1), which
    // is charged as such, and here it does not fit in the 6 MB left: refused, the file unchanged.
    const append = await run(alice.ok, b1, "printf x >> a.bin");
    expect(append).toMatchObject({ status: "FAILED", killedBy: "disk", errorCode: "QUOTA_EXCEEDED" });
    expect(append.error).toContain("session's");
    const { branch } = await alice.ok(`query($b: ID!) { branch(id: $b) { file(path: "a.bin") { size } } }`, {
      b: b1,
    });
    expect(branch.file.size).toBe(6 * MB);

    expect((await run(alice.ok, b1, writeRandom("b.bin", 4 * MB))).status).toBe("SUCCEEDED");
    const b = fileCost("b.bin", 4 * MB);
    // A write that does not fit is refused before anything is stored.
    const write = await alice.raw(
      `mutation($b: ID!, $c: String!) { writeFile(branchId: $b, path: "c.txt", content: $c) { id } }`,
      { b: b1, c: "x".repeat(3 * MB) },
    );
    expect(errorOf(write)).toEqual({
      code: "QUOTA_EXCEEDED",
      scope: "session",
      limit: 12 * MB,
      used: a + b,
    });

    // A command may fill the quota up to its last block (a file costs whole blocks and its entry)...
    const cSize = 2 * MB - 4096;
    expect(a + b + fileCost("c.bin", cSize)).toBeLessThanOrEqual(12 * MB);
    expect(a + b + fileCost("c.bin", cSize + 1)).toBeGreaterThan(12 * MB);
    expect((await run(alice.ok, b1, writeRandom("c.bin", cSize))).status).toBe("SUCCEEDED");
    const c = fileCost("c.bin", cSize);
    // ...and a write of the bytes left is accepted and charged in full, which takes usage just over the
    // quota; after that, everything that would store is refused.
    const left = 12 * MB - (a + b + c);
    await alice.ok(
      `mutation($b: ID!, $c: String!) { writeFile(branchId: $b, path: "x.txt", content: $c) { id } }`,
      {
        b: b1,
        c: "x".repeat(left),
      },
    );
    const x = fileCost("x.txt", left);
    usage = await alice.ok(usageQuery, { s: s1.id });
    expect(usage.session.storageBytes).toBe(a + b + c + x);
    expect(usage.session.storageBytes).toBeGreaterThan(12 * MB);
    const refused = [
      await alice.raw(`mutation($b: ID!) { exec(branchId: $b, command: "true") { id } }`, { b: b1 }),
      await alice.raw(`mutation($b: ID!) { checkpoint(branchId: $b) { id } }`, { b: b1 }),
      await alice.raw(`mutation($s: ID!) { fork(snapshotId: $s) { id } }`, { s: s1.mainBranch.head.id }),
    ];
    for (const res of refused)
      expect(errorOf(res)).toMatchObject({ code: "QUOTA_EXCEEDED", scope: "session" });
    // Reads still work.
    expect(await fileNames(alice.ok, b1)).toEqual(["a.bin", "b.bin", "c.bin", "x.txt"]);

    // The user quota (20 MB) spans sessions: 12 MB kept above, 7 MB more in a second session...
    const s2 = await newSession(alice.ok);
    const b2 = s2.mainBranch.id;
    expect((await run(alice.ok, b2, writeRandom("d.bin", 7 * MB))).status).toBe("SUCCEEDED");
    const d = fileCost("d.bin", 7 * MB);
    // ...leaves under 1 MB for the next command, which writes 2 MB and is stopped.
    const userCapped = await run(alice.ok, b2, writeRandom("e.bin", 2 * MB));
    expect(userCapped).toMatchObject({ status: "FAILED", killedBy: "disk", errorCode: "QUOTA_EXCEEDED" });
    expect(userCapped.error).toContain("owner's");
    const userWrite = await alice.raw(
      `mutation($b: ID!, $c: String!) { writeFile(branchId: $b, path: "f.txt", content: $c) { id } }`,
      { b: b2, c: "y".repeat(2 * MB) },
    );
    expect(errorOf(userWrite)).toEqual({
      code: "QUOTA_EXCEEDED",
      scope: "user",
      limit: 20 * MB,
      used: a + b + c + x + d,
    });
    const importing = await alice.raw(
      `mutation($f: JSON) { createSession(input: { title: "too big", files: $f }) { id } }`,
      { f: { "big.txt": "z".repeat(2 * MB) } },
    );
    expect(errorOf(importing)).toMatchObject({ code: "QUOTA_EXCEEDED", scope: "user" });

    // Meanwhile another user and the server are unaffected.
    const bobs = await newSession(bob.ok);
    expect((await run(bob.ok, bobs.mainBranch.id, writeRandom("mine.bin", 5 * MB))).status).toBe("SUCCEEDED");
    expect(await healthy(server)).toBe(true);

    // Deleting a session frees its share, and work resumes.
    await alice.ok(`mutation($s: ID!) { deleteSession(id: $s) }`, { s: s1.id });
    usage = await alice.ok(usageQuery, { s: s2.id });
    expect(usage.me.usage.storageBytes).toBe(d);
    expect((await run(alice.ok, b2, writeRandom("e.bin", 2 * MB))).status).toBe("SUCCEEDED");
    expect((await newSession(alice.ok, { "ok.txt": "fits" })).id).toBeString();
  }, 180_000);

  test("sessions per user and branches per session are capped", async () => {
    const carol = await userOf(server);
    const sessions = [];
    for (let i = 0; i < 4; i++) sessions.push(await newSession(carol.ok));
    const fifth = await carol.raw(`mutation { createSession(input: { title: "fifth" }) { id } }`);
    expect(errorOf(fifth)).toEqual({ code: "QUOTA_EXCEEDED", scope: "sessions", limit: 4, used: 4 });

    const root = sessions[0]!.mainBranch.head.id;
    const fork = () => carol.raw(`mutation($s: ID!) { fork(snapshotId: $s) { id } }`, { s: root });
    expect((await fork()).errors).toBeUndefined();
    expect((await fork()).errors).toBeUndefined();
    expect(errorOf(await fork())).toEqual({ code: "QUOTA_EXCEEDED", scope: "branches", limit: 3, used: 3 });

    await carol.ok(`mutation($s: ID!) { deleteSession(id: $s) }`, { s: sessions[3]!.id });
    expect((await newSession(carol.ok)).id).toBeString();
  }, 60_000);
});

test("below the free-disk floor, writes are refused UNAVAILABLE and the server stays up", async () => {
  const server = await startTestServer({ DISK_MIN_FREE_BYTES: "1000000gb" });
  try {
    const dave = await userOf(server);
    const res = await dave.raw(`mutation { createSession(input: { title: "no room" }) { id } }`);
    expect(errorOf(res)).toEqual({ code: "UNAVAILABLE", scope: "server" });
    expect((await dave.ok(`{ me { id } }`)).me.id).toBe(dave.userId);
    expect(await healthy(server)).toBe(true);
  } finally {
    await server.close();
  }
}, 60_000);
