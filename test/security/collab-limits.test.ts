// Collaboration rooms cannot be grown without bound: update, document, file, chat message and socket
// limits, against the real server with stock y-websocket clients (and hand-made frames where a stock
// client would not send what an attacker can). Small limits keep the test quick.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { statSync } from "node:fs";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import * as Y from "yjs";
import { connectRoom, eventually, type RoomClient } from "../utils/collab.ts";
import { deniedReason, rawCollab, updateFrame } from "../utils/collab-frames.ts";
import { startTestServer, type TestServer } from "../utils/server.ts";

const CHAT_BYTES = 256 * 1024;
const FILE_BYTES = 64 * 1024;

let server: TestServer;
let owner: { token: string; email: string };
let editor: { token: string; email: string };
const clients: RoomClient[] = [];

beforeAll(async () => {
  server = await startTestServer({
    COLLAB_UNLOAD_GRACE_MS: "50",
    COLLAB_FILE_FLUSH_MS: "50",
    COLLAB_MAX_CHAT_BYTES: String(CHAT_BYTES),
    COLLAB_MAX_CHAT_MESSAGES: "5",
    COLLAB_MAX_CHAT_MESSAGE_BYTES: "8kb",
    COLLAB_MAX_FILE_BYTES: String(FILE_BYTES),
    COLLAB_MAX_SOCKETS_PER_USER: "6",
  });
  owner = await server.signUp();
  editor = await server.signUp();
});
afterAll(async () => {
  for (const c of clients) c.provider.destroy();
  await server.close();
});

function open(room: string, token: string): RoomClient {
  const client = connectRoom(server.url, room, token);
  clients.push(client);
  return client;
}

async function gql(query: string, variables: Record<string, unknown> = {}, token = owner.token) {
  const res = await server.gql(query, variables, token);
  if (res.errors) throw new Error(JSON.stringify(res.errors));
  return res.data!;
}

/** A fresh session shared with the editor: its chat room and its main branch. */
async function newSession(): Promise<{ chat: string; branchId: string }> {
  const s = (await gql(`mutation { createSession(input: { title: "limits" }) { id mainBranch { id } } }`))
    .createSession;
  await gql(
    `mutation($s: ID!, $e: String!) { shareSession(sessionId: $s, email: $e, role: EDITOR) { role } }`,
    { s: s.id, e: editor.email },
  );
  return { chat: `sessions/${s.id}/chat`, branchId: s.mainBranch.id };
}

/** The room's update log as stored: rows, bytes, and whether any row holds `marker`. */
async function stored(room: string, marker?: string) {
  const db = createClient({ url: `file:${join(server.dataDir, "opencode-cloud.db")}` });
  try {
    const rows = (
      await db.execute({ sql: 'select "update" from collab_updates where room = ?', args: [room] })
    ).rows.map((r) => Buffer.from(r.update as ArrayBuffer));
    return {
      rows: rows.length,
      bytes: rows.reduce((sum, r) => sum + r.byteLength, 0),
      holds: marker ? rows.some((r) => r.includes(marker)) : false,
    };
  } finally {
    db.close();
  }
}

/** The database's size on disk (with its write-ahead log). */
function dbBytes(): number {
  const base = join(server.dataDir, "opencode-cloud.db");
  return [base, `${base}-wal`].reduce(
    (sum, f) => sum + (statSync(f, { throwIfNoEntry: false })?.size ?? 0),
    0,
  );
}

/** Closes the clients and waits until every room has unloaded (so the next open reads storage). */
async function closeAll(...room: RoomClient[]) {
  for (const c of room) c.provider.destroy();
  await eventually(() => server.collabRooms() === 0, 10_000);
}

test("an update larger than the room closes its socket with 4413; it is never relayed, stored or served", async () => {
  const { chat } = await newSession();
  const reader = open(chat, owner.token);
  await reader.synced;
  reader.doc.getArray("messages").push([{ text: "before" }]);
  await Bun.sleep(200); // past the group-commit window
  const before = dbBytes();

  const raw = rawCollab(server.url, chat, editor.token);
  await raw.joined;
  const big = new Y.Doc();
  big.getText("notes").insert(0, "X".repeat(600_000));
  raw.send(updateFrame(Y.encodeStateAsUpdate(big)));
  const closed = await raw.closed;
  expect(closed.code).toBe(4413);
  expect(closed.reason).toContain(String(CHAT_BYTES));
  expect(deniedReason(raw.messages)).toContain(String(CHAT_BYTES)); // the reason in the auth frame too

  await Bun.sleep(300);
  expect(reader.doc.getText("notes").length).toBe(0);
  expect(dbBytes() - before).toBeLessThan(100_000);
  expect((await stored(chat, "XXXXXXXXXXXXXXXX")).holds).toBe(false);
  await closeAll(reader);

  // Reopened from storage: the owner downloads the room as it was, not the refused frame.
  const again = open(chat, owner.token);
  await again.synced;
  await eventually(() => again.doc.getArray("messages").length === 1);
  expect(again.doc.getText("notes").length).toBe(0);
  expect(Y.encodeStateAsUpdate(again.doc).byteLength).toBeLessThan(1000);
  await closeAll(again);
});

test("many small updates cannot grow a chat room past its size; what fits stays", async () => {
  const { chat } = await newSession();
  const watcher = open(chat, owner.token);
  const writer = open(chat, editor.token);
  await Promise.all([watcher.synced, writer.synced]);
  const notes = writer.doc.getText("notes");
  for (let i = 0; i < 60; i++) notes.insert(notes.length, `${i}`.padEnd(6000, "."));
  const closed = await writer.closed;
  expect(closed.code).toBe(4413);
  expect(closed.reason).toContain(String(CHAT_BYTES));
  writer.provider.destroy();
  await Bun.sleep(300);
  const seen = watcher.doc.getText("notes").length;
  expect(seen).toBeGreaterThan(6000 * 20); // what fitted went through...
  expect(seen).toBeLessThan(CHAT_BYTES); // ...and nothing past the limit
  await closeAll(watcher);
  expect((await stored(chat)).bytes).toBeLessThan(CHAT_BYTES + 64 * 1024);
  const again = open(chat, owner.token);
  await again.synced;
  await eventually(() => again.doc.getText("notes").length === seen);
  expect(Y.encodeStateAsUpdate(again.doc).byteLength).toBeLessThanOrEqual(CHAT_BYTES);
  await closeAll(again);
});

test("chat: a message over the size is refused (4413); past the count the oldest are trimmed", async () => {
  const { chat } = await newSession();
  const a = open(chat, owner.token);
  const b = open(chat, editor.token);
  await Promise.all([a.synced, b.synced]);
  const messages = a.doc.getArray<{ text: string }>("messages");
  for (let i = 1; i <= 7; i++) messages.push([{ text: `m${i}` }]);
  const texts = (c: RoomClient) => c.doc.getArray<{ text: string }>("messages").map((m) => m.text);
  await eventually(() => texts(b).join() === "m3,m4,m5,m6,m7" && texts(a).join() === "m3,m4,m5,m6,m7");

  b.doc.getArray("messages").push([{ text: "y".repeat(10_000) }]);
  const closed = await b.closed;
  expect(closed.code).toBe(4413);
  expect(closed.reason).toContain("8192");
  b.provider.destroy();
  await Bun.sleep(200);
  expect(texts(a).join()).toBe("m3,m4,m5,m6,m7");
  await closeAll(a);
  const again = open(chat, owner.token);
  await again.synced;
  await eventually(() => texts(again).join() === "m3,m4,m5,m6,m7");
  await closeAll(again);
});

test("a file room's text cannot be edited past COLLAB_MAX_FILE_BYTES; replacing text at the limit still works", async () => {
  const { branchId } = await newSession();
  const room = `branches/${branchId}/files/big.txt`;
  const a = open(room, owner.token);
  const b = open(room, editor.token);
  await Promise.all([a.synced, b.synced]);
  a.text.insert(0, "a".repeat(60_000));
  await eventually(() => b.text.length === 60_000);
  // Replace 10 kB with 10 kB: the same size, so it fits although insert alone would not.
  a.doc.transact(() => {
    a.text.delete(0, 10_000);
    a.text.insert(0, "b".repeat(10_000));
  });
  await eventually(() => b.text.toString().startsWith("bbbb"));
  b.text.insert(0, "c".repeat(10_000));
  const closed = await b.closed;
  expect(closed.code).toBe(4413);
  expect(closed.reason).toContain(String(FILE_BYTES));
  b.provider.destroy();
  await Bun.sleep(300);
  expect(a.text.length).toBe(60_000);
  expect(a.text.toString()).not.toContain("c");
  const file = await gql(`query($b: ID!) { branch(id: $b) { file(path: "big.txt") { content } } }`, {
    b: branchId,
  });
  expect(file.branch.file.content).toBe(`${"b".repeat(10_000)}${"a".repeat(50_000)}`);
  await closeAll(a);
});

test("the update log is compacted to what the room holds, not everything ever typed into it", async () => {
  const { branchId } = await newSession();
  const room = `branches/${branchId}/files/churn.txt`;
  const c = open(room, owner.token);
  await c.synced;
  // ~2.4 MB typed and deleted again: the room holds a few bytes; the log compacts past 2 MiB written.
  for (let i = 0; i < 40; i++) {
    c.text.insert(0, `${i}`.padEnd(60_000, "z"));
    await Bun.sleep(60);
    c.text.delete(0, c.text.length);
    await Bun.sleep(60);
  }
  c.text.insert(0, "kept");
  // Without garbage collection on compaction, the compacted row alone would hold the 2 MiB typed.
  await eventually(async () => (await stored(room)).rows < 20, 10_000);
  expect((await stored(room)).bytes).toBeLessThan(1_000_000);
  await closeAll(c);
  const again = open(room, owner.token);
  await again.synced;
  await eventually(() => again.text.toString() === "kept");
  await closeAll(again);
}, 60_000);

test("a message larger than any room can take is cut by the runtime before it is buffered", async () => {
  const { chat } = await newSession();
  const raw = rawCollab(server.url, chat, editor.token);
  await raw.joined;
  const big = new Y.Doc();
  big.getText("notes").insert(0, "Q".repeat(4 * 1024 * 1024));
  raw.send(updateFrame(Y.encodeStateAsUpdate(big)));
  const closed = await raw.closed;
  // Bun's maxPayloadLength (the largest room or request body, plus framing): 1009, nothing buffered.
  expect(closed).toEqual({ code: 1009, reason: expect.any(String) });
  await eventually(() => server.collabRooms() === 0, 10_000);
  expect((await stored(chat, "QQQQQQQQQQQQQQQQ")).holds).toBe(false);
});

test("one user holds at most COLLAB_MAX_SOCKETS_PER_USER collaboration sockets (4429)", async () => {
  const { chat } = await newSession();
  const held = Array.from({ length: 6 }, () => open(chat, editor.token));
  await Promise.all(held.map((c) => c.synced));
  const extra = rawCollab(server.url, chat, editor.token);
  const closed = await extra.closed;
  expect(closed.code).toBe(4429);
  expect(deniedReason(extra.messages)).toContain("at most 6");
  // Someone else is not affected, and a socket given back makes room again.
  const other = open(chat, owner.token);
  await other.synced;
  held[0]!.provider.destroy();
  await Bun.sleep(100);
  const again = open(chat, editor.token);
  await again.synced;
  await closeAll(...held.slice(1), other, again);
});
