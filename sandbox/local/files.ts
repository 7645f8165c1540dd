// File access to a live workspace from the host. A command may be running and swapping paths while
// these run (reads do not wait for the branch's queue), so every path is resolved beneath the
// workspace root by descriptor (beneath.ts) and every read, listing and write goes through the
// descriptors it pinned: a symlink is never followed out of the workspace, not even by a race.

import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import * as fs from "node:fs/promises";
import { cleanPath } from "../manifest.ts";
import type { FileEntry, ListPage, ReadOptions } from "../provider.ts";
import { SandboxError } from "../provider.ts";
import { largestInOrder, smallestInOrder, sortInSlices } from "../sorting.ts";
import {
  at,
  errnoOf,
  isGone,
  openDirBeneath,
  openFileBeneath,
  openParentBeneath,
  withDir,
} from "./beneath.ts";
import { readAtMost } from "./bounded-read.ts";
import { safeMode } from "./modes.ts";

/** The directory being written into was removed or replaced meanwhile (by a command still running). */
function changedUnderfoot(path: string): SandboxError {
  return new SandboxError("BUSY", `"${path}" changed while it was being written; try again`);
}

export async function listLive(root: string, dir: string, page?: ListPage): Promise<FileEntry[]> {
  const clean = cleanPath(dir, { allowRoot: true });
  return withDir(root, async (rootDir) => {
    const handle = await openDirBeneath(rootDir, clean).catch((error) => {
      if (isGone(error)) return null;
      throw error;
    });
    if (!handle) throw new SandboxError("NOT_FOUND", `No directory "${clean || "/"}"`);
    try {
      const pathOf = (name: string) => (clean ? `${clean}/${name}` : name);
      const names = await fs.readdir(at(handle));
      const stat = async (batch: string[], out: FileEntry[]) => {
        for (let i = 0; i < batch.length; i += STAT_BATCH) {
          const slice = batch.slice(i, i + STAT_BATCH);
          const entries = await Promise.all(slice.map((name) => statEntry(handle, name, pathOf(name))));
          for (const entry of entries) if (entry) out.push(entry);
        }
        return out;
      };
      // Awaited here, not returned as a promise: the handle closes in `finally`.
      if (!page) return await stat(await sortInSlices(names), []);
      // A page: only its names are picked out (without sorting the rest) and stat'ed, so a directory
      // of 150,000 entries costs one readdir, not 150,000 lstat calls, objects and a long sort.
      // From the end (`fromEnd`), the largest are picked, nearest `before` first, and put back in order.
      const out: FileEntry[] = [];
      let { after, before } = page;
      while (out.length < page.limit) {
        const [above, below] = [after, before];
        const rest =
          above === undefined && below === undefined
            ? names
            : names.filter((name) => {
                const path = pathOf(name);
                return (above === undefined || path > above) && (below === undefined || path < below);
              });
        const nearest = page.fromEnd ? largestInOrder : smallestInOrder;
        const batch = await nearest(rest, page.limit - out.length);
        if (batch.length === 0) break;
        // Entries may vanish meanwhile, or be sockets and FIFOs, which are not listed: then more are
        // picked beyond the last one looked at, until the page is full.
        await stat(batch, out);
        if (page.fromEnd) before = pathOf(batch.at(-1)!);
        else after = pathOf(batch.at(-1)!);
      }
      return page.fromEnd ? out.reverse() : out;
    } finally {
      await handle.close();
    }
  });
}

/** lstat calls in flight at once for one listing. */
const STAT_BATCH = 1000;

async function statEntry(dir: FileHandle, name: string, path: string): Promise<FileEntry | null> {
  const st = await fs.lstat(at(dir, name)).catch(() => null);
  if (!st) return null;
  const mode = st.mode & 0o7777;
  if (st.isDirectory()) return { path, type: "dir", size: 0, mode };
  if (st.isSymbolicLink()) {
    const target = await fs.readlink(at(dir, name)).catch(() => null);
    return target === null ? null : { path, type: "symlink", size: 0, mode: 0o777, target };
  }
  if (st.isFile()) return { path, type: "file", size: st.size, mode };
  return null;
}

export async function readLive(
  root: string,
  path: string,
  options: ReadOptions = {},
): Promise<Uint8Array | null> {
  const clean = cleanPath(path);
  return withDir(root, async (rootDir) => {
    const file = await openFileBeneath(rootDir, clean).catch((error) => {
      if (isGone(error)) return null;
      throw error;
    });
    if (!file) return null;
    try {
      if (options.maxBytes === undefined) return new Uint8Array(await file.readFile());
      return await readAtMost(file, clean, options.maxBytes);
    } finally {
      await file.close();
    }
  });
}

export async function writeLive(
  root: string,
  path: string,
  content: Uint8Array,
  mode?: number,
): Promise<void> {
  const clean = cleanPath(path);
  await withDir(root, async (rootDir) => {
    const { dir, name } = await openParentBeneath(rootDir, clean, { create: true }).catch((error) => {
      if (isGone(error) || errnoOf(error) === "EEXIST")
        throw new SandboxError("BAD_PATH", `"${clean}": a parent is not a directory`);
      throw error;
    });
    try {
      const existing = await fs.lstat(at(dir, name)).catch(() => null);
      if (existing?.isDirectory()) throw new SandboxError("BAD_PATH", `"${clean}" is a directory`);
      const finalMode = safeMode(mode ?? (existing?.isFile() ? existing.mode : 0o644));
      // Written beside, then renamed over, both inside the pinned directory: readers see the old or
      // the new file, never half of one, and the temp name cannot be a planted symlink (O_EXCL).
      const tmp = `.occ-write-${process.pid}-${randomBytes(6).toString("hex")}`;
      const file = await fs
        .open(
          at(dir, tmp),
          constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
          0o600,
        )
        .catch((error) => {
          throw isGone(error) ? changedUnderfoot(clean) : error;
        });
      try {
        try {
          await file.writeFile(content);
          await file.chmod(finalMode);
        } finally {
          await file.close();
        }
        await fs.rename(at(dir, tmp), at(dir, name));
      } catch (error) {
        await fs.unlink(at(dir, tmp)).catch(() => {});
        const code = errnoOf(error);
        if (code === "EISDIR" || code === "ENOTEMPTY" || code === "EEXIST")
          throw new SandboxError("BAD_PATH", `"${clean}" is a directory`);
        throw isGone(error) ? changedUnderfoot(clean) : error;
      }
    } finally {
      await dir.close();
    }
  });
}
