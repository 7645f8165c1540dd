// The conversation reader on databases shaped like opencode's (session, message, part with JSON data),
// written in WAL mode and copied while open, the way a snapshot catches them: which session it reads,
// the bounds (latest messages, text, tool input and output), and what it refuses to read.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import { CONVERSATION_LIMITS, readConversation } from "../../agent/conversation.ts";

const dir = mkdtempSync(join(tmpdir(), "occ-conv-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SCHEMA = [
  "CREATE TABLE session (id text PRIMARY KEY, parent_id text, title text NOT NULL, time_created integer NOT NULL, time_updated integer NOT NULL)",
  "CREATE TABLE message (id text PRIMARY KEY, session_id text NOT NULL, time_created integer NOT NULL, time_updated integer NOT NULL, data text NOT NULL)",
  "CREATE TABLE part (id text PRIMARY KEY, message_id text NOT NULL, session_id text NOT NULL, time_created integer NOT NULL, time_updated integer NOT NULL, data text NOT NULL)",
];

interface Msg {
  id: string;
  session: string;
  at: number;
  data: Record<string, unknown>;
  parts: Record<string, unknown>[];
}

let n = 0;
/** Writes a database the way opencode leaves one: WAL mode, the latest writes still in the -wal file. */
async function makeDb(
  sessions: { id: string; parent?: string; title: string; updated: number }[],
  messages: Msg[],
  extra: string[] = [],
) {
  const path = join(dir, `db${++n}.db`);
  const client = createClient({ url: `file:${path}` });
  await client.execute("PRAGMA journal_mode = WAL");
  await client.execute("PRAGMA wal_autocheckpoint = 0");
  for (const sql of [...SCHEMA, ...extra]) await client.execute(sql);
  for (const s of sessions)
    await client.execute({
      sql: "INSERT INTO session VALUES (?, ?, ?, ?, ?)",
      args: [s.id, s.parent ?? null, s.title, s.updated, s.updated],
    });
  let p = 0;
  for (const m of messages) {
    await client.execute({
      sql: "INSERT INTO message VALUES (?, ?, ?, ?, ?)",
      args: [m.id, m.session, m.at, m.at, JSON.stringify(m.data)],
    });
    for (const part of m.parts)
      await client.execute({
        sql: "INSERT INTO part VALUES (?, ?, ?, ?, ?, ?)",
        args: [
          `prt_${String(++p).padStart(5, "0")}`,
          m.id,
          m.session,
          m.at + p,
          m.at + p,
          JSON.stringify(part),
        ],
      });
  }
  // Copied while the connection is open: the rows are in the write-ahead log, not the main file yet.
  const files = { db: readFileSync(path), wal: readFileSync(`${path}-wal`) };
  client.close();
  return files;
}

const user = (id: string, session: string, at: number, text: string): Msg => ({
  id,
  session,
  at,
  data: { role: "user", time: { created: at } },
  parts: [{ type: "text", text }],
});

test("reads the platform's session: prompts, answers, tool calls with input and output, tokens", async () => {
  const files = await makeDb(
    [
      { id: "ses_main", title: "opencode.cloud", updated: 10 },
      { id: "ses_other", title: "newer, not ours", updated: 99 },
    ],
    [
      user("msg_1", "ses_main", 1000, "please write hello"),
      {
        id: "msg_2",
        session: "ses_main",
        at: 2000,
        data: {
          role: "assistant",
          time: { created: 2000, completed: 2500 },
          tokens: { input: 100, output: 20, reasoning: 1, cache: { read: 3, write: 4 } },
          cost: 0.25,
          modelID: "fake-model",
          finish: "tool-calls",
        },
        parts: [
          { type: "step-start" },
          {
            type: "tool",
            tool: "bash",
            callID: "call_1",
            state: {
              status: "completed",
              input: { command: "cat hello.txt", description: "show" },
              output: "hello\n",
              title: "cat hello.txt",
              time: { start: 2100, end: 2200 },
            },
          },
          { type: "step-finish", tokens: {} },
        ],
      },
      {
        id: "msg_3",
        session: "ses_main",
        at: 3000,
        data: {
          role: "assistant",
          time: { created: 3000 },
          finish: "stop",
          error: { name: "X", data: { message: "boom" } },
        },
        parts: [
          { type: "text", text: "All " },
          { type: "text", text: "(added by opencode)", synthetic: true },
          { type: "text", text: "done." },
        ],
      },
      user("msg_9", "ses_other", 5000, "someone else's"),
    ],
  );
  const c = await readConversation({ ...files, sessionId: "ses_main" });
  expect(c).toEqual({
    sessionId: "ses_main",
    title: "opencode.cloud",
    totalMessages: 3,
    messages: [
      {
        id: "msg_1",
        role: "USER",
        text: "please write hello",
        textTruncated: false,
        toolCalls: [],
        createdAt: 1000,
        completedAt: null,
        tokens: null,
        cost: null,
        model: null,
        finish: null,
        error: null,
      },
      {
        id: "msg_2",
        role: "ASSISTANT",
        text: "",
        textTruncated: false,
        toolCalls: [
          {
            callId: "call_1",
            tool: "bash",
            status: "completed",
            input: { command: "cat hello.txt", description: "show" },
            inputTruncated: false,
            title: "cat hello.txt",
            output: "hello\n",
            outputTruncated: false,
            error: null,
            startedAt: 2100,
            finishedAt: 2200,
          },
        ],
        createdAt: 2000,
        completedAt: 2500,
        tokens: { input: 100, output: 20, reasoning: 1, cacheRead: 3, cacheWrite: 4 },
        cost: 0.25,
        model: "fake-model",
        finish: "tool-calls",
        error: null,
      },
      expect.objectContaining({ id: "msg_3", text: "All done.", finish: "stop", error: "boom" }),
    ],
  });
  // Everything was still in the write-ahead log: without it there is nothing.
  expect(await readConversation({ db: files.db, wal: null, sessionId: "ses_main" })).toBeNull();
  // Without a session id (or a stale one) it reads the latest top-level session.
  expect((await readConversation({ ...files, sessionId: null }))!.sessionId).toBe("ses_other");
  expect((await readConversation({ ...files, sessionId: "ses_gone" }))!.sessionId).toBe("ses_other");
});

test("bounded: the latest messages only, long text and output cut, a huge input left out", async () => {
  const L = CONVERSATION_LIMITS;
  const many: Msg[] = [];
  for (let i = 0; i < L.messages + 25; i++)
    many.push(user(`msg_${String(i).padStart(4, "0")}`, "ses_a", 1000 + i, `m${i}`));
  many.push({
    id: "msg_big",
    session: "ses_a",
    at: 999_999,
    data: { role: "assistant", time: { created: 999_999 } },
    parts: [
      { type: "text", text: "y".repeat(L.textChars + 500) },
      {
        type: "tool",
        tool: "write",
        callID: "call_w",
        state: {
          status: "error",
          input: { filePath: "/workspace/big.txt", content: "z".repeat(L.inputChars + 10) },
          title: "big.txt",
          error: "e".repeat(L.outputChars + 10),
        },
      },
      {
        type: "tool",
        tool: "bash",
        callID: "call_b",
        state: { status: "completed", input: {}, output: "o".repeat(L.outputChars * 3) },
      },
    ],
  });
  const c = (await readConversation({
    ...(await makeDb([{ id: "ses_a", title: "t", updated: 1 }], many)),
    sessionId: "ses_a",
  }))!;
  expect(c.totalMessages).toBe(L.messages + 26);
  expect(c.messages.length).toBe(L.messages);
  expect(c.messages[0]!.text).toBe("m26");
  const big = c.messages.at(-1)!;
  expect(big.text.length).toBe(L.textChars);
  expect(big.textTruncated).toBe(true);
  expect(big.toolCalls[0]).toMatchObject({
    input: null,
    inputTruncated: true,
    title: "big.txt",
    status: "error",
    outputTruncated: true,
  });
  expect(big.toolCalls[0]!.error!.length).toBe(L.outputChars);
  expect(big.toolCalls[1]).toMatchObject({ input: {}, inputTruncated: false, outputTruncated: true });
  expect(big.toolCalls[1]!.output!.length).toBe(L.outputChars);
});

test("what it does not read: no session, a view in place of a table, bytes that are not a database", async () => {
  expect(await readConversation({ ...(await makeDb([], [])), sessionId: null })).toBeNull();
  // A user can put anything in their workspace: a view could run any query; it is not read.
  const files = await makeDb(
    [{ id: "ses_v", title: "t", updated: 1 }],
    [],
    [
      "ALTER TABLE part RENAME TO part_real",
      "CREATE VIEW part AS WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT * FROM r",
    ],
  );
  expect(await readConversation({ ...files, sessionId: "ses_v" })).toBeNull();
  await expect(
    readConversation({ db: new TextEncoder().encode("not a database at all"), wal: null, sessionId: null }),
  ).rejects.toThrow();
});
