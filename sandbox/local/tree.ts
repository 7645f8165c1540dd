// Reading and writing real directory trees against manifests: a full walk that re-hashes only files
// whose size/mtime/inode changed (as git's index does), an overlay upper-dir scan that touches only
// what changed, and materialisation of a manifest into a fresh directory.
import * as fs from "node:fs/promises";
import { join } from "node:path";
import { type Manifest, type ManifestDelta, type ManifestEntry, parentOf } from "../manifest.ts";
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

async function entryOf(
  store: Store,
  abs: string,
  stat: import("node:fs").BigIntStats,
  opts: { link: boolean; index?: FileIndex; path: string; newIndex?: FileIndex },
): Promise<ManifestEntry | null> {
  const mode = Number(stat.mode) & PERM;
  if (stat.isDirectory()) return { t: "d", m: mode, s: 0 };
  if (stat.isSymbolicLink()) return { t: "l", m: 0o777, s: 0, l: await fs.readlink(abs) };
  if (!stat.isFile()) return null; // sockets, fifos, devices are not part of a snapshot
  const size = Number(stat.size);
  const known = opts.index?.get(opts.path);
  let hash: string;
  if (known && known.size === size && known.mtimeNs === stat.mtimeNs && known.ino === stat.ino) {
    hash = known.hash;
  } else {
    hash = await store.putFile(abs, size, opts.link);
  }
  opts.newIndex?.set(opts.path, { size, mtimeNs: stat.mtimeNs, ino: stat.ino, hash });
  return { t: "f", m: mode, s: size, h: hash };
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
 * Walks a whole tree into a manifest. Files whose size, mtime and inode match `index` keep their
 * hash without being read; the returned index describes the tree as walked.
 */
export async function walkTree(
  store: Store,
  root: string,
  index?: FileIndex,
): Promise<{ manifest: Manifest; index: FileIndex }> {
  const manifest: Manifest = new Map();
  const newIndex: FileIndex = new Map();
  const dirents = await fs.readdir(root, { recursive: true, withFileTypes: true });
  const paths = dirents.map((d) => {
    const rel = join(d.parentPath, d.name).slice(root.length + 1);
    return rel;
  });
  const results = new Array<ManifestEntry | null>(paths.length);
  await pool(
    paths.map((_, i) => i),
    64,
    async (i) => {
      const path = paths[i]!;
      const abs = join(root, path);
      const stat = await fs.lstat(abs, { bigint: true });
      results[i] = await entryOf(store, abs, stat, { link: false, index, path, newIndex });
    },
  );
  for (let i = 0; i < paths.length; i++) if (results[i]) manifest.set(paths[i]!, results[i]!);
  return { manifest, index: newIndex };
}

function isWhiteout(stat: import("node:fs").BigIntStats): boolean {
  return stat.isCharacterDevice() && stat.rdev === 0n;
}

/**
 * The changes an overlay upper directory holds against `lower` (the manifest the lower layers show).
 * Reads only the upper tree: the lower is never walked. A lower child missing from the merged view
 * is deleted (whiteouts and opaque directories alike), so no overlay xattrs need reading.
 * Objects are hard-linked from the upper, which is about to be frozen as a read-only layer.
 */
export async function scanUpper(
  store: Store,
  upper: string,
  merged: string,
  lower: Manifest,
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

  const files: { path: string; abs: string; stat: import("node:fs").BigIntStats }[] = [];
  const visit = async (dir: string): Promise<void> => {
    const absUpper = dir ? join(upper, dir) : upper;
    const lowerHere = lowerChildren.get(dir) ?? [];
    // The merged view only matters where the lower has children that may have been hidden.
    const [upperNames, mergedNames] = await Promise.all([
      fs.readdir(absUpper),
      lowerHere.length > 0 ? fs.readdir(dir ? join(merged, dir) : merged) : Promise.resolve(null),
    ]);
    const inMerged = mergedNames ? new Set(mergedNames) : null;
    const stats = await Promise.all(
      upperNames.map((name) => fs.lstat(join(absUpper, name), { bigint: true })),
    );
    const subdirs: string[] = [];
    upperNames.forEach((name, i) => {
      const path = dir ? `${dir}/${name}` : name;
      const stat = stats[i]!;
      if (isWhiteout(stat) || (inMerged && !inMerged.has(name))) {
        if (lower.has(path)) deleteSubtree(path);
        return;
      }
      if (stat.isDirectory()) {
        const entry: ManifestEntry = { t: "d", m: Number(stat.mode) & PERM, s: 0 };
        const old = lower.get(path);
        if (old?.t !== "d" || old.m !== entry.m) {
          // A directory replacing a file or symlink: the old entry goes, the directory arrives.
          if (old && old.t !== "d") deleteSubtree(path);
          delta[path] = entry;
        }
        subdirs.push(path);
      } else {
        const old = lower.get(path);
        if (old?.t === "d") deleteSubtree(path);
        files.push({ path, abs: join(absUpper, name), stat });
      }
    });
    // Lower children hidden by the merged view were deleted (or their directory was made opaque).
    if (inMerged) {
      const upperSet = new Set(upperNames);
      for (const child of lowerHere) {
        const name = child.slice(dir ? dir.length + 1 : 0);
        if (!inMerged.has(name) && !upperSet.has(name)) deleteSubtree(child);
      }
    }
    await Promise.all(subdirs.map(visit));
  };
  await visit("");

  await pool(files, 32, async ({ path, abs, stat }) => {
    const entry = await entryOf(store, abs, stat, { link: true, path });
    if (!entry) return;
    const old = lower.get(path);
    // A copy-up without a real change (touch, same bytes) is not a change.
    if (old && old.t === entry.t && old.m === entry.m && old.h === entry.h && old.l === entry.l) return;
    delta[path] = entry;
  });
  return delta;
}

/**
 * Writes a manifest's tree into `dir` (which must not exist): every file a fresh copy of its object,
 * so nothing written later in `dir` can alter the store. Returns the index of what it wrote.
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
      await fs.chmod(abs, entry.m);
      const stat = await fs.lstat(abs, { bigint: true });
      index.set(path, { size: entry.s, mtimeNs: stat.mtimeNs, ino: stat.ino, hash: entry.h! });
    },
  );
  // Directory modes last, deepest first, so a read-only directory does not block its own children.
  for (const [path, entry] of dirs.reverse()) await fs.chmod(join(dir, path), entry.m);
  return index;
}
