// Long-lived processes in a local sandbox (SandboxProvider.startService: a branch's live agent runs as
// one): isolated like a command, stopped by a reset or a destroy, and, the point of the freezer,
// snapshots taken while one writes a SQLite database hold a consistent database every time. The
// writer commits as fast as it can (WAL mode, one connection kept open, as opencode's server does);
// each snapshot's database and journal are then opened on the host: integrity_check is ok and the
// two tables every transaction updates together agree. Both workspace kinds. (With the pause taken
// out of LocalProvider.snapshot, five runs in six failed here: torn copies are caught.)
import { afterAll, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalProvider } from "../../sandbox/local/provider.ts";
import type { SandboxService } from "../../sandbox/provider.ts";

const dirs: string[] = [];
const providers: LocalProvider[] = [];
afterAll(async () => {
  for (const p of providers) await p.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const sqlite = existsSync("/usr/bin/sqlite3") ? "/usr/bin/sqlite3" : null;

async function providerOf(workspaces: "overlay" | "copy") {
  const dir = mkdtempSync(join(tmpdir(), "occ-svc-"));
  dirs.push(dir);
  const provider = await new LocalProvider({ dir, workspaces }).init();
  providers.push(provider);
  return provider;
}

// One sqlite3 process, one open connection, as opencode's server keeps. Every transaction adds 1 to
// one row of t (rows in turn, over ~4 MB of pages) and to last.i, then checkpoints, so the journal
// and the database file are both being rewritten whenever a snapshot looks. Invariant: sum(v) =
// last.i. A copy not taken at one instant mixes states (a journal restarted after the database was
// copied lacks the pages of the transactions in between: the sums disagree) or tears a page.
const WRITER = `{
  echo "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=1;"
  echo "CREATE TABLE IF NOT EXISTS t(k INTEGER PRIMARY KEY, v INTEGER, b BLOB); CREATE TABLE IF NOT EXISTS last(i INTEGER);"
  echo "INSERT INTO last SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM last);"
  echo "WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k+1 FROM n WHERE k < 2000) INSERT OR IGNORE INTO t SELECT k, 0, randomblob(1500) FROM n;"
  i=0
  while :; do i=$((i+1)); echo "BEGIN; UPDATE t SET v=v+1 WHERE k=$(( (i*7919) % 2000 + 1 )); UPDATE last SET i=i+1; COMMIT;"; done
} | sqlite3 /workspace/db.sqlite >/dev/null`;

/** The snapshot's database opened on the host; `rows` is the last transaction it holds. */
function check(files: Map<string, Uint8Array>): { integrity: string; agree: string; rows: number } {
  const dir = mkdtempSync(join(tmpdir(), "occ-svc-db-"));
  dirs.push(dir);
  for (const [name, data] of files) writeFileSync(join(dir, name), data);
  const q = (sql: string) =>
    execFileSync(sqlite!, [join(dir, "db.sqlite"), sql], { encoding: "utf8" }).trim();
  return {
    integrity: q("PRAGMA integrity_check;"),
    agree: q("SELECT (SELECT sum(v) FROM t) = (SELECT i FROM last);"),
    rows: Number(q("SELECT i FROM last;")),
  };
}

for (const kind of ["overlay", "copy"] as const) {
  test(`${kind}: snapshots of a workspace a service is writing a database in are consistent, every time`, async () => {
    const provider = await providerOf(kind);
    if (provider.status.isolation !== "bubblewrap" || !sqlite)
      return console.warn("service snapshot test skipped: needs bubblewrap and sqlite3");
    if (kind === "overlay" && provider.status.workspaces !== "overlay")
      return console.warn("overlay service test skipped: overlayfs cannot be mounted here");
    const sandbox = await provider.create({ kind: "empty" });
    let stderr = "";
    const service: SandboxService = await provider.startService(sandbox, {
      command: WRITER,
      onOutput: ({ stream, data }) => {
        if (stream === "stderr") stderr += new TextDecoder().decode(data);
      },
    });
    try {
      await Bun.sleep(500);
      let previous = 0;
      for (let n = 0; n < 25; n++) {
        const snapshot = await provider.snapshot(sandbox);
        const files = new Map<string, Uint8Array>();
        for (const name of ["db.sqlite", "db.sqlite-wal"]) {
          const data = await provider.readFile({ snapshot: snapshot.id }, name);
          if (data) files.set(name, data);
        }
        expect(files.has("db.sqlite")).toBe(true);
        const found = check(files);
        expect(found.integrity).toBe("ok");
        expect(found.agree).toBe("1");
        // The writer kept going between snapshots (it was paused, not stopped).
        expect(found.rows).toBeGreaterThan(previous);
        previous = found.rows;
        await Bun.sleep(30);
      }
      expect(stderr).toBe("");
      // A reset throws the files away: the service goes with them.
      const [first] = [await provider.snapshot(sandbox)];
      await provider.reset(sandbox, first!.id);
      const exited = await Promise.race([service.exited.then(() => true), Bun.sleep(5000).then(() => false)]);
      expect(exited).toBe(true);
    } finally {
      await service.stop();
      await provider.destroy(sandbox);
    }
  }, 120_000);
}

test("a service is isolated like a command (no network, no host files) and stops with its sandbox", async () => {
  const provider = await providerOf("copy");
  if (provider.status.isolation !== "bubblewrap") return console.warn("skipped: needs bubblewrap");
  const sandbox = await provider.create({ kind: "empty" });
  let out = "";
  const service = await provider.startService(sandbox, {
    command: "ls /root /work 2>&1 | head -2; cat /proc/net/dev | grep -c ':' ; echo ready; exec sleep 600",
    onOutput: ({ data }) => {
      out += new TextDecoder().decode(data);
    },
  });
  for (let i = 0; i < 100 && !out.includes("ready"); i++) await Bun.sleep(50);
  expect(out).toContain("No such file or directory");
  expect(out).toMatch(/^1$/m); // only the loopback interface
  await provider.destroy(sandbox);
  const exited = await Promise.race([service.exited.then(() => true), Bun.sleep(5000).then(() => false)]);
  expect(exited).toBe(true);
  let alive = true;
  try {
    process.kill(service.pid, 0);
  } catch {
    alive = false;
  }
  expect(alive).toBe(false);
});
