// Reading and writing real directory trees against manifests: a full walk that re-hashes only files
// whose size/mtime/inode changed (as git's index does), an overlay upper-dir scan that touches only
// what changed, and materialisation of a manifest into a fresh directory.
import { readlinkSync } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import * as fs from "node:fs/promises";
import { join } from "node:path";
import { limiter } from "../concurrency.ts";
import { type Manifest, type ManifestDelta, type ManifestEntry, parentOf } from "../manifest.ts";
import { excessBytes, releaseExcess } from "./allocation.ts";
import {
  at,
  type Dir,
  type DirEntry,
  isGone,
  openDirBeneath,
  openEntry,
  openParentBeneath,
  walkDirs,
  withDir,
} from "./beneath.ts";
import { dropSetId, SETID, safeMode } from "./modes.ts";
import type { Store } from "./store.ts";

/** What a file looked like when it was last hashed. */
export interface IndexEntry {
  size: number;
  mtimeNs: bigint;
  ino: bigint;
  hash: string;
}
export type FileIndex = Map<string, IndexEntry>;

const PERM = 0o7777;
/** Files hashed or stored at once, across all the directories of a walk. */
const FILE_PARALLEL = 32;

/** Disk space kept beyond the content of the files a scan stored (charged with the snapshot). */
export interface Tally {
  extraBytes: number;
}

/**
 * Stores entry `name` of `dir` (a regular file) through a descriptor opened without following it;
 * set-id bits are cleared on that descriptor first, before a layer file is linked into the store, and
 * space reserved past its end is given back (allocation.ts), so a layer or live workspace keeps only
 * its content; what stays past it is added to `tally`.
 */
async function storeFile(store: Store, dir: Dir, name: string, link: boolean, tally?: Tally) {
  const file = await openEntry(dir, name);
  if (!file) return null;
  try {
    let stat = await file.stat({ bigint: true });
    if (!stat.isFile()) return null;
    stat = await releaseExcess(dir, name, stat);
    if (tally) tally.extraBytes += excessBytes(stat);
    let mode = Number(stat.mode) & PERM;
    if (mode & SETID) {
      mode = safeMode(mode);
      await file.chmod(mode);
    }
    const stored = await store.putFile(
      file,
      Number(stat.size),
      link ? { path: at(dir, name), ino: stat.ino } : undefined,
    );
    return { ...stored, mode, mtimeNs: stat.mtimeNs, ino: stat.ino };
  } finally {
    await file.close();
  }
}

type EntryOptions = { link: boolean; index?: FileIndex; newIndex?: FileIndex; tally?: Tally };

/**
 * The manifest entry for one entry of a directory being walked, when it needs no I/O beyond a
 * readlink: a directory, a symlink, a file the index already knows. undefined when it needs the
 * slow path (hashing, or a set-id bit to clear); null when it is not part of a snapshot.
 */
function quickEntry(
  dir: Dir,
  { name, path, stat }: DirEntry,
  opts: EntryOptions,
): ManifestEntry | null | undefined {
  const mode = Number(stat.mode) & PERM;
  if (stat.isSymbolicLink()) {
    try {
      return { t: "l", m: 0o777, s: 0, l: readlinkSync(at(dir, name)) };
    } catch {
      return null; // replaced meanwhile
    }
  }
  if (!stat.isFile() && !stat.isDirectory()) return null; // sockets, fifos, devices
  if (mode & SETID) return undefined;
  if (stat.isDirectory()) return { t: "d", m: mode, s: 0 };
  const size = Number(stat.size);
  const known = opts.index?.get(path);
  if (known && known.size === size && known.mtimeNs === stat.mtimeNs && known.ino === stat.ino) {
    opts.newIndex?.set(path, known);
    return { t: "f", m: mode, s: size, h: known.hash };
  }
  return undefined;
}

/** The manifest entry for one entry of a directory being walked (null: not part of a snapshot). */
async function entryOf(
  store: Store,
  dir: Dir,
  entry: DirEntry,
  opts: EntryOptions,
): Promise<ManifestEntry | null> {
  const { name, path, stat } = entry;
  if (Number(stat.mode) & SETID && (stat.isFile() || stat.isDirectory())) {
    await dropSetId(dir, name);
    const mode = safeMode(Number(stat.mode));
    if (stat.isDirectory()) return { t: "d", m: mode, s: 0 };
  } else {
    const quick = quickEntry(dir, entry, opts);
    if (quick !== undefined) return quick;
  }
  const stored = await storeFile(store, dir, name, opts.link, opts.tally);
  if (!stored) return null;
  opts.newIndex?.set(path, {
    size: stored.size,
    mtimeNs: stored.mtimeNs,
    ino: stored.ino,
    hash: stored.hash,
  });
  return { t: "f", m: stored.mode, s: stored.size, h: stored.hash };
}

/**
 * Walks a whole tree into a manifest. Files whose size, mtime and inode match `index` keep their
 * hash without being read; the returned index describes the tree as walked, `extraBytes` the space
 * the files read (new or changed) hold beyond their content. The walk goes by descriptor (walkDirs):
 * a command swapping directories for symlinks cannot pull host files in.
 */
export async function walkTree(
  store: Store,
  root: string,
  index?: FileIndex,
): Promise<{ manifest: Manifest; index: FileIndex; extraBytes: number }> {
  const manifest: Manifest = new Map();
  const newIndex: FileIndex = new Map();
  const tally: Tally = { extraBytes: 0 };
  const opts: EntryOptions = { link: false, index, newIndex, tally };
  const limit = limiter(FILE_PARALLEL);
  await walkDirs(root, async ({ dir, entries }) => {
    const slow: DirEntry[] = [];
    for (const entry of entries) {
      const quick = quickEntry(dir, entry, opts);
      if (quick === undefined) slow.push(entry);
      else if (quick) manifest.set(entry.path, quick);
    }
    if (slow.length === 0) return;
    await Promise.all(
      slow.map((entry) =>
        limit(async () => {
          const result = await entryOf(store, dir, entry, opts);
          if (result) manifest.set(entry.path, result);
        }),
      ),
    );
  });
  return { manifest, index: newIndex, extraBytes: tally.extraBytes };
}

/**
 * Clears setuid/setgid bits on every file and directory under `root`, by descriptor. With `via`
 * (an overlay's merged view of the upper directory `root`), the changes are made through it, so
 * the mounted overlay never sees its upper change underneath. Returns how many were cleared.
 * With `releaseSpace`, space files reserved past their end is given back in the same walk (content,
 * size and times unchanged; see allocation.ts), so a live workspace does not keep it between runs.
 */
export async function clearSetIdBits(
  root: string,
  via?: string,
  { releaseSpace = false }: { releaseSpace?: boolean } = {},
): Promise<number> {
  const found: string[] = [];
  let cleared = 0;
  await walkDirs(root, async ({ dir, entries }) => {
    for (const { name, path, stat } of entries) {
      if (releaseSpace) await releaseExcess(dir, name, stat);
      if (!(Number(stat.mode) & SETID) || !(stat.isFile() || stat.isDirectory())) continue;
      if (via) found.push(path);
      else if (await dropSetId(dir, name)) cleared++;
    }
  });
  if (via && found.length > 0) {
    await withDir(via, async (top) => {
      for (const path of found) {
        const parent = await openParentBeneath(top, path, { follow: false }).catch(() => null);
        if (!parent) continue;
        try {
          if (await dropSetId(parent.dir, parent.name)) cleared++;
        } finally {
          await parent.dir.close();
        }
      }
    });
  }
  return cleared;
}

function isWhiteout(stat: import("node:fs").BigIntStats): boolean {
  return stat.isCharacterDevice() && stat.rdev === 0n;
}

/** The names in directory `path` of the merged view, or none when it is not a directory there. */
async function mergedNames(merged: FileHandle, path: string): Promise<Set<string>> {
  const dir = await openDirBeneath(merged, path, { follow: false }).catch((error) => {
    if (isGone(error)) return null;
    throw error;
  });
  if (!dir) return new Set();
  try {
    return new Set(await fs.readdir(at(dir)));
  } finally {
    await dir.close();
  }
}

/**
 * The changes an overlay upper directory holds against `lower` (the manifest the lower layers show).
 * Reads only the upper tree: the lower is never walked. A lower child missing from the merged view
 * is deleted (whiteouts and opaque directories alike), so no overlay xattrs need reading.
 * Objects are hard-linked from the upper, which is about to be frozen as a read-only layer; space its
 * files hold beyond their content is added to `tally`.
 */
export async function scanUpper(
  store: Store,
  upper: string,
  merged: string,
  lower: Manifest,
  tally?: Tally,
): Promise<ManifestDelta> {
  const delta: ManifestDelta = {};
  const lowerChildren = new Map<string, string[]>();
  for (const path of lower.keys()) {
    const parent = parentOf(path);
    const list = lowerChildren.get(parent);
    if (list) list.push(path);
    else lowerChildren.set(parent, [path]);
  }
  const deleteSubtree = (path: string) => {
    delta[path] = null;
    for (const child of lowerChildren.get(path) ?? []) deleteSubtree(child);
  };

  // File entries are applied after the walk, over the deletions it found (as a whole-tree diff would).
  const files: [string, ManifestEntry][] = [];
  const limit = limiter(FILE_PARALLEL);
  await withDir(merged, (mergedRoot) =>
    walkDirs(upper, async ({ path: dir, dir: handle, entries }) => {
      const lowerHere = lowerChildren.get(dir) ?? [];
      // The merged view only matters where the lower has children that may have been hidden.
      const inMerged = lowerHere.length > 0 ? await mergedNames(mergedRoot, dir) : null;
      const upperFiles: DirEntry[] = [];
      for (const item of entries) {
        const { name, path, stat } = item;
        if (isWhiteout(stat) || (inMerged && !inMerged.has(name))) {
          if (lower.has(path)) deleteSubtree(path);
          continue;
        }
        if (stat.isDirectory()) {
          const entry = (await entryOf(store, handle, item, { link: true }))!;
          const old = lower.get(path);
          if (old?.t !== "d" || old.m !== entry.m) {
            // A directory replacing a file or symlink: the old entry goes, the directory arrives.
            if (old && old.t !== "d") deleteSubtree(path);
            delta[path] = entry;
          }
        } else {
          const old = lower.get(path);
          if (old?.t === "d") deleteSubtree(path);
          upperFiles.push(item);
        }
      }
      // Lower children hidden by the merged view were deleted (or their directory was made opaque).
      if (inMerged) {
        const upperSet = new Set(entries.map((e) => e.name));
        for (const child of lowerHere) {
          const name = child.slice(dir ? dir.length + 1 : 0);
          if (!inMerged.has(name) && !upperSet.has(name)) deleteSubtree(child);
        }
      }
      await Promise.all(
        upperFiles.map((item) =>
          limit(async () => {
            const entry = await entryOf(store, handle, item, { link: true, tally });
            if (entry) files.push([item.path, entry]);
          }),
        ),
      );
    }),
  );

  for (const [path, entry] of files) {
    const old = lower.get(path);
    // A copy-up without a real change (touch, same bytes) is not a change.
    if (old && old.t === entry.t && old.m === entry.m && old.h === entry.h && old.l === entry.l) continue;
    delta[path] = entry;
  }
  return delta;
}

/**
 * At most how many entries a snapshot of `lower` with the changes in overlay upper `upper` holds: the
 * lower's, plus the upper's entries that are not whiteouts and not in the lower (deletions are not
 * subtracted). Counted with lstat only, before anything is stored; the walk stops once past `limit`.
 */
export async function entriesAtMost(upper: string, lower: Manifest, limit: number): Promise<number> {
  let count = lower.size;
  class Past extends Error {}
  try {
    await walkDirs(
      upper,
      async ({ entries }) => {
        for (const { path, stat } of entries) {
          if (isWhiteout(stat) || lower.has(path)) continue;
          if (++count > limit) throw new Past();
        }
      },
      { parallel: 1 },
    );
  } catch (error) {
    if (!(error instanceof Past)) throw error;
  }
  return count;
}

/** Runs `fn` over items with at most `limit` in flight. */
async function pool<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  });
  await Promise.all(workers);
}

/**
 * Writes a manifest's tree into `dir` (which must not exist): every file a fresh copy of its object,
 * so nothing written later in `dir` can alter the store. Returns the index of what it wrote. `dir`
 * is new and no command runs in it yet, so plain paths are safe here; modes lose set-id bits (a
 * manifest recorded before they were stripped may still carry them).
 */
export async function materialise(store: Store, manifest: Manifest, dir: string): Promise<FileIndex> {
  await fs.mkdir(dir, { recursive: true });
  const entries = [...manifest].sort(([a], [b]) => a.length - b.length);
  const dirs = entries.filter(([, e]) => e.t === "d");
  for (const [path] of dirs) await fs.mkdir(join(dir, path), { recursive: true });
  // Parents of files whose directory entry is implicit (not in the manifest) are created on demand.
  const index: FileIndex = new Map();
  await pool(
    entries.filter(([, e]) => e.t !== "d"),
    32,
    async ([path, entry]) => {
      const abs = join(dir, path);
      const parent = parentOf(path);
      if (parent && !manifest.has(parent)) await fs.mkdir(join(dir, parent), { recursive: true });
      if (entry.t === "l") {
        await fs.symlink(entry.l!, abs);
        return;
      }
      await fs.copyFile(store.objectPath(entry.h!), abs);
      await fs.chmod(abs, safeMode(entry.m));
      const stat = await fs.lstat(abs, { bigint: true });
      index.set(path, { size: entry.s, mtimeNs: stat.mtimeNs, ino: stat.ino, hash: entry.h! });
    },
  );
  // Directory modes last, deepest first, so a read-only directory does not block its own children.
  for (const [path, entry] of dirs.reverse()) await fs.chmod(join(dir, path), safeMode(entry.m));
  return index;
}
