// Runs a host program that writes into a workspace for a user (git cloning a repository) under a
// command's write cap, since what it writes comes from outside (a hostile git server can stream
// gigabytes): RLIMIT_FSIZE through the same launcher as commands stops any one file at the cap (a
// fetched pack is one file), and the write meter watching the target directory stops the program,
// its whole process group, once everything it wrote passes the cap (or the disk's free floor).
import { spawn } from "node:child_process";
import { fsizeBlocks, LAUNCHER } from "./exec.ts";
import { measureWrites, type WriteCap, type WriteMeasure, watchWrites } from "./write-meter.ts";

/**
 * How a write refused by the file-size limit (EFBIG) shows in what a program printed: strerror's text
 * (git's index-pack and checkout), curl's write error (git's dumb HTTP fetch), a helper's death by
 * SIGXFSZ (signal 25). git cleans up after a failed clone, so the written bytes may be gone by then.
 */
const FILE_LIMIT = /File too large|Failure writing output to destination|\bsignal 25\b/i;

export interface CappedResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The end of what it printed on stderr (at most `maxStderrBytes`). */
  stderr: string;
  timedOut: boolean;
  /** Set when it wrote past the cap (or the disk ran low): stopped, or stopped itself on the file limit. */
  over: WriteMeasure | null;
}

export async function runCapped(
  argv: string[],
  options: {
    env: Record<string, string>;
    /** The directory it writes into, measured while it runs. */
    target: string;
    cap: WriteCap;
    timeoutMs: number;
    maxStderrBytes?: number;
  },
): Promise<CappedResult> {
  const { target, cap, timeoutMs, maxStderrBytes = 64 * 1024 } = options;
  const since = Date.now();
  // SIGXFSZ ignored (inherited through exec): a write past the file-size limit fails with EFBIG, which
  // the program reports ("File too large") however deep the helper that hit it, instead of dying of a
  // signal its parent may not name.
  const child = spawn("/bin/sh", ["-c", `trap '' XFSZ; ${LAUNCHER}`, "occ-launcher", ...argv], {
    env: { ...options.env, OCC_CGROUP_PROCS: "", OCC_FSIZE_BLOCKS: String(fsizeBlocks(cap)) },
    stdio: ["ignore", "ignore", "pipe"],
    // Its own process group: git's helpers (remote-https, index-pack) are stopped with it.
    detached: true,
  });
  let stderr = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (text: string) => {
    stderr = (stderr + text).slice(-maxStderrBytes);
  });
  let over: WriteMeasure | null = null;
  let timedOut = false;
  const kill = () => {
    try {
      if (child.pid) process.kill(-child.pid, "SIGKILL");
    } catch {}
  };
  const timer = setTimeout(() => {
    timedOut = true;
    kill();
  }, timeoutMs);
  const watcher = watchWrites(target, since, cap, (measure) => {
    over ??= measure;
    kill();
  });
  const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>(
    (resolve) => {
      child.on("close", (code, signal) => resolve({ code, signal }));
      child.on("error", () => resolve({ code: 127, signal: null }));
    },
  );
  clearTimeout(timer);
  kill(); // stragglers of the group
  await watcher.stop();
  // Measured once more with everything stopped; a program the file-size limit stopped wrote up to the
  // cap even if it cleaned up after itself.
  if (!over) {
    const final = await measureWrites(target, since, cap);
    if (final.over) over = final;
    else if (signal === "SIGXFSZ" || FILE_LIMIT.test(stderr))
      over = { ...final, over: true, reason: "bytes" };
  }
  return { code, signal, stderr, timedOut, over };
}
