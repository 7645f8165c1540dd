// The local provider: the shared contract for both workspace strategies, plus isolation and limits.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalProvider } from "../../sandbox/local/provider.ts";
import { runProviderContract } from "./provider.contract.ts";

const dirs = new Map<LocalProvider, string>();

for (const workspaces of ["overlay", "copy"] as const) {
  runProviderContract({
    name: `local (${workspaces})`,
    async newProvider() {
      const dir = mkdtempSync(join(tmpdir(), `occ-sbx-${workspaces}-`));
      const provider = await new LocalProvider({ dir, workspaces, allowLocalRepos: true }).init();
      dirs.set(provider, dir);
      return provider;
    },
    async dispose(provider) {
      await provider.close();
      rmSync(dirs.get(provider as LocalProvider)!, { recursive: true, force: true });
    },
  });
}

describe("local: git bases", () => {
  const root = mkdtempSync(join(tmpdir(), "occ-git-"));
  const repo = join(root, "repo");
  const git = (...args: string[]) =>
    execFileSync("git", ["-c", "user.email=t@example.com", "-c", "user.name=t", ...args], {
      cwd: repo,
      stdio: "pipe",
    });
  let provider: LocalProvider;

  beforeAll(async () => {
    mkdirSync(repo);
    git("init", "-q", "-b", "main");
    writeFileSync(join(repo, "package.json"), '{"name":"demo","scripts":{"test":"node test.js"}}\n');
    writeFileSync(join(repo, "test.js"), "console.log('tests pass')\n");
    git("add", "-A");
    git("commit", "-qm", "init");
    git("checkout", "-qb", "feature");
    writeFileSync(join(repo, "feature.txt"), "on feature\n");
    git("add", "-A");
    git("commit", "-qm", "feature");
    git("checkout", "-q", "main");
    provider = await new LocalProvider({ dir: join(root, "sbx"), allowLocalRepos: true }).init();
  });
  afterAll(async () => {
    await provider.close();
    rmSync(root, { recursive: true, force: true });
  });

  test("a local path and a file:// URL clone offline, with history; a ref picks the branch", async () => {
    for (const url of [repo, `file://${repo}`]) {
      const sbx = await provider.create({ kind: "git", url });
      const names = (await provider.listFiles({ sandbox: sbx })).map((e) => e.path);
      expect(names).toEqual([".git", "package.json", "test.js"]);
      let out = "";
      const r = await provider.exec(sbx, {
        command: "node test.js && git log --oneline | wc -l",
        onOutput: (c) => {
          out += new TextDecoder().decode(c.data);
        },
      });
      expect(r.exitCode).toBe(0);
      expect(out).toBe("tests pass\n1\n");
      await provider.destroy(sbx);
    }
    const onFeature = await provider.create({ kind: "git", url: repo, ref: "feature" });
    expect(await provider.readFile({ sandbox: onFeature }, "feature.txt")).not.toBeNull();
    await provider.destroy(onFeature);
  });

  test("bad repositories and transports are refused with BAD_BASE", async () => {
    for (const url of [join(root, "missing"), "ext::sh -c touch% /tmp/pwned", "ftp://example.com/x.git"]) {
      await expect(provider.create({ kind: "git", url })).rejects.toMatchObject({ code: "BAD_BASE" });
    }
    const strict = await new LocalProvider({ dir: join(root, "strict") }).init();
    await expect(strict.create({ kind: "git", url: repo })).rejects.toMatchObject({ code: "BAD_BASE" });
    await strict.close();
  });
});
