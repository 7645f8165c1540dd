// What a command in a local sandbox cannot do. Needs bubblewrap (CI installs it); the suite says so
// and skips where it is missing (test/utils/isolation.ts) rather than passing vacuously.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalProvider } from "../../sandbox/local/provider.ts";
import { isolationUnavailable, skip } from "../utils/isolation.ts";

const dir = mkdtempSync(join(tmpdir(), "occ-iso-"));
const provider = new LocalProvider({
  dir,
  limits: {
    maxProcesses: 64,
    maxMemoryBytes: 256 * 1024 * 1024,
    maxOutputBytes: 64 * 1024,
    timeoutMs: 20_000,
  },
});
await provider.init();
const isolated = provider.status.isolation === "bubblewrap";

afterAll(async () => {
  await provider.close();
  rmSync(dir, { recursive: true, force: true });
});

async function run(
  sandbox: string,
  command: string,
  extra: Parameters<LocalProvider["exec"]>[1] = { command: "" },
) {
  let out = "";
  const result = await provider.exec(sandbox, {
    ...extra,
    command,
    onOutput: (c) => {
      out += new TextDecoder().decode(c.data);
    },
  });
  return { ...result, out };
}

const countProcesses = (pattern: string) => {
  try {
    return execFileSync("pgrep", ["-f", pattern]).toString().trim().split("\n").filter(Boolean).length;
  } catch {
    return 0;
  }
};

skip.describeUnlessIsolated("local sandbox isolation (bubblewrap)", () => {
  let sbx: string;
  beforeAll(async () => {
    sbx = await provider.create({ kind: "files", files: { "in.txt": "inside\n" } });
  });

  test("writes outside the workspace fail and change nothing on the host", async () => {
    const canary = join(tmpdir(), `occ-canary-${process.pid}`);
    writeFileSync(canary, "untouched");
    const r = await run(
      sbx,
      `echo pwned > ${canary}; echo pwned > /usr/pwned; echo pwned > /etc/pwned; echo pwned > ${dir}/pwned; ` +
        `echo ok > /workspace/out.txt; cat ${canary} 2>&1; echo done`,
    );
    expect(r.out).toContain("done");
    expect(readFileSync(canary, "utf8")).toBe("untouched");
    for (const path of ["/usr/pwned", "/etc/pwned", join(dir, "pwned")]) expect(existsSync(path)).toBe(false);
    expect(new TextDecoder().decode((await provider.readFile({ sandbox: sbx }, "out.txt"))!)).toBe("ok\n");
    rmSync(canary);
  });

  test("host secrets and the platform's data are not visible", async () => {
    const r = await run(sbx, `cat /etc/shadow 2>&1; ls ${dir} 2>&1; ls /root 2>&1; ls /work 2>&1; echo end`);
    expect(r.out).not.toContain("root:");
    expect(r.out).toContain("end");
    expect(r.out).toMatch(/No such file or directory/);
  });

  test("a 127.0.0.1 service of the host cannot be reached", async () => {
    let connections = 0;
    const listener = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open() {
          connections++;
        },
        data() {},
      },
    });
    try {
      const script = `require("net").connect(${listener.port}, "127.0.0.1").on("connect", () => { console.log("CONNECTED"); process.exit(0) }).on("error", (e) => { console.log("REFUSED", e.code); process.exit(3) })`;
      const r = await run(sbx, `node -e '${script}'`);
      expect(r.out).toContain("REFUSED");
      expect(r.exitCode).toBe(3);
      expect(connections).toBe(0);
    } finally {
      listener.stop(true);
    }
  });

  test("a fork bomb is contained and nothing of it survives the run", async () => {
    const r = await run(sbx, "bomb_occ() { bomb_occ | bomb_occ & }; bomb_occ; sleep 2; echo survived", {
      command: "",
      timeoutMs: 15_000,
    });
    expect(r.killedBy === null || r.killedBy === "timeout").toBe(true);
    await Bun.sleep(200);
    expect(countProcesses("bomb_occ")).toBe(0);
    // The sandbox still works afterwards.
    expect((await run(sbx, "echo alive")).out).toBe("alive\n");
  });

  test("a `sleep 1000 &` child is stopped when the command ends", async () => {
    const r = await run(sbx, "sleep 1000.123 & echo started");
    expect(r.out).toBe("started\n");
    expect(r.durationMs).toBeLessThan(10_000);
    await Bun.sleep(200);
    expect(countProcesses("sleep 1000.123")).toBe(0);
  });

  test("wall time: a timeout kills the whole tree", async () => {
    const r = await run(sbx, "sleep 1000.456 & sleep 1000.456; echo never", { command: "", timeoutMs: 500 });
    expect(r.killedBy).toBe("timeout");
    expect(r.exitCode).toBeNull();
    expect(r.out).not.toContain("never");
    expect(r.durationMs).toBeLessThan(5_000);
    await Bun.sleep(200);
    expect(countProcesses("sleep 1000.456")).toBe(0);
  });

  test("output beyond the cap stops the run", async () => {
    const r = await run(sbx, "yes occ-output-flood");
    expect(r.killedBy).toBe("output");
    expect(r.outputBytes).toBeLessThanOrEqual(64 * 1024);
    expect(r.out.length).toBe(r.outputBytes);
  });

  test("memory beyond the cap stops the run", async () => {
    if (!provider.status.warnings.every((w) => !w.includes("cgroups"))) return; // reported by the status test below
    const r = await run(sbx, `node -e 'const a = []; for (;;) a.push(Buffer.alloc(16 << 20, 1))'`);
    expect(r.killedBy).toBe("memory");
  });

  test("CPU time is measured", async () => {
    const r = await run(sbx, "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done");
    expect(r.cpuMs).not.toBeNull();
    expect(r.cpuMs!).toBeGreaterThan(10);
  });

  test("cgroup limits are available on this machine (CI installs and runs as root)", () => {
    expect(provider.status.warnings).toEqual([]);
  });
});

test("the tests' isolation gate agrees with the provider (what it skips, the server cannot isolate)", () => {
  expect(isolationUnavailable === null).toBe(isolated);
});

test("without bubblewrap a provider that requires isolation refuses to start", async () => {
  const d = mkdtempSync(join(tmpdir(), "occ-noiso-"));
  try {
    const strict = new LocalProvider({ dir: d, requireIsolation: true });
    if (isolated) {
      await strict.init();
      expect(strict.status.isolation).toBe("bubblewrap");
      await strict.close();
    } else {
      await expect(strict.init()).rejects.toMatchObject({ code: "ISOLATION_UNAVAILABLE" });
    }
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});
