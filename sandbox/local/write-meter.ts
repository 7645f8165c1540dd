// Measures what a running command has written into its workspace, so it can be stopped at its write
// cap before the store takes the data. "Written" means every entry whose inode changed since the
// command started (ctime: set by the kernel on every write, rename, link or chmod, and not settable by
// the command). It is counted as a snapshot would charge it (sandbox/added-bytes.ts): each entry its
// overhead, path and symlink target, a directory or symlink its blocks, and each regular file's inode once at
// what it holds on disk: its size in whole blocks, or its allocated blocks when more (space reserved
// past the end with fallocate --keep-size, which neither st_size nor RLIMIT_FSIZE sees). The directory
// measured is where the workspace's own writes land: an overlay's upper directory (only what changed)
// or a copy's root.
//
// The walk never follows symlinks, even ones swapped in while it runs (beneath.ts walkDirs: every
// directory is opened from its parent's descriptor with O_NOFOLLOW), and is bounded: it stops as soon
// as the answer is "over", and after MAX_WALKED entries in all. While a command runs, the free space
// of the disk is watched too: crossing the server's free-disk floor stops the command.
import * as fs from "node:fs/promises";
import { entryBytes } from "../added-bytes.ts";
import { fileBytes } from "./allocation.ts";
import { isGone, walkDirs } from "./beneath.ts";

/** Entries a single walk looks at before it gives up and reports "over" (a tree no cap should allow). */
const MAX_WALKED = 1_000_000;
/**
 * Kernel file times come from a coarse clock that lags the wall clock by up to one tick (4-10 ms).
 * Kept small: files written just before the command (a fresh copy workspace) would count as its own.
 */
const CLOCK_SLACK_MS = 20;

export interface WriteCap {
  /** Bytes (content and entries, as snapshots charge them) the command may leave. */
  maxBytes: number;
  /** Files, directories and links the command may create or change. */
  maxEntries: number;
  /** While it runs: the command is stopped when the disk's free space falls below this. */
  minFreeBytes?: number;
}

export interface WriteMeasure {
  /** Bytes counted (when `over`, at least the cap: the walk stopped there). */
  bytes: number;
  entries: number;
  over: boolean;
  /** Why it is over, for the run's error ("disk": the server's free-disk floor was crossed). */
  reason: "bytes" | "entries" | "walk" | "disk" | null;
}

/** Thrown inside the walk to stop it as soon as the answer is known. */
class Over extends Error {}

/** Whatever was changed under `dir` since `sinceMs`, up to the point where the cap is passed. */
export async function measureWrites(dir: string, sinceMs: number, cap: WriteCap): Promise<WriteMeasure> {
  const since = BigInt(Math.floor((sinceMs - CLOCK_SLACK_MS) * 1e6));
  const seen = new Set<bigint>();
  const result: WriteMeasure = { bytes: 0, entries: 0, over: false, reason: null };
  let walked = 0;
  const stop = (reason: WriteMeasure["reason"]) => {
    result.over = true;
    result.reason = reason;
    throw new Over();
  };
  try {
    // The command is still running and may swap directories for symlinks: walkDirs opens every
    // directory from its parent's descriptor without following links, so the walk stays beneath `dir`.
    await walkDirs(
      dir,
      async ({ entries }) => {
        for (const { path, stat } of entries) {
          if (++walked > MAX_WALKED) stop("walk");
          // Directories are entered by walkDirs even when unchanged (a new file deep inside changes
          // only its parent); they are counted as entries when they changed.
          if (stat.ctimeNs < since) continue;
          if (++result.entries > cap.maxEntries) stop("entries");
          // A symlink's st_size is the length of its target: no readlink needed. Directories and
          // symlinks count the blocks they hold (a long target takes one).
          result.bytes += entryBytes(path) + (stat.isSymbolicLink() ? Number(stat.size) : 0);
          if (!stat.isFile()) result.bytes += Number(stat.blocks) * 512;
          else if (!seen.has(stat.ino)) {
            seen.add(stat.ino);
            result.bytes += fileBytes(stat);
          }
          if (result.bytes > cap.maxBytes) stop("bytes");
        }
      },
      { parallel: 1 },
    );
  } catch (error) {
    if (error instanceof Over) return result;
    // The workspace itself went away (a reset or destroy racing the meter): nothing to count.
    if (isGone(error)) return result;
    throw error;
  }
  return result;
}

/** Over when the disk holding `dir` has less than `minFreeBytes` free (null: fine, or unknown). */
async function belowFloor(dir: string, minFreeBytes: number | undefined): Promise<WriteMeasure | null> {
  if (minFreeBytes === undefined) return null;
  const free = await fs.statfs(dir).then(
    (s) => s.bavail * s.bsize,
    () => null,
  );
  if (free === null || free >= minFreeBytes) return null;
  return { bytes: 0, entries: 0, over: true, reason: "disk" };
}

/**
 * Measures every `intervalMs` while a command runs and calls `onOver` once when the cap (or the
 * free-disk floor) is passed. A walk that takes long spaces the next one out (at least 4x its own
 * time), so metering a big workspace costs at most about a fifth of one core; the floor is checked
 * every `intervalMs` regardless (one statfs), since one fallocate can take gigabytes at once.
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
  let nextWalk = 0;
  const tick = () => {
    walking = (async () => {
      let measure = await belowFloor(dir, cap.minFreeBytes);
      if (!measure && performance.now() >= nextWalk) {
        const started = performance.now();
        measure = await measureWrites(dir, sinceMs, cap).catch(() => null);
        nextWalk = started + (performance.now() - started) * 5;
      }
      if (stopped) return;
      if (measure?.over) {
        stopped = true;
        onOver(measure);
        return;
      }
      timer = setTimeout(tick, intervalMs);
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
