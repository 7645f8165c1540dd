// A manifest: the complete listing of a snapshot's tree (path -> entry). File contents live in the
// object store under their SHA-256; a manifest entry holds the hash, size, mode and type.
import { type FileEntry, SandboxError } from "./provider.ts";

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

/** The direct children of `dir` ("" for the root) in a manifest, sorted by path. */
export function childrenOf(manifest: Manifest, dir: string): [string, ManifestEntry][] {
  const out: [string, ManifestEntry][] = [];
  for (const [path, entry] of manifest) if (parentOf(path) === dir) out.push([path, entry]);
  return out.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

export function toEntry(path: string, entry: ManifestEntry): FileEntry {
  return {
    path,
    type: entry.t === "f" ? "file" : entry.t === "d" ? "dir" : "symlink",
    size: entry.s,
    mode: entry.m,
    ...(entry.l !== undefined ? { target: entry.l } : {}),
  };
}

export function listSnapshot(manifest: Manifest, dir: string): FileEntry[] {
  const clean = cleanPath(dir, { allowRoot: true });
  if (clean && manifest.get(clean)?.t !== "d") throw new SandboxError("NOT_FOUND", `No directory "${clean}"`);
  return childrenOf(manifest, clean).map(([path, entry]) => toEntry(path, entry));
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
