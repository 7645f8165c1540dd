// Free space on the disks the platform writes to (the database's and the sandbox store's), for the
// free-disk floor. statfs is cheap, but writes can be frequent: one answer serves for a second.
import * as fs from "node:fs/promises";

export interface DiskSpace {
  /** Bytes available to this process on the fullest of the watched disks; null when unknown. */
  freeBytes(): Promise<number | null>;
}

export function diskSpace(dirs: readonly string[], cacheMs = 1000): DiskSpace {
  let cached: { at: number; value: Promise<number | null> } | null = null;
  const measure = async (): Promise<number | null> => {
    const free = await Promise.all(
      dirs.map((dir) =>
        fs.statfs(dir).then(
          (s) => s.bavail * s.bsize,
          () => null,
        ),
      ),
    );
    const known = free.filter((f): f is number => f !== null);
    return known.length > 0 ? Math.min(...known) : null;
  };
  return {
    freeBytes() {
      const now = Date.now();
      if (!cached || now - cached.at > cacheMs) cached = { at: now, value: measure() };
      return cached.value;
    },
  };
}
