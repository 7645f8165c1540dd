// Killing the process mid-snapshot leaves the store consistent: every committed snapshot is whole,
// nothing half-written is visible, and the next process starts cleanly on the same directory.
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { LocalProvider } from "../../sandbox/local/provider.ts";

const FIXTURE = resolve(import.meta.dir, "../fixtures/snapshot-loop.ts");

for (const workspaces of ["overlay", "copy"] as const) {
  test(`kill -9 during snapshots (${workspaces}): the store stays consistent`, async () => {
    const dir = mkdtempSync(join(tmpdir(), `occ-crash-${workspaces}-`));
    const committed: string[] = [];
    try {
      for (let round = 0; round < 4; round++) {
        const child = Bun.spawn([process.execPath, FIXTURE, dir, workspaces], {
          stdout: "pipe",
          stderr: "pipe",
        });
        const reader = child.stdout.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        // Let a few snapshots commit, then kill at a moment that varies from round to round.
        while ((buffer.match(/snapshot /g) ?? []).length < 2) {
          const { value, done } = await reader.read();
          if (done) throw new Error(`loop exited early: ${await new Response(child.stderr).text()}`);
          buffer += decoder.decode(value);
        }
        await Bun.sleep(5 + round * 37);
        child.kill("SIGKILL");
        await child.exited;
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value);
        }
        committed.push(...[...buffer.matchAll(/snapshot (\S+)\n/g)].map((m) => m[1]!));
      }

      const provider = await new LocalProvider({ dir, workspaces }).init();
      try {
        expect(await provider.fsck()).toEqual([]);
        // Every snapshot a process reported as committed survived, whole.
        for (const id of committed) {
          const info = await provider.getSnapshot(id);
          expect(info.fileCount).toBe(1500);
        }
        const last = committed.at(-1)!;
        const sbx = await provider.fork(last);
        const files = await provider.listFiles({ sandbox: sbx }, "d0");
        expect(files.length).toBe(50);
        await provider.destroy(sbx);
      } finally {
        await provider.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
}
