// Files a sandbox makes land on the host's disk, owned by the server's user (often root). None may
// keep a setuid or setgid bit there (a `cp /usr/bin/id x; chmod 4755 x` run as `nobody` printed
// euid=0), and the data directory that holds them is private to the server's user.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalProvider } from "../../sandbox/local/provider.ts";
import { startTestServer, type TestServer } from "../utils/server.ts";
import { gqlOk, waitForRun } from "../utils/session-fixture.ts";

/** Every file or directory under `dir` (symlinks not followed) with a setuid or setgid bit. */
function setIdEntries(dir: string): string[] {
  const found: string[] = [];
  const walk = (path: string) => {
    const stat = lstatSync(path);
    if ((stat.isFile() || stat.isDirectory()) && stat.mode & 0o6000) found.push(path);
    if (stat.isDirectory()) for (const name of readdirSync(path)) walk(join(path, name));
  };
  walk(dir);
  return found;
}

const ATTACK = [
  "cp /usr/bin/id x && chmod 4755 x",
  "mkdir g && chmod 2775 g && cp /usr/bin/id g/y && chmod 6755 g/y",
  // The bits really were set inside the sandbox.
  "stat -c '%a %n' x g g/y",
].join(" && ");

describe("through the server", () => {
  const root = mkdtempSync(join(tmpdir(), "occ-setuid-"));
  // A data directory made by an older version (world-readable ./.data), reused by this one.
  const dataDir = join(root, "data");
  let server: TestServer;
  let token: string;
  beforeAll(async () => {
    mkdirSync(dataDir);
    chmodSync(dataDir, 0o755);
    server = await startTestServer({ DATA_DIR: dataDir });
    token = (await server.signUp()).token;
  });
  afterAll(async () => {
    await server.close();
    rmSync(root, { recursive: true, force: true });
  });

  test("the data and sandbox directories are private (0700), even when they existed before", () => {
    expect(statSync(dataDir).mode & 0o7777).toBe(0o700);
    expect(statSync(join(dataDir, "sandbox")).mode & 0o7777).toBe(0o700);
  });

  test("a command's setuid/setgid copies of a root binary leave no set-id bit in store, layers or workspace", async () => {
    const session = (
      await gqlOk(
        server,
        token,
        `mutation { createSession(input: { title: "setuid" }) { id mainBranch { id } } }`,
      )
    ).createSession;
    const branchId = session.mainBranch.id;
    const run = (
      await gqlOk(
        server,
        token,
        `mutation($b: ID!, $c: String!) { exec(branchId: $b, command: $c) { id } }`,
        {
          b: branchId,
          c: ATTACK,
        },
      )
    ).exec;
    await waitForRun(server, token, run.id);
    const done = (
      await gqlOk(server, token, "query($r: ID!) { run(id: $r) { exitCode output } }", { r: run.id })
    ).run;
    expect(done.exitCode).toBe(0);
    expect(done.output).toBe("4755 x\n2775 g\n6755 g/y\n");

    expect(setIdEntries(join(dataDir, "sandbox"))).toEqual([]);
    // What the branch and its snapshot show: the permissions, without the set-id bits.
    const files = await gqlOk(
      server,
      token,
      `query($b: ID!) { branch(id: $b) { files { path mode } g: files(path: "g") { path mode }
        head { files { path mode } } } }`,
      { b: branchId },
    );
    const modes = Object.fromEntries(
      [...files.branch.files, ...files.branch.g].map((e: { path: string; mode: number }) => [e.path, e.mode]),
    );
    expect(modes).toEqual({ x: 0o755, g: 0o775, "g/y": 0o755 });
    for (const entry of files.branch.head.files) expect(entry.mode & 0o6000).toBe(0);

    // A later run sees the files without the bits, and makes none stick either.
    const again = (
      await gqlOk(
        server,
        token,
        `mutation($b: ID!, $c: String!) { exec(branchId: $b, command: $c) { id } }`,
        {
          b: branchId,
          c: "chmod 4755 x && stat -c %a x",
        },
      )
    ).exec;
    await waitForRun(server, token, again.id);
    expect(setIdEntries(join(dataDir, "sandbox"))).toEqual([]);
  });

  test("createSession files with a setuid mode are refused or stored without the bit", async () => {
    const res = await server.gql(
      `mutation($f: JSON) { createSession(input: { title: "mode", files: $f }) { mainBranch { files { path mode } } } }`,
      { f: { x: { content: "#!/bin/sh\nid\n", mode: 0o4755 }, y: { content: "y", mode: 0o2755 } } },
      token,
    );
    if (res.errors) {
      expect(res.errors.map((e) => e.extensions?.code)).toEqual(["BAD_USER_INPUT"]);
    } else {
      for (const entry of (res.data as any).createSession.mainBranch.files)
        expect(entry.mode & 0o6000).toBe(0);
    }
    expect(setIdEntries(join(dataDir, "sandbox"))).toEqual([]);
  });
});

describe("the local provider, both workspace kinds", () => {
  for (const workspaces of ["overlay", "copy"] as const) {
    test(`${workspaces}: no set-id bit outlives a command, a write or a snapshot`, async () => {
      const dir = mkdtempSync(join(tmpdir(), `occ-setuid-${workspaces}-`));
      const provider = await new LocalProvider({ dir, workspaces }).init();
      try {
        const sbx = await provider.create({ kind: "empty" });
        let out = "";
        const result = await provider.exec(sbx, {
          command: ATTACK,
          onOutput: (c) => {
            out += new TextDecoder().decode(c.data);
          },
        });
        expect(result.exitCode).toBe(0);
        expect(out).toBe("4755 x\n2775 g\n6755 g/y\n");
        // Right after the command, before any snapshot: the live workspace is clean already.
        expect(setIdEntries(dir)).toEqual([]);
        await provider.writeFile(sbx, "w", "#!/bin/sh\n", 0o6755);
        const snap = await provider.snapshot(sbx);
        expect(setIdEntries(dir)).toEqual([]);
        const listed = await provider.listFiles({ snapshot: snap.id });
        expect(Object.fromEntries(listed.map((e) => [e.path, e.mode]))).toEqual({
          g: 0o775,
          w: 0o755,
          x: 0o755,
        });
        // Forks and rollbacks materialise the same modes.
        const fork = await provider.fork(snap.id);
        expect(setIdEntries(dir)).toEqual([]);
        await provider.destroy(fork);
      } finally {
        await provider.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  test("a store from before the fix is swept once at start-up", async () => {
    const dir = mkdtempSync(join(tmpdir(), "occ-setuid-legacy-"));
    try {
      await (await new LocalProvider({ dir, workspaces: "copy" }).init()).close();
      // What an older version left: a setuid object and a setgid layer directory, no sweep marker.
      const object = join(dir, "store", "objects", "ab", "cdef");
      writeFileSync(object, "#!/bin/sh\n");
      chmodSync(object, 0o4755);
      mkdirSync(join(dir, "store", "layers", "old"));
      chmodSync(join(dir, "store", "layers", "old"), 0o2755);
      rmSync(join(dir, "store", "setid-cleared"));
      chmodSync(dir, 0o755);
      await (await new LocalProvider({ dir, workspaces: "copy" }).init()).close();
      expect(setIdEntries(dir)).toEqual([]);
      expect(statSync(object).mode & 0o7777).toBe(0o755);
      expect(statSync(dir).mode & 0o7777).toBe(0o700);
    } finally {
      execFileSync("rm", ["-rf", dir]);
    }
  });
});
