// Per-run control groups: a process cap (stops fork bombs), a memory cap, CPU accounting, and a way
// to kill everything a run started. cgroup v1 (separate pids/memory/cpuacct hierarchies) or v2.
import * as fs from "node:fs/promises";
import { join } from "node:path";

const ROOT = "/sys/fs/cgroup";

export interface RunGroup {
  /** Files a launcher writes its own pid into before exec'ing the command. */
  procFiles: string[];
  /** CPU time used so far, in ms (null when not accounted). */
  cpuMs(): Promise<number | null>;
  /** Whether the memory cap was hit. */
  memoryExceeded(): Promise<boolean>;
  /** Kills every process left in the group, then removes it. */
  dispose(): Promise<void>;
  /**
   * Pauses every process of the group (cgroup freezer) until `thaw`; false when this group cannot be
   * frozen (created without `freezer`, or no freezer here).
   */
  freeze(): Promise<boolean>;
  thaw(): Promise<void>;
}

export interface GroupOptions {
  /** Also make the group freezable (long-lived services, paused while their files are captured). */
  freezer?: boolean;
}

export interface Cgroups {
  version: 1 | 2;
  create(
    name: string,
    limits: { maxProcesses: number; maxMemoryBytes: number },
    options?: GroupOptions,
  ): Promise<RunGroup>;
  /** Removes this process's parent group (runs must be over). */
  close(): Promise<void>;
}

const V1_CONTROLLERS = ["pids", "memory", "cpuacct"];

const write = (path: string, value: string) => fs.writeFile(path, value);
const read = (path: string) => fs.readFile(path, "utf8").catch(() => "");

async function killAll(procsFile: string): Promise<void> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const pids = (await read(procsFile)).split("\n").filter(Boolean).map(Number);
    if (pids.length === 0) return;
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {}
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Writes `state` to a freezer file and waits (up to 2 s) until `done` says it took. */
async function settleFreezer(file: string, value: string, done: () => Promise<boolean>): Promise<boolean> {
  try {
    await write(file, value);
  } catch {
    return false;
  }
  for (let attempt = 0; attempt < 400; attempt++) {
    if (await done()) return true;
    await new Promise((r) => setTimeout(r, 5));
  }
  return false;
}

async function removeDir(dir: string): Promise<void> {
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      await fs.rmdir(dir);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

function v1(parent: string): Cgroups {
  const dirs = (name: string) => ({
    pids: join(ROOT, "pids", parent, name),
    memory: join(ROOT, "memory", parent, name),
    cpuacct: join(ROOT, "cpuacct", parent, name),
    freezer: join(ROOT, "freezer", parent, name),
  });
  return {
    version: 1,
    async create(name, limits, options = {}) {
      const d = dirs(name);
      await fs.mkdir(d.pids, { recursive: true });
      await write(join(d.pids, "pids.max"), String(limits.maxProcesses));
      await fs.mkdir(d.memory, { recursive: true });
      await write(join(d.memory, "memory.limit_in_bytes"), String(limits.maxMemoryBytes));
      // Swap would let a run exceed its cap slowly instead of being stopped.
      await write(join(d.memory, "memory.memsw.limit_in_bytes"), String(limits.maxMemoryBytes)).catch(
        () => {},
      );
      const hasCpu = await fs.mkdir(d.cpuacct, { recursive: true }).then(
        () => true,
        () => false,
      );
      const hasFreezer =
        options.freezer === true &&
        (await fs.mkdir(d.freezer, { recursive: true }).then(
          () => true,
          () => false,
        ));
      const freezerState = join(d.freezer, "freezer.state");
      return {
        procFiles: [
          join(d.pids, "cgroup.procs"),
          join(d.memory, "cgroup.procs"),
          ...(hasCpu ? [join(d.cpuacct, "cgroup.procs")] : []),
          ...(hasFreezer ? [join(d.freezer, "cgroup.procs")] : []),
        ],
        async freeze() {
          if (!hasFreezer) return false;
          return settleFreezer(
            freezerState,
            "FROZEN",
            async () => (await read(freezerState)).trim() === "FROZEN",
          );
        },
        async thaw() {
          if (hasFreezer)
            await settleFreezer(
              freezerState,
              "THAWED",
              async () => (await read(freezerState)).trim() === "THAWED",
            );
        },
        async cpuMs() {
          const ns = Number((await read(join(d.cpuacct, "cpuacct.usage"))).trim());
          return Number.isFinite(ns) && hasCpu ? Math.round(ns / 1e6) : null;
        },
        async memoryExceeded() {
          const oom = /oom_kill (\d+)/.exec(await read(join(d.memory, "memory.oom_control")));
          const counters = await Promise.all(
            ["memory.failcnt", "memory.memsw.failcnt"].map(
              async (f) => Number((await read(join(d.memory, f))).trim()) || 0,
            ),
          );
          return (oom ? Number(oom[1]) > 0 : false) || counters.some((n) => n > 0);
        },
        async dispose() {
          // Frozen processes cannot die: thaw first.
          if (hasFreezer) await write(freezerState, "THAWED").catch(() => {});
          await killAll(join(d.pids, "cgroup.procs"));
          for (const dir of [d.pids, d.memory, d.cpuacct, ...(hasFreezer ? [d.freezer] : [])])
            await removeDir(dir);
        },
      };
    },
    async close() {
      for (const controller of [...V1_CONTROLLERS, "freezer"])
        await removeDir(join(ROOT, controller, parent));
    },
  };
}

function v2(parent: string): Cgroups {
  return {
    version: 2,
    async create(name, limits) {
      // Every v2 group can be frozen (cgroup.freeze), so the option needs nothing here.
      const dir = join(ROOT, parent, name);
      await fs.mkdir(dir, { recursive: true });
      await write(join(dir, "pids.max"), String(limits.maxProcesses));
      await write(join(dir, "memory.max"), String(limits.maxMemoryBytes));
      await write(join(dir, "memory.swap.max"), "0").catch(() => {});
      return {
        procFiles: [join(dir, "cgroup.procs")],
        async cpuMs() {
          const m = /usage_usec (\d+)/.exec(await read(join(dir, "cpu.stat")));
          return m ? Math.round(Number(m[1]) / 1000) : null;
        },
        async memoryExceeded() {
          const m = /oom_kill (\d+)/.exec(await read(join(dir, "memory.events")));
          return m ? Number(m[1]) > 0 : false;
        },
        freeze: () =>
          settleFreezer(join(dir, "cgroup.freeze"), "1", async () =>
            /^frozen 1$/m.test(await read(join(dir, "cgroup.events"))),
          ),
        async thaw() {
          await settleFreezer(join(dir, "cgroup.freeze"), "0", async () =>
            /^frozen 0$/m.test(await read(join(dir, "cgroup.events"))),
          );
        },
        async dispose() {
          await write(join(dir, "cgroup.kill"), "1").catch(() => killAll(join(dir, "cgroup.procs")));
          await removeDir(dir);
        },
      };
    },
    async close() {
      await removeDir(join(ROOT, parent));
    },
  };
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
};

/** Groups left by processes that died without closing (kill -9): their runs are killed, groups removed. */
async function sweepStale(prefix: string): Promise<void> {
  const bases = (await fs.stat(join(ROOT, "cgroup.controllers")).then(
    () => true,
    () => false,
  ))
    ? [ROOT]
    : [...V1_CONTROLLERS, "freezer"].map((c) => join(ROOT, c));
  for (const base of bases) {
    for (const name of await fs.readdir(base).catch(() => [] as string[])) {
      const m = new RegExp(`^${prefix}-(\\d+)$`).exec(name);
      if (!m || alive(Number(m[1]))) continue;
      const parent = join(base, name);
      for (const child of await fs.readdir(parent, { withFileTypes: true }).catch(() => [])) {
        if (!child.isDirectory()) continue;
        await killAll(join(parent, child.name, "cgroup.procs"));
        await removeDir(join(parent, child.name));
      }
      await removeDir(parent);
    }
  }
}

/** The cgroup flavour this process can create groups in, or null (limits then fall back to rlimits). */
export async function detectCgroups(prefix: string): Promise<Cgroups | null> {
  await sweepStale(prefix).catch(() => {});
  const parent = `${prefix}-${process.pid}`;
  const unified = await fs.stat(join(ROOT, "cgroup.controllers")).then(
    () => true,
    () => false,
  );
  const candidates = unified ? [v2(parent)] : [v1(parent)];
  for (const cgroups of candidates) {
    try {
      if (cgroups.version === 2) {
        // Controllers must be enabled for children of the parent group.
        await fs.mkdir(join(ROOT, parent), { recursive: true });
        await write(join(ROOT, "cgroup.subtree_control"), "+pids +memory +cpu").catch(() => {});
        await write(join(ROOT, parent, "cgroup.subtree_control"), "+pids +memory +cpu");
      }
      const probe = await cgroups.create(`probe-${process.pid}`, {
        maxProcesses: 10,
        maxMemoryBytes: 64 << 20,
      });
      await probe.dispose();
      return cgroups;
    } catch {}
  }
  return null;
}
