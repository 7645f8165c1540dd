// The behaviour every sandbox provider owes: run by each provider's test file with its own factory.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { FileEntry, SandboxProvider } from "../../sandbox/provider.ts";

export interface ContractOptions {
  name: string;
  newProvider(): Promise<SandboxProvider>;
  dispose?(provider: SandboxProvider): Promise<void>;
  /** false for providers whose storage cannot delete (ConTree): GC then frees nothing and keeps all. */
  deletes?: boolean;
}

const text = (data: Uint8Array | null) => (data === null ? null : new TextDecoder().decode(data));

async function sh(provider: SandboxProvider, sandbox: string, command: string) {
  let out = "";
  const result = await provider.exec(sandbox, {
    command,
    timeoutMs: 30_000,
    onOutput: (c) => {
      out += new TextDecoder().decode(c.data);
    },
  });
  return { ...result, out };
}

/** Every entry under a source, recursively, with file contents: an exact picture of a tree. */
async function picture(provider: SandboxProvider, source: { sandbox: string } | { snapshot: string }) {
  const out: Record<string, unknown> = {};
  const walk = async (dir: string) => {
    for (const entry of await provider.listFiles(source, dir)) {
      const { path, type, mode, target } = entry as FileEntry;
      out[path] = {
        type,
        mode: type === "symlink" ? undefined : mode,
        target,
        content: type === "file" ? text(await provider.readFile(source, path)) : undefined,
      };
      if (type === "dir") await walk(path);
    }
  };
  await walk("");
  return out;
}

export function runProviderContract(options: ContractOptions) {
  describe(`${options.name}: sandbox provider contract`, () => {
    let p: SandboxProvider;
    beforeAll(async () => {
      p = await options.newProvider();
    });
    afterAll(async () => {
      await (options.dispose ? options.dispose(p) : p.close());
    });

    test("create from a file map, run a command with streamed output and an exit code", async () => {
      const sbx = await p.create({
        kind: "files",
        files: { "hello.txt": "hi\n", "bin/run.sh": { content: "echo ran\n", mode: 0o755 } },
      });
      const streams = { stdout: "", stderr: "" };
      const result = await p.exec(sbx, {
        command: "cat hello.txt; ./bin/run.sh; echo oops >&2; exit 3",
        onOutput: (c) => {
          streams[c.stream] += new TextDecoder().decode(c.data);
        },
      });
      expect(result.exitCode).toBe(3);
      expect(result.killedBy).toBeNull();
      expect(streams).toEqual({ stdout: "hi\nran\n", stderr: "oops\n" });
      const entries = await p.listFiles({ sandbox: sbx });
      expect(entries.map((e) => e.path)).toEqual(["bin", "hello.txt"]);
      await p.destroy(sbx);
    });

    test("snapshots are immutable and readable; files written by commands land in them", async () => {
      const sbx = await p.create({ kind: "empty" });
      await sh(p, sbx, "mkdir -p src && printf 'one' > src/a.txt");
      const s1 = await p.snapshot(sbx);
      expect(s1.parentId).toBeNull();
      expect(s1.fileCount).toBe(1);
      await sh(p, sbx, "printf 'two' > src/a.txt");
      const s2 = await p.snapshot(sbx);
      expect(s2.parentId).toBe(s1.id);
      expect(text(await p.readFile({ snapshot: s1.id }, "src/a.txt"))).toBe("one");
      expect(text(await p.readFile({ snapshot: s2.id }, "src/a.txt"))).toBe("two");
      expect(await p.readFile({ snapshot: s2.id }, "src/missing")).toBeNull();
      expect((await p.getSnapshot(s2.id)).parentId).toBe(s1.id);
      await p.destroy(sbx);
    });

    test("forks are independent of each other and of the snapshot, both ways", async () => {
      const sbx = await p.create({ kind: "files", files: { "shared.txt": "base\n", "keep.txt": "k\n" } });
      const base = await p.snapshot(sbx);
      const a = await p.fork(base.id);
      const b = await p.fork(base.id);
      // In-place appends (the dangerous case for shared inodes) and new files, different per fork.
      await sh(p, a, "echo from-a >> shared.txt; echo a > only-a.txt; rm keep.txt");
      await sh(p, b, "echo from-b >> shared.txt; echo b > only-b.txt");
      expect(text(await p.readFile({ sandbox: a }, "shared.txt"))).toBe("base\nfrom-a\n");
      expect(text(await p.readFile({ sandbox: b }, "shared.txt"))).toBe("base\nfrom-b\n");
      expect(await p.readFile({ sandbox: b }, "only-a.txt")).toBeNull();
      expect(await p.readFile({ sandbox: a }, "only-b.txt")).toBeNull();
      expect(text(await p.readFile({ sandbox: b }, "keep.txt"))).toBe("k\n");
      // The snapshot and the original sandbox saw nothing.
      expect(text(await p.readFile({ snapshot: base.id }, "shared.txt"))).toBe("base\n");
      expect(text(await p.readFile({ sandbox: sbx }, "shared.txt"))).toBe("base\n");
      // A fork of a fork's snapshot carries its changes, and only those.
      const sa = await p.snapshot(a);
      expect(sa.parentId).toBe(base.id);
      const c = await p.fork(sa.id);
      expect(text(await p.readFile({ sandbox: c }, "shared.txt"))).toBe("base\nfrom-a\n");
      expect(await p.readFile({ sandbox: c }, "keep.txt")).toBeNull();
      for (const id of [sbx, a, b, c]) await p.destroy(id);
    });

    test("rollback restores content, modes, symlinks and empty directories exactly", async () => {
      const sbx = await p.create({ kind: "empty" });
      await sh(
        p,
        sbx,
        [
          "mkdir -p a/b/c empty/nested-empty tools",
          "printf 'x' > a/b/c/deep.txt",
          "printf '#!/bin/sh\\necho hi\\n' > tools/run.sh && chmod 755 tools/run.sh",
          "printf 'secret' > private && chmod 600 private",
          "ln -s a/b/c/deep.txt link-to-deep",
          "ln -s does-not-exist dangling",
          "chmod 700 a/b",
        ].join(" && "),
      );
      const s1 = await p.snapshot(sbx);
      const before = await picture(p, { snapshot: s1.id });
      expect(await picture(p, { sandbox: sbx })).toEqual(before);

      await sh(
        p,
        sbx,
        [
          "rm -rf a/b/c empty/nested-empty",
          "chmod 644 tools/run.sh",
          "printf 'changed' > private",
          "rm link-to-deep && ln -s private link-to-deep",
          "rm dangling && mkdir dangling",
          "echo new > new.txt",
          "chmod 755 a/b",
        ].join(" && "),
      );
      const s2 = await p.snapshot(sbx);
      expect(await picture(p, { sandbox: sbx })).not.toEqual(before);

      await p.reset(sbx, s1.id);
      expect(await picture(p, { sandbox: sbx })).toEqual(before);
      // After a rollback, the next snapshot's parent is the snapshot rolled back to.
      await sh(p, sbx, "echo after > after.txt");
      const s3 = await p.snapshot(sbx);
      expect(s3.parentId).toBe(s1.id);
      expect(await p.readFile({ snapshot: s3.id }, "new.txt")).toBeNull();
      // And going forward again works too.
      await p.reset(sbx, s2.id);
      expect(text(await p.readFile({ sandbox: sbx }, "private"))).toBe("changed");
      await p.destroy(sbx);
    });

    test("diff: text patch, binary flag, mode change, rename as delete+add, nested deletes", async () => {
      const sbx = await p.create({ kind: "empty" });
      await sh(
        p,
        sbx,
        [
          "mkdir -p old/deep/er docs",
          "printf 'line1\\nline2\\nline3\\n' > docs/readme.md",
          "printf '\\000\\001\\002' > blob.bin",
          "printf 'run' > script.sh",
          "printf 'same' > old/deep/er/x.txt",
          "printf 'y' > old/deep/y.txt",
          "printf 'moving' > before-name.txt",
        ].join(" && "),
      );
      const s1 = await p.snapshot(sbx);
      await sh(
        p,
        sbx,
        [
          "printf 'line1\\nline2 changed\\nline3\\n' > docs/readme.md",
          "printf '\\000\\001\\003' > blob.bin",
          "chmod 755 script.sh",
          "rm -rf old",
          "mv before-name.txt after-name.txt",
        ].join(" && "),
      );
      const s2 = await p.snapshot(sbx);
      const diff = await p.diff(s1.id, s2.id);
      const by = Object.fromEntries(diff.map((d) => [d.path, d]));
      expect(Object.keys(by).sort()).toEqual(
        [
          "after-name.txt",
          "before-name.txt",
          "blob.bin",
          "docs/readme.md",
          "old",
          "old/deep",
          "old/deep/er",
          "old/deep/er/x.txt",
          "old/deep/y.txt",
          "script.sh",
        ].sort(),
      );
      expect(by["docs/readme.md"]).toMatchObject({ change: "modified", binary: false });
      expect(by["docs/readme.md"]!.patch).toContain("-line2\n+line2 changed\n");
      expect(by["blob.bin"]).toMatchObject({ change: "modified", binary: true });
      expect(by["blob.bin"]!.patch).toBeUndefined();
      expect(by["script.sh"]).toMatchObject({ change: "modified", oldMode: 0o644, newMode: 0o755 });
      expect(by["script.sh"]!.patch).toBeUndefined();
      expect(by["before-name.txt"]).toMatchObject({ change: "deleted" });
      expect(by["after-name.txt"]).toMatchObject({ change: "added" });
      expect(by["after-name.txt"]!.patch).toContain("+moving");
      for (const path of ["old", "old/deep", "old/deep/er", "old/deep/er/x.txt", "old/deep/y.txt"]) {
        expect(by[path]!.change).toBe("deleted");
      }
      expect(await p.diff(s2.id, s2.id)).toEqual([]);
      // Reversed, every change flips.
      const back = await p.diff(s2.id, s1.id);
      expect(back.find((d) => d.path === "after-name.txt")!.change).toBe("deleted");
      await p.destroy(sbx);
    });

    test("writeFile and file reads refuse paths that leave the workspace", async () => {
      const sbx = await p.create({ kind: "empty" });
      await p.writeFile(sbx, "dir/new.txt", "made\n");
      expect(text(await p.readFile({ sandbox: sbx }, "dir/new.txt"))).toBe("made\n");
      await expect(p.writeFile(sbx, "../escape.txt", "x")).rejects.toMatchObject({ code: "BAD_PATH" });
      await sh(p, sbx, "ln -s /etc etc-link; ln -s ../../../../../../etc/hostname up-link");
      await expect(p.readFile({ sandbox: sbx }, "etc-link/passwd")).rejects.toMatchObject({
        code: "BAD_PATH",
      });
      await expect(p.writeFile(sbx, "etc-link/evil", "x")).rejects.toMatchObject({ code: "BAD_PATH" });
      const upLink = await p.readFile({ sandbox: sbx }, "up-link").catch((e) => e);
      expect(upLink === null || upLink.code === "BAD_PATH").toBe(true);
      await p.destroy(sbx);
    });

    test("GC keeps everything reachable from roots and frees the rest", async () => {
      const sbx = await p.create({ kind: "empty" });
      await sh(p, sbx, "echo 1 > f1");
      const s1 = await p.snapshot(sbx);
      await sh(p, sbx, "echo 2 > f2");
      const s2 = await p.snapshot(sbx);
      const side = await p.fork(s2.id);
      await sh(p, side, "head -c 200000 /dev/urandom > only-on-side.bin");
      const s4 = await p.snapshot(side);
      await p.destroy(side);
      await sh(p, sbx, "echo 3 > f3");
      const s3 = await p.snapshot(sbx);
      await p.destroy(sbx);

      const result = await p.gc([s3.id]);
      if (options.deletes === false) {
        expect(result).toEqual({ removedSnapshots: 0, removedObjects: 0, freedBytes: 0 });
        expect((await p.getSnapshot(s4.id)).id).toBe(s4.id);
      } else {
        expect(result.removedSnapshots).toBeGreaterThanOrEqual(1);
        expect(result.freedBytes).toBeGreaterThanOrEqual(200_000);
        await expect(p.getSnapshot(s4.id)).rejects.toMatchObject({ code: "NOT_FOUND" });
      }
      for (const s of [s1, s2, s3]) expect((await p.getSnapshot(s.id)).id).toBe(s.id);
      expect(text(await p.readFile({ snapshot: s3.id }, "f1"))).toBe("1\n");
      const again = await p.fork(s1.id);
      expect(text(await p.readFile({ sandbox: again }, "f1"))).toBe("1\n");
      await p.destroy(again);
      // Nothing left to free for the same roots.
      expect((await p.gc([s3.id])).removedSnapshots).toBe(0);
    });

    test("unknown ids are NOT_FOUND", async () => {
      await expect(p.fork("snap-nope")).rejects.toMatchObject({ code: "NOT_FOUND" });
      await expect(p.exec("sbx-nope", { command: "true" })).rejects.toMatchObject({ code: "NOT_FOUND" });
      await expect(p.getSnapshot("../../etc/passwd")).rejects.toMatchObject({ code: "NOT_FOUND" });
    });
  });
}
