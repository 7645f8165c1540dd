// An embedded database must not deadlock itself: a statement issued while this process holds an
// interactive transaction open (awaiting something between its statements) waits for it instead of
// blocking the event loop in SQLite's busy handler and failing with SQLITE_BUSY (db/transaction-gate.ts).
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { openDatabase } from "../../db/client.ts";

const dir = mkdtempSync(join(tmpdir(), "tx-gate-"));
const database = openDatabase({ url: `file:${join(dir, "gate.db")}` });
afterAll(() => {
  database.close();
  rmSync(dir, { recursive: true, force: true });
});

test("a write issued during another's open transaction waits for it and succeeds", async () => {
  const { db } = database;
  await db.run(sql`PRAGMA journal_mode = WAL`);
  await db.run(sql`CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)`);
  const order: string[] = [];
  const slow = db.transaction(async (tx) => {
    await tx.run(sql`INSERT INTO t (v) VALUES ('in-transaction')`);
    await new Promise((resolve) => setTimeout(resolve, 300)); // the lock is held across this await
    order.push("transaction");
  });
  await new Promise((resolve) => setTimeout(resolve, 20));
  const write = db.run(sql`INSERT INTO t (v) VALUES ('outside')`).then(() => order.push("outside"));
  // Without the gate the outside write sleeps in SQLite's busy handler (the transaction cannot move
  // meanwhile) and fails with SQLITE_BUSY after the busy timeout.
  await Promise.all([slow, write]);
  expect(order).toEqual(["transaction", "outside"]);
  const rows = await db.all<{ v: string }>(sql`SELECT v FROM t ORDER BY id`);
  expect(rows.map((r) => r.v)).toEqual(["in-transaction", "outside"]);
});

test("a failed transaction releases the gate (rolled back, later statements run)", async () => {
  const { db } = database;
  await expect(
    db.transaction(async (tx) => {
      await tx.run(sql`INSERT INTO t (v) VALUES ('rolled back')`);
      throw new Error("boom");
    }),
  ).rejects.toThrow("boom");
  await db.run(sql`INSERT INTO t (v) VALUES ('after')`);
  const rows = await db.all<{ v: string }>(sql`SELECT v FROM t WHERE v IN ('rolled back', 'after')`);
  expect(rows.map((r) => r.v)).toEqual(["after"]);
});
