// A command that flips a path component between a directory and a symlink (rename x d; symlink T x;
// unlink x; rename d x, in a tight loop) must never make the server read, list or write host paths
// through the workspace: first against the host-side file helpers with the flipper in a child
// process, then end to end, with the flipper running as a command while GraphQL reads race it.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openFileBeneath, walkDirs, withDir } from "../../sandbox/local/beneath.ts";
import { listLive, readLive, writeLive } from "../../sandbox/local/files.ts";
import { startTestServer, type TestServer } from "../utils/server.ts";
import { gqlOk, waitForRun } from "../utils/session-fixture.ts";

/** A perl loop flipping each `name` between its real directory and a symlink to `target`; prints its count. */
function flipper(pairs: [name: string, target: string][], seconds: number): string {
  const list = pairs.map(([n, t]) => `["${n}","${t}"]`).join(",");
  return `my $end = time + ${seconds}; my $flips = 0; my @p = (${list}); while (time < $end) { for my $q (@p) { my ($n, $t) = @$q; rename $n, "$n.d"; $flips++ if symlink $t, $n; unlink $n; rename "$n.d", $n; } } print "flips $flips\n"`;
}

const codeOf = (error: unknown) => String((error as { code?: string }).code ?? error);

describe("host-side workspace helpers against a symlink-flipping process", () => {
  const root = mkdtempSync(join(tmpdir(), "occ-race-"));
  const ws = join(root, "ws");
  const secret = join(root, "secret");
  const drop = join(root, "drop");

  beforeAll(() => {
    for (const d of [ws, secret, drop, join(ws, "x"), join(ws, "y"), join(ws, "w")]) mkdirSync(d);
    writeFileSync(join(secret, "data"), "HOST-SECRET\n");
    writeFileSync(join(ws, "x", "data"), "sandbox\n");
    writeFileSync(join(ws, "y", "marker"), "m\n");
  });
  // rm -rf copes with whatever state the killed flipper left behind.
  afterAll(() => execFileSync("rm", ["-rf", root]));

  test("reads, listings and writes never leave the workspace while a component flips", async () => {
    const child = spawn(
      "perl",
      [
        "-e",
        flipper(
          [
            ["x", secret],
            ["y", "/"],
            ["w", drop],
          ],
          5,
        ),
      ],
      { cwd: ws, stdio: "ignore" },
    );
    const exited = new Promise((resolve) => child.on("exit", resolve));
    // Warm up (the runtime opens what it needs once), then count descriptors: none may leak. The
    // flipper is already running, so the warm-up read may meet a symlink and be refused: that is fine.
    await readLive(ws, "x/data").catch(() => null);
    const fdsBefore = readdirSync("/proc/self/fd").length;
    let ordinary = 0;
    let listed = 0;
    const refusals = new Set<string>();
    const deadline = Date.now() + 4000;
    try {
      while (Date.now() < deadline) {
        const results = await Promise.allSettled([
          readLive(ws, "x/data"),
          listLive(ws, "y"),
          writeLive(ws, "w/planted", new TextEncoder().encode("planted\n")),
        ]);
        const [read, list, write] = results;
        if (read.status === "fulfilled") {
          const text = read.value && new TextDecoder().decode(read.value);
          expect([null, "sandbox\n"]).toContain(text);
          if (text === "sandbox\n") ordinary++;
        } else refusals.add(codeOf(read.reason));
        if (list.status === "fulfilled") {
          for (const entry of list.value) expect(entry.path).toBe("y/marker");
          listed++;
        } else refusals.add(codeOf(list.reason));
        if (write.status === "rejected") refusals.add(codeOf(write.reason));
        expect(readdirSync(drop)).toEqual([]);
      }
    } finally {
      // The flipper ends on its own, between flips (so "x" is a directory again); killed only if stuck.
      const stuck = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(stuck);
    }
    expect(readdirSync(drop)).toEqual([]);
    expect(readdirSync("/proc/self/fd").length).toBeLessThanOrEqual(fdsBefore);
    // Refusals are the provider's typed errors (a raw errno would surface as INTERNAL).
    // BUSY: the directory written into was replaced mid-write.
    for (const code of refusals) expect(["BAD_PATH", "NOT_FOUND", "BUSY"]).toContain(code);
    // The race was real, and ordinary reads still worked in between.
    expect(ordinary).toBeGreaterThan(0);
    expect(listed).toBeGreaterThan(0);
    expect(new TextDecoder().decode((await readLive(ws, "x/data"))!)).toBe("sandbox\n");
  }, 30_000);
});

test("symlinks are followed only while they stay inside; FIFOs, loops and escapes read as nothing or BAD_PATH", async () => {
  const root = mkdtempSync(join(tmpdir(), "occ-beneath-"));
  try {
    execFileSync(
      "sh",
      [
        "-c",
        "mkdir -p d/e && echo in > d/e/f && ln -s d/e in-link && ln -s ../e/f d/e/up && ln -s /etc abs " +
          "&& ln -s ../.. d/esc && ln -s loop loop && mkfifo fifo && ln -s fifo fifo-link",
      ],
      { cwd: root },
    );
    const read = (path: string) =>
      readLive(root, path).then(
        (data) => (data === null ? null : new TextDecoder().decode(data)),
        (error) => (error as { code: string }).code,
      );
    expect(await read("in-link/f")).toBe("in\n");
    expect(await read("d/e/up")).toBe("in\n");
    expect(await read("abs/passwd")).toBe("BAD_PATH");
    expect(await read("d/esc/etc/passwd")).toBe("BAD_PATH");
    expect(await read("loop")).toBeNull();
    expect(await read("loop/x")).toBeNull();
    // A FIFO is never opened (that would hang the server until a writer came).
    expect(await read("fifo")).toBeNull();
    expect(await read("fifo-link")).toBeNull();
    expect((await listLive(root, "in-link")).map((e) => e.path)).toEqual(["in-link/f", "in-link/up"]);
    await expect(listLive(root, "abs")).rejects.toMatchObject({ code: "BAD_PATH" });
    await expect(writeLive(root, "abs/x", new Uint8Array())).rejects.toMatchObject({ code: "BAD_PATH" });
    // A write replaces a symlink at the last component, never writes through it.
    await writeLive(root, "in-link", new TextEncoder().encode("now a file"));
    expect(await read("in-link")).toBe("now a file");
    expect(await read("d/e/f")).toBe("in\n");
  } finally {
    execFileSync("rm", ["-rf", root]);
  }
});

test("descriptors held on sandbox paths are close-on-exec (a command never inherits one)", async () => {
  const O_CLOEXEC = 0o2000000; // the generic Linux value (x86-64, arm64)
  const flagsOf = (fd: number) =>
    Number.parseInt(/flags:\s+(\d+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"))![1]!, 8);
  const root = mkdtempSync(join(tmpdir(), "occ-cloexec-"));
  try {
    mkdirSync(join(root, "d"));
    writeFileSync(join(root, "d", "f"), "x");
    const seen: number[] = [];
    await withDir(root, async (dir) => {
      seen.push(flagsOf(dir.fd));
      const file = (await openFileBeneath(dir, "d/f"))!;
      seen.push(flagsOf(file.fd));
      await file.close();
    });
    await walkDirs(root, async ({ dir }) => {
      seen.push(flagsOf(dir));
    });
    expect(seen.length).toBe(4);
    for (const flags of seen) expect(flags & O_CLOEXEC).toBe(O_CLOEXEC);
  } finally {
    execFileSync("rm", ["-rf", root]);
  }
});

describe("GraphQL reads while a command flips workspace paths", () => {
  let server: TestServer;
  let token: string;
  beforeAll(async () => {
    // The attack fires reads as fast as it can: the per-user request limit must not be what stops it.
    server = await startTestServer({ REQUESTS_PER_MINUTE_PER_USER: "10000000" });
    token = (await server.signUp()).token;
  });
  afterAll(() => server.close());

  test("file/files never return host content (environ, jwt-secret, /), and ordinary reads work", async () => {
    const jwtSecret = readFileSync(join(server.dataDir, "jwt-secret"), "utf8").trim();
    expect(jwtSecret.length).toBeGreaterThan(16);
    const session = (
      await gqlOk(
        server,
        token,
        `mutation { createSession(input: { title: "race" }) { id mainBranch { id } } }`,
      )
    ).createSession;
    const branchId: string = session.mainBranch.id;
    // Directories made by the run itself (overlay workspaces refuse renaming lower directories).
    const setup =
      "mkdir x y z && echo sandbox-environ > x/environ && echo sandbox-secret > y/jwt-secret && echo m > z/marker";
    const command = `${setup} && perl -e '${flipper(
      [
        ["x", "/proc/self"],
        ["y", server.dataDir],
        ["z", "/"],
      ],
      9,
    )}'`;
    const run = (
      await gqlOk(
        server,
        token,
        `mutation($b: ID!, $c: String!) { exec(branchId: $b, command: $c) { id } }`,
        {
          b: branchId,
          c: command,
        },
      )
    ).exec;
    for (let i = 0; i < 500; i++) {
      const status = (await gqlOk(server, token, "query($r: ID!) { run(id: $r) { status } }", { r: run.id }))
        .run.status;
      if (status !== "QUEUED") break;
      await Bun.sleep(20);
    }

    const query = `query($b: ID!) { branch(id: $b) {
      x: file(path: "x/environ") { content }
      y: file(path: "y/jwt-secret") { content }
      z: files(path: "z") { path }
    } }`;
    const seen = { x: 0, y: 0, z: 0 };
    const codes = new Set<string>();
    const deadline = Date.now() + 7500;
    while (Date.now() < deadline) {
      const replies = await Promise.all(
        Array.from({ length: 6 }, () => server.gql(query, { b: branchId }, token)),
      );
      for (const reply of replies) {
        // No host content, whatever the reply's shape.
        expect(reply.text).not.toContain("PATH=");
        expect(reply.text).not.toContain(jwtSecret);
        for (const error of reply.errors ?? []) codes.add(String(error.extensions?.code));
        const branch = reply.data?.branch as Record<string, any> | null | undefined;
        if (!branch) continue;
        if (branch.x) {
          expect(branch.x.content).toBe("sandbox-environ\n");
          seen.x++;
        }
        if (branch.y) {
          expect(branch.y.content).toBe("sandbox-secret\n");
          seen.y++;
        }
        if (branch.z) {
          // Empty only before the command has written its marker.
          for (const entry of branch.z as { path: string }[]) expect(entry.path).toBe("z/marker");
          seen.z++;
        }
      }
    }
    // Refusals are typed input errors or absences, never INTERNAL.
    for (const code of codes) expect(["BAD_USER_INPUT", "NOT_FOUND"]).toContain(code);
    expect(seen.x + seen.y + seen.z).toBeGreaterThan(0);

    await waitForRun(server, token, run.id);
    // The flipper really flipped (overlay refuses renaming lower directories, for one).
    const finished = await gqlOk(server, token, "query($r: ID!) { run(id: $r) { exitCode output } }", {
      r: run.id,
    });
    expect(finished.run.exitCode).toBe(0);
    expect(Number(/flips (\d+)/.exec(finished.run.output)?.[1])).toBeGreaterThan(1000);
    const after = await gqlOk(server, token, query, { b: branchId });
    expect(after.branch).toEqual({
      x: { content: "sandbox-environ\n" },
      y: { content: "sandbox-secret\n" },
      z: [{ path: "z/marker" }],
    });
    expect(existsSync(join(server.dataDir, "jwt-secret"))).toBe(true);
  }, 60_000);
});
