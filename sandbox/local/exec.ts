// Runs one command with streamed output and limits: wall time, output bytes, processes, memory and
// what it may write into its workspace. Whatever the command leaves behind (background children, a
// fork bomb) is killed when it ends.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import type { ExecOptions, ExecResult, KillReason } from "../provider.ts";
import type { Cgroups, RunGroup } from "./cgroups.ts";
import { bwrapArgv, DEFAULT_PATH } from "./isolate.ts";
import { measureWrites, type WriteCap, type WriteMeasure, watchWrites } from "./write-meter.ts";

export interface Limits {
  timeoutMs: number;
  maxOutputBytes: number;
  maxProcesses: number;
  maxMemoryBytes: number;
  /**
   * Bytes a command may leave in its workspace, counted as snapshots charge them (new or changed
   * files at what they hold on disk, plus each entry's overhead; see write-meter.ts), and the
   * largest file it may write.
   */
  maxWriteBytes: number;
  /** Files and directories a command may create or change in its workspace. */
  maxWriteEntries: number;
  /** Entries one snapshot may hold (its listing is kept whole every so often, and read into memory). */
  maxSnapshotEntries?: number;
  /** The server's free-disk floor: a command that takes the disk below it is stopped. */
  minFreeDiskBytes?: number;
}

export interface Runner {
  bwrap: string | null;
  cgroups: Cgroups | null;
  limits: Limits;
}

// Sets RLIMIT_FSIZE (soft and hard: the command cannot raise it), joins the run's cgroups (its own
// pid, inherited by every descendant), then becomes the command. `ulimit -f` counts 512-byte blocks
// (POSIX); a failure means a lower hard limit is already in force, which is fine.
export const LAUNCHER =
  'ulimit -f "$OCC_FSIZE_BLOCKS" 2>/dev/null; for f in $OCC_CGROUP_PROCS; do echo $$ > "$f" || exit 126; done; unset OCC_CGROUP_PROCS OCC_FSIZE_BLOCKS; exec "$@"';

/** Where the command's writes land (an overlay's upper directory, or a copy workspace's root). */
export interface WriteTarget {
  dir: string;
  /** Entries the workspace's next snapshot may still add (below the command's own cap). */
  maxEntries?: number;
}

/** The cap a command (or a clone) writing into a workspace runs under. */
export function writeCap(limits: Limits, maxBytes = limits.maxWriteBytes, maxEntries = Infinity): WriteCap {
  return {
    maxBytes: Math.max(0, Math.min(maxBytes, limits.maxWriteBytes)),
    maxEntries: Math.max(0, Math.min(maxEntries, limits.maxWriteEntries)),
    ...(limits.minFreeDiskBytes !== undefined ? { minFreeBytes: limits.minFreeDiskBytes } : {}),
  };
}

/** RLIMIT_FSIZE in 512-byte blocks: one byte over the cap, so a file cut short by it still measures over. */
export const fsizeBlocks = (cap: WriteCap): number => Math.ceil((cap.maxBytes + 1) / 512);

export async function execIn(
  runner: Runner,
  workspace: string,
  options: ExecOptions,
  writes?: WriteTarget,
): Promise<ExecResult> {
  const limits = runner.limits;
  const timeoutMs = Math.min(options.timeoutMs ?? limits.timeoutMs, limits.timeoutMs);
  const maxOutput = Math.min(options.maxOutputBytes ?? limits.maxOutputBytes, limits.maxOutputBytes);
  const cap = writeCap(limits, options.maxWriteBytes, writes?.maxEntries);
  const env = {
    PATH: DEFAULT_PATH,
    HOME: "/tmp",
    LANG: "C.UTF-8",
    TERM: "dumb",
    ...options.env,
  };

  let group: RunGroup | null = null;
  if (runner.cgroups) {
    group = await runner.cgroups.create(`run-${randomBytes(6).toString("hex")}`, limits);
  }

  let argv: string[];
  let cwd: string;
  if (runner.bwrap) {
    argv = bwrapArgv(runner.bwrap, {
      workspace,
      command: options.command,
      env,
      network: options.network ?? false,
      binds: options.binds,
    });
    cwd = "/";
  } else {
    // No isolation: the command runs on the host, in the workspace directory.
    argv = ["/bin/sh", "-c", options.command];
    cwd = workspace;
  }
  argv = ["/bin/sh", "-c", LAUNCHER, "occ-launcher", ...argv];
  const launcherEnv = {
    OCC_CGROUP_PROCS: group?.procFiles.join(" ") ?? "",
    OCC_FSIZE_BLOCKS: String(fsizeBlocks(cap)),
  };

  const started = performance.now();
  const writesSince = Date.now();
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd,
    env: runner.bwrap ? launcherEnv : { ...env, PWD: workspace, ...launcherEnv },
    stdio: ["ignore", "pipe", "pipe"],
    // Its own process group, so the whole tree can be signalled at once.
    detached: true,
  });

  let killedBy: KillReason | null = null;
  let outputBytes = 0;
  const kill = (reason: KillReason) => {
    killedBy ??= reason;
    try {
      if (child.pid) process.kill(-child.pid, "SIGKILL");
    } catch {}
  };

  const onData = (stream: "stdout" | "stderr") => (data: Buffer) => {
    if (killedBy === "output") return;
    const room = maxOutput - outputBytes;
    const chunk = data.byteLength > room ? data.subarray(0, Math.max(0, room)) : data;
    outputBytes += chunk.byteLength;
    if (chunk.byteLength > 0) options.onOutput?.({ stream, data: new Uint8Array(chunk) });
    if (data.byteLength > room) kill("output");
  };
  child.stdout!.on("data", onData("stdout"));
  child.stderr!.on("data", onData("stderr"));

  const timer = setTimeout(() => kill("timeout"), timeoutMs);
  // Many files, each under the file size limit, are caught by measuring the workspace as it runs.
  const watcher = writes ? watchWrites(writes.dir, writesSince, cap, () => kill("disk")) : null;
  const onAbort = () => kill("abort");
  options.signal?.addEventListener("abort", onAbort, { once: true });
  if (options.signal?.aborted) kill("abort");

  const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>(
    (resolve) => {
      child.on("close", (code, signal) => resolve({ code, signal }));
      child.on("error", () => resolve({ code: 127, signal: null }));
    },
  );
  clearTimeout(timer);
  options.signal?.removeEventListener("abort", onAbort);

  // Leftovers: the process group (no isolation) and the cgroup (all of it) are killed.
  try {
    if (child.pid) process.kill(-child.pid, "SIGKILL");
  } catch {}
  await watcher?.stop();
  let cpuMs: number | null = null;
  if (group) {
    cpuMs = await group.cpuMs();
    if (
      !killedBy &&
      (await group.memoryExceeded()) &&
      (code === 137 || signal !== null || (code ?? 0) !== 0)
    ) {
      killedBy = "memory";
    }
    await group.dispose();
  }
  // Measured once more with everything stopped: a command that wrote too much between two looks (or
  // was stopped for it) ends as "disk", whatever else happened, and the caller discards its writes.
  let written: WriteMeasure | null = null;
  if (writes) {
    written = await measureWrites(writes.dir, writesSince, cap);
    if (written.over) killedBy = "disk";
  }
  return {
    exitCode: killedBy ? null : code,
    signal: signal ?? (killedBy ? "SIGKILL" : null),
    killedBy,
    durationMs: Math.round(performance.now() - started),
    cpuMs,
    outputBytes,
    ...(written ? { writtenBytes: written.bytes } : {}),
  };
}
