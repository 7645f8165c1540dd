// File access to a live workspace from the host, without ever following a symlink out of it, and to
// snapshots through their manifests.
import { constants } from "node:fs";
import * as fs from "node:fs/promises";
import { join } from "node:path";
import { cleanPath, parentOf } from "../manifest.ts";
import type { FileEntry } from "../provider.ts";
import { SandboxError } from "../provider.ts";

/** The host path of `path` inside `root`, refused when a symlink on the way leads outside. */
export async function resolveInside(root: string, path: string): Promise<string> {
  const clean = cleanPath(path, { allowRoot: true });
  const abs = clean ? join(root, clean) : root;
  const real = await fs.realpath(abs).catch(() => null);
  if (real === null) {
    // Not there (yet): its nearest existing ancestor must be inside.
    const parent = clean ? await resolveInside(root, parentOf(clean)) : root;
    return join(parent, clean.slice(clean.lastIndexOf("/") + 1));
  }
  const realRoot = await fs.realpath(root);
  if (real !== realRoot && !real.startsWith(`${realRoot}/`)) {
    throw new SandboxError("BAD_PATH", `Path "${path}" leads outside the workspace`);
  }
  return real;
}

export async function listLive(root: string, dir: string): Promise<FileEntry[]> {
  const clean = cleanPath(dir, { allowRoot: true });
  const abs = await resolveInside(root, clean);
  const stat = await fs.stat(abs).catch(() => null);
  if (!stat?.isDirectory()) throw new SandboxError("NOT_FOUND", `No directory "${clean || "/"}"`);
  const names = (await fs.readdir(abs)).sort();
  const out: FileEntry[] = [];
  for (const name of names) {
    const st = await fs.lstat(join(abs, name)).catch(() => null);
    if (!st) continue;
    const path = clean ? `${clean}/${name}` : name;
    const mode = st.mode & 0o7777;
    if (st.isDirectory()) out.push({ path, type: "dir", size: 0, mode });
    else if (st.isSymbolicLink())
      out.push({ path, type: "symlink", size: 0, mode: 0o777, target: await fs.readlink(join(abs, name)) });
    else if (st.isFile()) out.push({ path, type: "file", size: st.size, mode });
  }
  return out;
}

export async function readLive(root: string, path: string): Promise<Uint8Array | null> {
  const abs = await resolveInside(root, cleanPath(path));
  try {
    // O_NOFOLLOW: a symlink swapped in after the check is refused, not followed.
    const handle = await fs.open(abs, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      if (!(await handle.stat()).isFile()) return null;
      return new Uint8Array(await handle.readFile());
    } finally {
      await handle.close();
    }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ELOOP" || code === "EISDIR") return null;
    throw error;
  }
}

export async function writeLive(
  root: string,
  path: string,
  content: Uint8Array,
  mode?: number,
): Promise<void> {
  const clean = cleanPath(path);
  const parent = await resolveInside(root, parentOf(clean));
  await fs.mkdir(parent, { recursive: true }).catch((error: NodeJS.ErrnoException) => {
    // A file where a directory of the path must be ("f.txt/x" when f.txt is a file).
    if (error.code === "ENOTDIR" || error.code === "EEXIST")
      throw new SandboxError("BAD_PATH", `"${parentOf(clean)}" is not a directory`);
    throw error;
  });
  await resolveInside(root, parentOf(clean)); // the directories just made are inside too
  const target = join(parent, clean.slice(clean.lastIndexOf("/") + 1));
  const existing = await fs.lstat(target).catch(() => null);
  if (existing?.isDirectory()) throw new SandboxError("BAD_PATH", `"${clean}" is a directory`);
  // Write beside, then rename over: readers see the old or the new file, never half of one.
  const tmp = join(parent, `.occ-write-${process.pid}-${Date.now()}`);
  await fs.writeFile(tmp, content, { mode: mode ?? (existing?.isFile() ? existing.mode & 0o7777 : 0o644) });
  if (mode !== undefined) await fs.chmod(tmp, mode);
  await fs.rename(tmp, target);
}
