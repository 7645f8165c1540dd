// The run trail against a real libSQL file: batches, the cap and its marker, and the join of the
// stored part with what is still in memory (no gap, no duplicate) while batches commit.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Database, openDatabase } from "../../db/client.ts";
import { applyMigrations } from "../../db/migrate.ts";
import { runs, sessions, users } from "../../db/schema.ts";
import { RunTrail, storedTrail } from "../../resolvers/run-trail.ts";
import type { RunStreamEvent } from "../../resolvers/runner.ts";

let dir: string;
let database: Database;
const statements: string[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "occ-trail-"));
  database = openDatabase({ url: `file:${dir}/t.db`, onQuery: (sql) => statements.push(sql) });
  await applyMigrations(database.db);
  await database.db.insert(users).values({ id: "usr_1", email: "a@example.com", passwordHash: "x" });
  await database.db.insert(sessions).values({ id: "ses_1", title: "t", ownerId: "usr_1", provider: "local" });
  await database.db.insert(runs).values(
    ["run_a", "run_b", "run_c", "run_d", "run_e"].map((id) => ({
      id,
      sessionId: "ses_1",
      branchId: "brn_1",
      kind: "EXEC" as const,
      status: "RUNNING" as const,
      input: "true",
    })),
  );
});
afterAll(() => {
  database.close();
  rmSync(dir, { recursive: true, force: true });
});

const all = async (runId: string, through?: number) => {
  const out: RunStreamEvent[] = [];
  for await (const e of storedTrail(database.db, runId, through)) out.push(e);
  return out;
};
const chunk = (seq: number, text = `line ${seq}\n`): RunStreamEvent => ({
  type: "chunk",
  seq,
  stream: "stdout",
  text,
});
const noError = (error: unknown) => {
  throw error;
};

test("events are stored in batches and read back as they were, agent events with their run id", async () => {
  const trail = new RunTrail(database.db, "run_a", { maxEvents: 10_000, maxBytes: 1e9 }, noError);
  const before = statements.filter((s) => s.startsWith('insert into "run_events"')).length;
  const events: RunStreamEvent[] = [];
  for (let seq = 1; seq <= 450; seq++)
    events.push(
      seq % 3 === 0
        ? {
            type: "agent",
            seq,
            runId: "run_a",
            event: {
              type: "tool.finished",
              callId: `c${seq}`,
              tool: "bash",
              input: { command: "ls" },
              output: "x",
            },
          }
        : chunk(seq),
    );
  events.push({ type: "end", seq: 451, status: "SUCCEEDED", exitCode: 0, snapshotId: "snp_1" });
  for (const e of events) expect(trail.record(e)).toBeNull();
  await trail.flush();
  const inserts = statements.filter((s) => s.startsWith('insert into "run_events"')).length - before;
  expect(inserts).toBeGreaterThanOrEqual(3); // 451 events, at most 200 per batch
  expect(inserts).toBeLessThan(10);
  expect(await all("run_a")).toEqual(events);
  expect(trail.snapshot()).toEqual({ committedThrough: 451, events: [] });
});

test("a trail over its event cap is cut by a marker with the next seq; the end is still stored", async () => {
  const trail = new RunTrail(database.db, "run_b", { maxEvents: 5, maxBytes: 1e9 }, noError);
  const streamed: RunStreamEvent[] = [];
  let seq = 0;
  // What the runner does: a marker takes the event's seq, the event the next one.
  const emit = (make: (seq: number) => RunStreamEvent) => {
    const event = make(++seq);
    const marker = trail.record(event);
    if (marker) {
      streamed.push(marker);
      event.seq = ++seq;
    }
    streamed.push(event);
  };
  for (let i = 0; i < 12; i++) emit((s) => chunk(s));
  emit((s) => ({ type: "end", seq: s, status: "SUCCEEDED", exitCode: 0, snapshotId: null }));
  await trail.flush();
  const stored = await all("run_b");
  expect(stored.map((e) => e.type)).toEqual([
    "chunk",
    "chunk",
    "chunk",
    "chunk",
    "chunk",
    "truncated",
    "end",
  ]);
  expect(stored[5]).toEqual({
    type: "truncated",
    seq: 6,
    storedEvents: 5,
    storedBytes: stored[5]!.type === "truncated" ? stored[5]!.storedBytes : -1,
    maxEvents: 5,
    maxBytes: 1e9,
  });
  // What was stored is exactly what was streamed, up to the marker, then the end.
  expect(stored.slice(0, 6)).toEqual(streamed.slice(0, 6));
  expect(stored.at(-1)).toEqual(streamed.at(-1)!);
  expect(streamed.map((e) => e.seq)).toEqual(streamed.map((_, i) => i + 1));
});

test("the byte cap cuts too", async () => {
  const trail = new RunTrail(database.db, "run_c", { maxEvents: 1000, maxBytes: 1000 }, noError);
  let marker = null;
  let seq = 0;
  while (!marker && seq < 100) marker = trail.record(chunk(++seq, "x".repeat(300)));
  expect(marker?.seq).toBe(4); // three chunks of ~330 bytes fit in 1000, the fourth does not
  await trail.flush();
  expect((await all("run_c")).map((e) => e.type)).toEqual(["chunk", "chunk", "chunk", "truncated"]);
});

test("stored part + in-memory part join without gap or duplicate while batches commit", async () => {
  const trail = new RunTrail(database.db, "run_d", { maxEvents: 100_000, maxBytes: 1e9 }, noError);
  let seq = 0;
  const checks: Promise<void>[] = [];
  for (let round = 0; round < 40; round++) {
    for (let i = 0; i < 37; i++) trail.record(chunk(++seq));
    if (round % 3 === 0) void trail.flush();
    // A late subscriber: what memory holds now plus what the database holds up to its mark.
    const { committedThrough, events } = trail.snapshot();
    const upTo = seq;
    checks.push(
      all("run_d", committedThrough).then((stored) => {
        const seqs = [...stored, ...events].map((e) => e.seq);
        expect(seqs).toEqual(Array.from({ length: upTo }, (_, i) => i + 1));
      }),
    );
    await Bun.sleep(1);
  }
  await Promise.all(checks);
  await trail.flush();
  expect((await all("run_d")).length).toBe(seq);
});

test("a failed write keeps the batch in memory and the next flush stores it", async () => {
  const errors: unknown[] = [];
  const broken = openDatabase({ url: `file:${dir}/missing-tables.db` });
  const trail = new RunTrail(broken.db, "run_e", { maxEvents: 100, maxBytes: 1e9 }, (e) => errors.push(e));
  trail.record(chunk(1));
  trail.record(chunk(2));
  await trail.flush();
  expect(errors.length).toBe(1);
  expect(trail.snapshot()).toEqual({ committedThrough: 0, events: [chunk(1), chunk(2)] });
  await applyMigrations(broken.db);
  await broken.client.execute("PRAGMA foreign_keys = OFF"); // no run row in this database
  await trail.flush();
  expect(trail.snapshot()).toEqual({ committedThrough: 2, events: [] });
  broken.close();
});
