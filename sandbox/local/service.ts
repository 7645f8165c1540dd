// Long-lived processes in a local sandbox (a branch's live agent server): the same bubblewrap
// isolation, cgroup limits and file-size cap as a command, with no wall-clock limit, death with the
// platform (--die-with-parent), and a freezer, so a snapshot can pause them while it captures files.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import type { SandboxService, ServiceOptions } from "../provider.ts";
import { SandboxError } from "../provider.ts";
import type { RunGroup } from "./cgroups.ts";
import { LAUNCHER, type Runner } from "./exec.ts";
import { bwrapArgv, DEFAULT_PATH } from "./isolate.ts";

export interface LocalService extends SandboxService {
  /** Pauses every process of the service (until `thaw`). */
  freeze(): Promise<void>;
  thaw(): Promise<void>;
}

export async function startServiceIn(
  runner: Runner,
  workspace: string,
  options: ServiceOptions,
): Promise<LocalService> {
  if (!runner.bwrap)
    throw new SandboxError("ISOLATION_UNAVAILABLE", "Long-lived sandbox processes need bubblewrap");
  const { limits } = runner;
  const group: RunGroup | null = runner.cgroups
    ? await runner.cgroups.create(`svc-${randomBytes(6).toString("hex")}`, limits, { freezer: true })
    : null;
  const env = { PATH: DEFAULT_PATH, HOME: "/tmp", LANG: "C.UTF-8", TERM: "dumb", ...options.env };
  const argv = [
    "/bin/sh",
    "-c",
    LAUNCHER,
    "occ-launcher",
    ...bwrapArgv(runner.bwrap, {
      workspace,
      command: options.command,
      env,
      network: false,
      binds: options.binds,
    }),
  ];
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd: "/",
    env: {
      OCC_CGROUP_PROCS: group?.procFiles.join(" ") ?? "",
      OCC_FSIZE_BLOCKS: String(Math.ceil((limits.maxWriteBytes + 1) / 512)),
    },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  child.stdout!.on("data", (data: Buffer) =>
    options.onOutput?.({ stream: "stdout", data: new Uint8Array(data) }),
  );
  child.stderr!.on("data", (data: Buffer) =>
    options.onOutput?.({ stream: "stderr", data: new Uint8Array(data) }),
  );
  const pid = child.pid;
  if (!pid) {
    await group?.dispose();
    throw new SandboxError("FAILED", "The sandbox service could not be started");
  }
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
    child.on("close", (code, signal) => resolve({ code, signal }));
    child.on("error", () => resolve({ code: 127, signal: null }));
  }).then(async (result) => {
    // Whatever the service left behind (its cgroup) goes with it.
    await group?.dispose();
    return result;
  });
  // Without a freezer, the processes are paused one by one (SIGSTOP cannot be caught or ignored).
  let stopped: number[] = [];
  let frozenByGroup = false;

  return {
    pid,
    exited,
    async stop() {
      await group?.thaw();
      for (const p of stopped) signal(p, "SIGCONT");
      try {
        process.kill(-pid, "SIGKILL");
      } catch {}
      await group?.dispose();
      await exited;
    },
    async memoryBytes() {
      // Resident memory of its processes (the cgroup's figure would also count page cache).
      let total = 0;
      for (const p of [pid, ...(await descendants(pid))]) total += await rssBytes(p);
      return total || null;
    },
    async freeze() {
      frozenByGroup = (await group?.freeze()) ?? false;
      if (frozenByGroup) return;
      // Twice: a process forked while the first pass ran is caught by the second.
      for (let pass = 0; pass < 2; pass++) {
        for (const p of await descendants(pid)) {
          if (!stopped.includes(p) && signal(p, "SIGSTOP")) stopped.push(p);
        }
      }
    },
    async thaw() {
      if (frozenByGroup) {
        frozenByGroup = false;
        await group?.thaw();
      }
      for (const p of stopped) signal(p, "SIGCONT");
      stopped = [];
    },
  };
}

function signal(pid: number, name: NodeJS.Signals): boolean {
  try {
    process.kill(pid, name);
    return true;
  } catch {
    return false;
  }
}

/** Every process below `root` (through /proc's parent links). */
async function descendants(root: number): Promise<number[]> {
  const children = new Map<number, number[]>();
  for (const name of await readdir("/proc").catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await readFile(`/proc/${name}/stat`, "utf8").catch(() => "");
    // The command name may hold spaces and parentheses: fields start after the last ")".
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (!Number.isFinite(ppid)) continue;
    const list = children.get(ppid) ?? [];
    list.push(Number(name));
    children.set(ppid, list);
  }
  const found: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    for (const child of children.get(queue.pop()!) ?? []) {
      found.push(child);
      queue.push(child);
    }
  }
  return found;
}

async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
  const kb = /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1];
  return kb ? Number(kb) * 1024 : 0;
}
