// Measures what a running command has written into its workspace, so it can be stopped at its write
// cap before the store takes the data. "Written" means every regular file whose inode changed since the
// command started (ctime: set by the kernel on every write, rename, link or chmod, and not settable by
// the command), each inode counted once at its full size. The directory measured is where the
// workspace's own writes land: an overlay's upper directory (only what changed) or a copy's root.
//
// The walk never follows symlinks, even ones swapped in while it runs (beneath.ts walkDirs: every
// directory is opened from its parent's descriptor with O_NOFOLLOW), and is bounded: it stops as soon
// as the answer is "over", and after MAX_WALKED entries in all.
import { isGone, walkDirs } from "./beneath.ts";

/** Entries a single walk looks at before it gives up and reports "over" (a tree no cap should allow). */
const MAX_WALKED = 1_000_000;
/**
 * Kernel file times come from a coarse clock that lags the wall clock by up to one tick (4-10 ms).
 * Kept small: files written just before the command (a fresh copy workspace) would count as its own.
 */
const CLOCK_SLACK_MS = 20;

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
        for (const { stat } of entries) {
          if (++walked > MAX_WALKED) stop("walk");
          // Directories are entered by walkDirs even when unchanged (a new file deep inside changes
          // only its parent); they are counted as entries when they changed.
          if (stat.ctimeNs < since) continue;
          if (++result.entries > cap.maxEntries) stop("entries");
          if (!stat.isFile() || seen.has(stat.ino)) continue;
          seen.add(stat.ino);
          result.bytes += Number(stat.size);
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
