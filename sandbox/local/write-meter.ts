// Measures what a running command has written into its workspace, so it can be stopped at its write
// cap before the store takes the data. "Written" means every regular file whose inode changed since the
// command started (ctime: set by the kernel on every write, rename, link or chmod, and not settable by
// the command), each inode counted once at its full size. The directory measured is where the
// workspace's own writes land: an overlay's upper directory (only what changed) or a copy's root.
//
// The walk never follows symlinks (lstat; directories are entered only when lstat says so) and is
// bounded: it stops as soon as the answer is "over", and after MAX_WALKED entries in all.
import type { Dir } from "node:fs";
import * as fs from "node:fs/promises";
import { join } from "node:path";

/** Entries a single walk looks at before it gives up and reports "over" (a tree no cap should allow). */
const MAX_WALKED = 1_000_000;
/**
 * Kernel file times come from a coarse clock that lags the wall clock by up to one tick (4-10 ms).
 * Kept small: files written just before the command (a fresh copy workspace) would count as its own.
 */
const CLOCK_SLACK_MS = 20;
const BATCH = 64;

export interface WriteCap {
  /** Bytes of new or changed file content the command may leave. */
  maxBytes: number;
  /** Files, directories and links the command may create or change. */
  maxEntries: number;
}

export interface WriteMeasure {
  /** Bytes counted (when `over`, at least the cap: the walk stopped there). */
  bytes: number;
  entries: number;
  over: boolean;
  /** Why it is over, for the run's error. */
  reason: "bytes" | "entries" | "walk" | null;
}

/** Whatever was changed under `dir` since `sinceMs`, up to the point where the cap is passed. */
export async function measureWrites(dir: string, sinceMs: number, cap: WriteCap): Promise<WriteMeasure> {
  const since = sinceMs - CLOCK_SLACK_MS;
  const seen = new Set<number>();
  const result: WriteMeasure = { bytes: 0, entries: 0, over: false, reason: null };
  const stop = (reason: WriteMeasure["reason"]) => {
    result.over = true;
    result.reason = reason;
    return result;
  };
  let walked = 0;
  const pending = [dir];
  // lstat in batches: one directory's entries are looked at concurrently, a batch at a time.
  const batch: string[] = [];
  const flush = async (): Promise<WriteMeasure | null> => {
    const stats = await Promise.all(batch.map((path) => fs.lstat(path).catch(() => null)));
    for (let i = 0; i < stats.length; i++) {
      const stat = stats[i];
      if (!stat) continue; // removed meanwhile
      // A directory is entered even when unchanged: a new file deep inside changes only its parent.
      if (stat.isDirectory()) pending.push(batch[i]!);
      if (stat.ctimeMs < since) continue;
      if (++result.entries > cap.maxEntries) return stop("entries");
      if (!stat.isFile() || seen.has(stat.ino)) continue;
      seen.add(stat.ino);
      result.bytes += stat.size;
      if (result.bytes > cap.maxBytes) return stop("bytes");
    }
    batch.length = 0;
    return null;
  };
  while (pending.length > 0) {
    const current = pending.pop()!;
    let handle: Dir;
    try {
      handle = await fs.opendir(current);
    } catch {
      continue; // removed meanwhile, or not a directory any more
    }
    try {
      for await (const dirent of handle) {
        if (++walked > MAX_WALKED) return stop("walk");
        batch.push(join(current, dirent.name));
        if (batch.length >= BATCH) {
          const over = await flush();
          if (over) return over;
        }
      }
    } finally {
      await handle.close().catch(() => {});
    }
    const over = await flush();
    if (over) return over;
  }
  return result;
}

/**
 * Measures every `intervalMs` while a command runs and calls `onOver` once when the cap is passed.
 * A walk that takes long spaces the next one out (at least 4x its own time), so metering a big
 * workspace costs at most about a fifth of one core.
 */
export function watchWrites(
  dir: string,
  sinceMs: number,
  cap: WriteCap,
  onOver: (measure: WriteMeasure) => void,
  intervalMs = 250,
): { stop(): Promise<void> } {
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let walking: Promise<void> = Promise.resolve();
  const tick = () => {
    walking = (async () => {
      const started = performance.now();
      const measure = await measureWrites(dir, sinceMs, cap).catch(() => null);
      if (stopped) return;
      if (measure?.over) {
        stopped = true;
        onOver(measure);
        return;
      }
      const took = performance.now() - started;
      timer = setTimeout(tick, Math.max(intervalMs, took * 4));
    })();
  };
  timer = setTimeout(tick, intervalMs);
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await walking;
    },
  };
}
