// What a snapshot costs to keep: the bytes of file content it added over its parent. Content the
// parent already held (a renamed or copied file, a mode change) is free; each new content counts once.
// The store keeps whole files, so a one-byte append to a big file adds the whole new file: charged
// as such, because that is what the disk holds.
import type { Manifest, ManifestDelta } from "./manifest.ts";

export function addedBytes(parent: Manifest | null, delta: ManifestDelta): number {
  const held = new Set<string>();
  for (const entry of parent?.values() ?? []) if (entry.h) held.add(entry.h);
  let total = 0;
  for (const entry of Object.values(delta)) {
    if (entry?.t !== "f" || !entry.h || held.has(entry.h)) continue;
    held.add(entry.h);
    total += entry.s;
  }
  return total;
}
