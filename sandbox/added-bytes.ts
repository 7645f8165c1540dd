// What a snapshot costs to keep, in bytes: storage quotas sum it, and the write meter counts a running
// command the same way. One model, so that nothing the disk keeps is free:
// - content: each new content (one the parent did not hold; each distinct content once) costs its size
//   rounded up to whole 4 KB blocks, as a filesystem stores it. The store keeps whole files, so a
//   one-byte append to a big file adds the whole new file, charged as such.
// - entries: each new or changed entry (file, directory, symlink) costs ENTRY_BYTES for its inode,
//   directory entry and record in the snapshot's listing, plus the bytes of its path and symlink target
//   (the listing holds both). A directory also holds a block of its own, and so does a symlink whose
//   target does not fit in its inode. So empty files, directories and symlinks are not free, and
//   entries need no quota of their own.
// - allocation past the content that a file keeps (extended-attribute blocks, preallocated space the
//   filesystem would not give back) is charged as is, by whoever froze it (extraBytes);
// - so is a snapshot's listing when the store keeps it whole (listingBytes: every so often along a
//   chain, even for a run that changed nothing), since that copy is on disk too.
// Deletions cost nothing. Content a parent already held (a renamed or copied file) costs only its entry.
import type { Manifest, ManifestDelta, ManifestEntry } from "./manifest.ts";

/** What one entry costs besides its content: an inode, a directory entry, a record in the listing. */
export const ENTRY_BYTES = 256;
/** The allocation unit content is charged in. */
export const BLOCK_BYTES = 4096;

/** Symlink targets up to this long live in the inode (ext4's "fast" symlinks); longer ones take a block. */
export const INLINE_TARGET_BYTES = 60;
/** What one entry of a listing stored whole takes besides its path and target (type, mode, size, hash). */
const LISTING_ENTRY_BYTES = 128;

export const roundToBlocks = (bytes: number): number => Math.ceil(bytes / BLOCK_BYTES) * BLOCK_BYTES;

/** What entry `path` costs besides its content: the overhead, its path and its link target. */
export function entryBytes(path: string, target = ""): number {
  return ENTRY_BYTES + Buffer.byteLength(path) + Buffer.byteLength(target);
}

function costOf(path: string, entry: ManifestEntry): number {
  const target = entry.l ?? "";
  const own = entry.t === "d" || Buffer.byteLength(target) > INLINE_TARGET_BYTES ? BLOCK_BYTES : 0;
  return entryBytes(path, target) + own;
}

/** About what a manifest takes when its listing is stored whole. */
export function listingBytes(manifest: Manifest): number {
  let total = 0;
  for (const [path, entry] of manifest)
    total += LISTING_ENTRY_BYTES + Buffer.byteLength(path) + Buffer.byteLength(entry.l ?? "");
  return total;
}

export function addedBytes(parent: Manifest | null, delta: ManifestDelta, extraBytes = 0): number {
  const held = new Set<string>();
  for (const entry of parent?.values() ?? []) if (entry.h) held.add(entry.h);
  let total = extraBytes;
  for (const [path, entry] of Object.entries(delta)) {
    if (!entry) continue;
    total += costOf(path, entry);
    if (entry.t !== "f" || !entry.h || held.has(entry.h)) continue;
    held.add(entry.h);
    total += roundToBlocks(entry.s);
  }
  return total;
}
