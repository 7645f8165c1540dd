// The worker pool behind diffs: real worker threads; jobs that overrun their deadline are killed and
// their worker replaced, a full queue refuses at once, close refuses everything.
import { afterEach, expect, test } from "bun:test";
import { createDiffPool, WorkerPool, WorkerPoolError } from "../../sandbox/diff-pool.ts";
import type { BusyJob } from "../fixtures/busy-worker.ts";

const BUSY_WORKER = new URL("../fixtures/busy-worker.ts", import.meta.url);
const pools: { close(): Promise<void> }[] = [];

function busyPool(options: { workers?: number; maxQueue?: number; deadlineMs?: number } = {}) {
  const pool = new WorkerPool<BusyJob, string>(BUSY_WORKER, {
    workers: options.workers ?? 1,
    maxQueue: options.maxQueue ?? 4,
    deadlineMs: options.deadlineMs ?? 10_000,
  });
  pools.push(pool);
  return pool;
}

afterEach(async () => {
  for (const pool of pools.splice(0)) await pool.close();
});

const codeOf = (promise: Promise<unknown>) =>
  promise.then(
    () => "resolved",
    (error) => (error instanceof WorkerPoolError ? error.code : `other: ${error}`),
  );

test("a job that overruns its deadline is killed; the pool replaces the worker and keeps working", async () => {
  const pool = busyPool({ deadlineMs: 300 });
  expect(await pool.run({ kind: "echo", value: "before" })).toBe("before");
  expect(await codeOf(pool.run({ kind: "forever" }))).toBe("DEADLINE");
  expect(pool.stats.replaced).toBe(1);
  // The next job gets a fresh worker.
  expect(await pool.run({ kind: "echo", value: "after" })).toBe("after");
  expect(pool.stats.workers).toBe(1);
});

test("jobs queue behind busy workers; past the queue's bound they are refused at once (BUSY)", async () => {
  const pool = busyPool({ workers: 1, maxQueue: 2 });
  const running = pool.run({ kind: "spin", ms: 300 });
  const queued = [pool.run({ kind: "echo", value: "q1" }), pool.run({ kind: "echo", value: "q2" })];
  expect(pool.stats).toMatchObject({ busy: 1, queued: 2 });
  expect(await codeOf(pool.run({ kind: "echo", value: "refused" }))).toBe("BUSY");
  expect(await running).toBe("spun");
  expect(await Promise.all(queued)).toEqual(["q1", "q2"]);
  // With room again, jobs are accepted.
  expect(await pool.run({ kind: "echo", value: "again" })).toBe("again");
});

test("jobs run in parallel on several workers", async () => {
  const pool = busyPool({ workers: 2 });
  const both = [pool.run({ kind: "spin", ms: 200 }), pool.run({ kind: "spin", ms: 200 })];
  expect(pool.stats).toMatchObject({ workers: 2, busy: 2, queued: 0 });
  expect(await Promise.all(both)).toEqual(["spun", "spun"]);
});

test("a job that throws fails alone (FAILED); one that takes its worker down fails (CRASHED) and is replaced", async () => {
  const pool = busyPool();
  expect(await codeOf(pool.run({ kind: "throw" }))).toBe("FAILED");
  expect(pool.stats.replaced).toBe(0);
  expect(await codeOf(pool.run({ kind: "exit" }))).toBe("CRASHED");
  expect(pool.stats.replaced).toBe(1);
  expect(await pool.run({ kind: "echo", value: "alive" })).toBe("alive");
});

test("close refuses running, queued and later jobs (CLOSED) and stops every worker", async () => {
  const pool = busyPool({ workers: 1 });
  const running = codeOf(pool.run({ kind: "forever" }));
  const queued = codeOf(pool.run({ kind: "echo", value: "never" }));
  await pool.close();
  expect(await running).toBe("CLOSED");
  expect(await queued).toBe("CLOSED");
  expect(await codeOf(pool.run({ kind: "echo", value: "late" }))).toBe("CLOSED");
  expect(pool.stats.workers).toBe(0);
});

test("the diff pool computes patches on its workers, and gives up on costly ones (null)", async () => {
  const pool = createDiffPool({ workers: 1 });
  pools.push(pool);
  const patch = await pool.run({
    oldName: "a/f.txt",
    newName: "b/f.txt",
    before: "one\ntwo\nthree\n",
    after: "one\n2\nthree\n",
    maxEditLength: 100,
    timeoutMs: 1000,
  });
  expect(patch).toContain("-two\n+2\n");
  const lines = (tag: string) => Array.from({ length: 3000 }, (_, i) => `${tag} ${i}\n`).join("");
  const costly = await pool.run({
    oldName: "a/f.txt",
    newName: "b/f.txt",
    before: lines("old"),
    after: lines("new"),
    maxEditLength: 50,
    timeoutMs: 1000,
  });
  expect(costly).toBeNull();
});
