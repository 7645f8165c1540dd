// Filesystem trees on disk: copying an image to a working directory (cp -a, reflink when the
// filesystem can), comparing a finished working tree with its input image (content, modes,
// ownership, symlinks, deletions) to size the new layer, removing the mount points bubblewrap left
// behind, and resolving image paths without ever leaving the image root (symlinks are followed as
// if the image were `/`).
import { execFile } from "node:child_process";
import type { Stats } from "node:fs";
import { lstat, open, readdir, readlink, rm, rmdir, unlink } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { notFound, unprocessable } from "./errors.ts";

const run = promisify(execFile);

export async function copyTree(src: string, dst: string): Promise<void> {
  try {
    await run("cp", ["-a", "--reflink=auto", src, dst], { maxBuffer: 1 << 20 });
  } catch {
    await run("cp", ["-a", src, dst], { maxBuffer: 1 << 20 });
  }
}

export async function removeTree(path: string): Promise<void> {
  try {
    await rm(path, { recursive: true, force: true });
  } catch {
    // A command may have left unwritable directories behind (chmod 000): make them writable first.
    await run("chmod", ["-R", "u+rwX", path]).catch(() => {});
    await rm(path, { recursive: true, force: true }).catch(() => {});
  }
}

async function lstatOrNull(path: string): Promise<Stats | null> {
  try {
    return await lstat(path);
  } catch {
    return null;
  }
}

async function sameContent(a: string, b: string, size: number): Promise<boolean> {
  const fa = await open(a, "r");
  const fb = await open(b, "r");
  try {
    const chunk = 1 << 20;
    const ba = Buffer.alloc(Math.min(chunk, Math.max(size, 1)));
    const bb = Buffer.alloc(ba.length);
    let pos = 0;
    while (pos < size) {
      const [ra, rb] = await Promise.all([fa.read(ba, 0, ba.length, pos), fb.read(bb, 0, bb.length, pos)]);
      if (ra.bytesRead !== rb.bytesRead) return false;
      if (ra.bytesRead === 0) return true;
      if (!ba.subarray(0, ra.bytesRead).equals(bb.subarray(0, rb.bytesRead))) return false;
      pos += ra.bytesRead;
    }
    return true;
  } finally {
    await fa.close();
    await fb.close();
  }
}

export interface TreeDiff {
  changed: boolean;
  /** Bytes of regular files added or modified (what the new layer holds). */
  layerBytes: number;
}

/** What changed from `base` (an image) to `work` (the finished working tree). */
export async function diffTrees(base: string, work: string): Promise<TreeDiff> {
  let changed = false;
  let layerBytes = 0;
  const walk = async (rel: string): Promise<void> => {
    const workNames = new Set(await readdir(join(work, rel)).catch(() => [] as string[]));
    const baseNames = await readdir(join(base, rel)).catch(() => [] as string[]);
    for (const name of baseNames) if (!workNames.has(name)) changed = true; // deleted
    for (const name of workNames) {
      const path = join(rel, name);
      const w = await lstat(join(work, path));
      const b = await lstatOrNull(join(base, path));
      if (!b || (b.mode & 0o170000) !== (w.mode & 0o170000)) {
        changed = true;
        layerBytes += w.isDirectory() ? 0 : w.size;
        if (w.isDirectory()) await walkAdded(path);
        continue;
      }
      if (b.mode !== w.mode || b.uid !== w.uid || b.gid !== w.gid) changed = true;
      if (w.isSymbolicLink()) {
        if ((await readlink(join(base, path))) !== (await readlink(join(work, path)))) changed = true;
      } else if (w.isFile()) {
        const same =
          b.size === w.size &&
          (b.mtimeMs === w.mtimeMs || (await sameContent(join(base, path), join(work, path), w.size)));
        if (!same) {
          changed = true;
          layerBytes += w.size;
        }
      } else if (w.isDirectory()) await walk(path);
    }
  };
  const walkAdded = async (rel: string): Promise<void> => {
    for (const name of await readdir(join(work, rel))) {
      const w = await lstat(join(work, rel, name));
      if (w.isDirectory()) await walkAdded(join(rel, name));
      else layerBytes += w.size;
    }
  };
  await walk("");
  return { changed, layerBytes };
}

/** Total bytes of regular files under `root`. */
export async function treeSize(root: string): Promise<number> {
  let total = 0;
  const walk = async (dir: string) => {
    for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile()) total += (await lstat(path)).size;
    }
  };
  await walk(root);
  return total;
}

/**
 * Removes the mount points bubblewrap created in `work` (absolute in-image paths, e.g. /usr, /proc,
 * /etc/resolv.conf) when the image did not have them: empty directories, empty files, symlinks.
 */
export async function removeMountStubs(work: string, base: string, stubs: Iterable<string>): Promise<void> {
  const all = new Set<string>();
  for (const stub of stubs) {
    const parts = stub.split("/").filter(Boolean);
    for (let i = 1; i <= parts.length; i++) all.add(`/${parts.slice(0, i).join("/")}`);
  }
  const ordered = [...all].sort((a, b) => b.split("/").length - a.split("/").length);
  for (const path of ordered) {
    if (await lstatOrNull(join(base, path))) continue;
    const stat = await lstatOrNull(join(work, path));
    if (!stat) continue;
    try {
      if (stat.isSymbolicLink() || (stat.isFile() && stat.size === 0)) await unlink(join(work, path));
      else if (stat.isDirectory()) await rmdir(join(work, path));
    } catch {}
  }
}

/**
 * The host path of an in-image path, following symlinks as the image would see them (absolute
 * targets are relative to the image root, `..` stops at the root). With `followLast: false` a final
 * symlink is returned itself. 404 when a component is missing, 422 for a symlink loop or a
 * non-directory in the middle.
 */
export async function resolveInRoot(
  root: string,
  path: string,
  options: { followLast?: boolean; allowMissing?: boolean } = {},
): Promise<{ host: string; inImage: string; exists: boolean }> {
  const followLast = options.followLast ?? true;
  let pending = path.split("/").filter((p) => p && p !== ".");
  const resolved: string[] = [];
  let hops = 0;
  while (pending.length) {
    const name = pending.shift()!;
    if (name === "..") {
      resolved.pop();
      continue;
    }
    const host = join(root, ...resolved, name);
    const stat = await lstatOrNull(host);
    if (!stat) {
      if (options.allowMissing) {
        const rest = [name, ...pending].filter((p) => p !== "..");
        return {
          host: join(root, ...resolved, ...rest),
          inImage: `/${[...resolved, ...rest].join("/")}`,
          exists: false,
        };
      }
      throw notFound(`path not found: ${path}`);
    }
    if (stat.isSymbolicLink() && (pending.length > 0 || followLast)) {
      if (++hops > 40) throw unprocessable(`too many levels of symbolic links: ${path}`);
      const target = await readlink(host);
      const parts = target.split("/").filter((p) => p && p !== ".");
      if (target.startsWith("/")) resolved.length = 0;
      pending = [...parts, ...pending];
      continue;
    }
    if (pending.length > 0 && !stat.isDirectory())
      throw unprocessable(`not a directory: /${[...resolved, name].join("/")}`);
    resolved.push(name);
  }
  return { host: join(root, ...resolved), inImage: `/${resolved.join("/")}`, exists: true };
}
