// A manifest: the complete listing of a snapshot's tree (path -> entry). File contents live in the
// object store under their SHA-256; a manifest entry holds the hash, size, mode and type.
import { type FileEntry, type ListPage, SandboxError } from "./provider.ts";
import { sortInSlices, yieldToEventLoop } from "./sorting.ts";

export interface ManifestEntry {
  /** f = regular file, d = directory, l = symlink */
  t: "f" | "d" | "l";
  /** Permission bits. */
  m: number;
  /** Size in bytes (files). */
  s: number;
  /** SHA-256 of the content (files). */
  h?: string;
  /** Link target (symlinks). */
  l?: string;
}

export type Manifest = Map<string, ManifestEntry>;

/** Changes against a parent manifest: an entry, or null for a deletion. */
export type ManifestDelta = Record<string, ManifestEntry | null>;

export function applyDelta(base: Manifest, delta: ManifestDelta): Manifest {
  const next = new Map(base);
  for (const [path, entry] of Object.entries(delta)) {
    if (entry === null) next.delete(path);
    else next.set(path, entry);
  }
  return next;
}

export function deltaBetween(from: Manifest, to: Manifest): ManifestDelta {
  const delta: ManifestDelta = {};
  for (const [path, entry] of to) {
    const old = from.get(path);
    if (!old || !sameEntry(old, entry)) delta[path] = entry;
  }
  for (const path of from.keys()) if (!to.has(path)) delta[path] = null;
  return delta;
}

export function sameEntry(a: ManifestEntry, b: ManifestEntry): boolean {
  return a.t === b.t && a.m === b.m && a.s === b.s && a.h === b.h && a.l === b.l;
}

export function manifestStats(manifest: Manifest): { fileCount: number; sizeBytes: number } {
  let fileCount = 0;
  let sizeBytes = 0;
  for (const entry of manifest.values()) {
    if (entry.t === "f") {
      fileCount++;
      sizeBytes += entry.s;
    }
  }
  return { fileCount, sizeBytes };
}

/**
 * Normalises a user-supplied path to "a/b/c" and refuses anything that could leave the workspace
 * (absolute paths are taken relative to the root; ".." segments are refused).
 */
export function cleanPath(path: string, { allowRoot = false } = {}): string {
  if (path.includes("\0")) throw new SandboxError("BAD_PATH", "Paths cannot contain NUL bytes");
  const parts = path.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.some((p) => p === ".."))
    throw new SandboxError("BAD_PATH", `Path "${path}" leaves the workspace`);
  const clean = parts.join("/");
  if (!clean && !allowRoot) throw new SandboxError("BAD_PATH", "A file path is required");
  if (clean.length > 4096) throw new SandboxError("BAD_PATH", "Path too long");
  return clean;
}

export function parentOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "" : path.slice(0, i);
}

/** Each directory's direct children ("" for the root), as paths sorted in code-unit order. */
export type ChildIndex = Map<string, string[]>;

/** Entries indexed between two yields to the event loop. */
const INDEX_SLICE = 20_000;

/**
 * Built once per manifest object and kept beside it (manifests are never changed once built, and
 * providers cache them): a listing is then a lookup and a bisection, not a scan of every path.
 * Built in slices that yield to the event loop, so a 300,000-entry manifest does not stall other
 * requests; concurrent listings share one build.
 */
const childIndexes = new WeakMap<Manifest, Promise<ChildIndex>>();

export function childIndexOf(manifest: Manifest): Promise<ChildIndex> {
  let index = childIndexes.get(manifest);
  if (!index) {
    index = buildChildIndex(manifest);
    childIndexes.set(manifest, index);
  }
  return index;
}

async function buildChildIndex(manifest: Manifest): Promise<ChildIndex> {
  const index: ChildIndex = new Map();
  let n = 0;
  for (const path of manifest.keys()) {
    const dir = parentOf(path);
    const children = index.get(dir);
    if (children) children.push(path);
    else index.set(dir, [path]);
    if (++n % INDEX_SLICE === 0) await yieldToEventLoop();
  }
  // Paths arrive in the order the tree was walked (a directory's on-disk hash order): sorting one
  // directory of 150,000 at once would hold the event loop for ~300 ms, so it is sorted in slices.
  let sorted = 0;
  for (const [dir, children] of index) {
    index.set(dir, await sortInSlices(children));
    sorted += children.length;
    if (sorted >= INDEX_SLICE) {
      sorted = 0;
      await yieldToEventLoop();
    }
  }
  return index;
}

/** Rough bytes a manifest holds in memory (entries, their keys and hashes, the child index). */
export function manifestWeight(manifest: Manifest): number {
  let bytes = 0;
  for (const path of manifest.keys()) bytes += path.length + ENTRY_OVERHEAD;
  return bytes;
}
/**
 * An entry object with its hash string, its Map slot and its place in the child index: measured at
 * ~195 bytes besides the path in Bun (150,000 parsed entries), rounded up.
 */
const ENTRY_OVERHEAD = 220;

export function toEntry(path: string, entry: ManifestEntry): FileEntry {
  return {
    path,
    type: entry.t === "f" ? "file" : entry.t === "d" ? "dir" : "symlink",
    size: entry.s,
    mode: entry.m,
    ...(entry.l !== undefined ? { target: entry.l } : {}),
  };
}

/** A directory's entries in a manifest, sorted by path: all of them, or one page. */
export async function listSnapshot(manifest: Manifest, dir: string, page?: ListPage): Promise<FileEntry[]> {
  const clean = cleanPath(dir, { allowRoot: true });
  if (clean && manifest.get(clean)?.t !== "d") throw new SandboxError("NOT_FOUND", `No directory "${clean}"`);
  const children = (await childIndexOf(manifest)).get(clean) ?? [];
  const { after, before } = page ?? {};
  let start = after === undefined ? 0 : firstIndexWhere(children, (path) => path > after);
  let end = before === undefined ? children.length : firstIndexWhere(children, (path) => path >= before);
  if (page?.fromEnd) start = Math.max(start, end - page.limit);
  else if (page) end = Math.min(end, start + page.limit);
  const out: FileEntry[] = [];
  for (let i = start; i < end; i++) out.push(toEntry(children[i]!, manifest.get(children[i]!)!));
  return out;
}

/** The first index of a sorted array where `pred` holds (it holds for every later one), by bisection. */
export function firstIndexWhere<T>(items: readonly T[], pred: (item: T) => boolean): number {
  let lo = 0;
  let hi = items.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (pred(items[mid]!)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** A file of a snapshot, following symlinks that stay inside the snapshot. */
export function findSnapshotFile(manifest: Manifest, path: string): ManifestEntry | null {
  let current = cleanPath(path);
  for (let hops = 0; hops < 40; hops++) {
    const entry = manifest.get(current);
    if (!entry) return null;
    if (entry.t === "f") return entry;
    if (entry.t !== "l") return null;
    const target = entry.l!;
    if (target.startsWith("/")) return null; // absolute targets point at the sandbox's root, not the snapshot
    const next = resolveRelative(parentOf(current), target);
    if (next === null) return null;
    current = next;
  }
  return null;
}

/** `dir` joined with a relative link target, ".." resolved; null when it climbs above the root. */
function resolveRelative(dir: string, target: string): string | null {
  const parts = dir ? dir.split("/") : [];
  for (const part of target.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (parts.length === 0) return null;
      parts.pop();
    } else parts.push(part);
  }
  return parts.length > 0 ? parts.join("/") : null;
}
