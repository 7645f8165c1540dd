// Branch file rooms: the live editing buffer of one file in a branch's workspace, with stock
// y-websocket clients against the real server.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import * as Y from "yjs";
import { connectRoom, eventually, type RoomClient } from "../utils/collab.ts";
import { testUnless } from "../utils/isolation.ts";
import { spawnServer } from "../utils/process.ts";
import { inProcessOnly, startTestServer, type TestServer } from "../utils/server.ts";

let server: TestServer;
let owner: { token: string };
let editor: { token: string; email: string };
const clients: RoomClient[] = [];

beforeAll(async () => {
  server = await startTestServer({ COLLAB_FILE_FLUSH_MS: "100", COLLAB_MAX_FILE_BYTES: "4096" });
  owner = await server.signUp();
  editor = await server.signUp();
});
afterAll(async () => {
  for (const c of clients) c.provider.destroy();
  await server.close();
});

async function gql(query: string, variables: Record<string, unknown> = {}, token = owner.token) {
  const res = await server.gql(query, variables, token);
  if (res.errors) throw new Error(JSON.stringify(res.errors));
  return res.data!;
}

async function newBranch(files: Record<string, unknown>): Promise<{ sessionId: string; branchId: string }> {
  const s = (
    await gql(
      `mutation($f: JSON) { createSession(input: { title: "files", files: $f }) { id mainBranch { id } } }`,
      { f: files },
    )
  ).createSession;
  await gql(
    `mutation($s: ID!, $e: String!) { shareSession(sessionId: $s, email: $e, role: EDITOR) { role } }`,
    { s: s.id, e: editor.email },
  );
  return { sessionId: s.id, branchId: s.mainBranch.id };
}

function open(branchId: string, path: string, token = owner.token) {
  const client = connectRoom(server.url, `branches/${branchId}/files/${path}`, token);
  clients.push(client);
  return client;
}

const fileOf = async (branchId: string, path: string) =>
  (
    await gql(`query($b: ID!, $p: String!) { branch(id: $b) { file(path: $p) { content } } }`, {
      b: branchId,
      p: path,
    })
  ).branch.file?.content ?? null;

async function run(branchId: string, command: string): Promise<string> {
  const { id } = (
    await gql(`mutation($b: ID!, $c: String!) { exec(branchId: $b, command: $c) { id } }`, {
      b: branchId,
      c: command,
    })
  ).exec;
  for (let i = 0; i < 600; i++) {
    const r = (await gql(`query($r: ID!) { run(id: $r) { status output } }`, { r: id })).run;
    if (!["QUEUED", "RUNNING"].includes(r.status)) return r.output;
    await Bun.sleep(25);
  }
  throw new Error("run did not finish");
}

test("two editors converge on a workspace file; a late joiner gets the full state", async () => {
  const { sessionId, branchId } = await newBranch({ "src/app.txt": "line one\nline two\n" });
  const a = open(branchId, "src/app.txt");
  const b = open(branchId, "src/app.txt", editor.token);
  await Promise.all([a.synced, b.synced]);
  await eventually(() => a.text.toString() === "line one\nline two\n");
  a.text.insert(0, "A:");
  b.text.insert(b.text.length, "B\n");
  await eventually(() => a.text.toString() === b.text.toString() && a.text.toString().includes("B\n"));
  expect(a.text.toString()).toBe("A:line one\nline two\nB\n");
  const late = open(branchId, "src/app.txt", editor.token);
  await late.synced;
  await eventually(() => late.text.toString() === a.text.toString());
  // Presence: someone in a file room is, unless they say otherwise, on that branch and file.
  a.provider.awareness.setLocalStateField("user", { name: "ana", color: "#f80" });
  let here: { name: string; branchId: string; file: string }[] = [];
  await eventually(async () => {
    here = (
      await gql(`query($s: ID!) { session(id: $s) { presence { name branchId file } } }`, { s: sessionId })
    ).session.presence;
    return here.some((p) => p.name === "ana");
  });
  expect(here.find((p) => p.name === "ana")).toEqual({ name: "ana", branchId, file: "src/app.txt" });
});

test("an edit through Yjs shows up in branch.file and in a command's view of the file", async () => {
  const { branchId } = await newBranch({ "notes.md": "# Notes\n" });
  const c = open(branchId, "notes.md");
  await c.synced;
  await eventually(() => c.text.toString() === "# Notes\n");
  c.text.insert(c.text.length, "typed live\n");
  // Written to the workspace shortly after (throttled)...
  await eventually(async () => (await fileOf(branchId, "notes.md")) === "# Notes\ntyped live\n");
  // ...and always before a run starts, even one queued right after the keystroke.
  c.text.insert(c.text.length, "just now\n");
  expect(await run(branchId, "cat notes.md")).toBe("# Notes\ntyped live\njust now\n");
});

test("a file changed by a run or writeFile arrives in the open room as a small edit; cursors survive", async () => {
  const { branchId } = await newBranch({ "poem.txt": "roses are red\nviolets are blue\n" });
  const root = (await gql(`query($b: ID!) { branch(id: $b) { head { id } } }`, { b: branchId })).branch.head
    .id;
  const c = open(branchId, "poem.txt");
  await c.synced;
  await eventually(() => c.text.toString() === "roses are red\nviolets are blue\n");
  // A cursor after "roses" (before the changed line): it must stay put.
  const cursor = Y.createRelativePositionFromTypeIndex(c.text, 5);
  // A cursor inside the last line, after "violets": still after "violets" when the line changes.
  const later = Y.createRelativePositionFromTypeIndex(c.text, "roses are red\nviolets".length);
  await run(branchId, "sed -i 's/blue/green/' poem.txt");
  await eventually(() => c.text.toString() === "roses are red\nviolets are green\n");
  expect(Y.createAbsolutePositionFromRelativePosition(cursor, c.doc)!.index).toBe(5);
  expect(Y.createAbsolutePositionFromRelativePosition(later, c.doc)!.index).toBe(
    "roses are red\nviolets".length,
  );
  // writeFile (a snapshot of its own) is also seen by the room.
  await gql(
    `mutation($b: ID!) { writeFile(branchId: $b, path: "poem.txt", content: "new poem\\n") { id } }`,
    {
      b: branchId,
    },
  );
  await eventually(() => c.text.toString() === "new poem\n");
  // A rollback is too: the buffer shows the rolled-back file.
  await gql(`mutation($b: ID!, $s: ID!) { rollback(branchId: $b, snapshotId: $s) { id } }`, {
    b: branchId,
    s: root,
  });
  await eventually(() => c.text.toString() === "roses are red\nviolets are blue\n");
});

test("typing during a run merges with what the run wrote to the same file", async () => {
  const { branchId } = await newBranch({ "list.txt": "alpha\nbeta\ngamma\ndelta\n" });
  const c = open(branchId, "list.txt");
  await c.synced;
  await eventually(() => c.text.length > 0);
  const { id } = (
    await gql(
      `mutation($b: ID!) { exec(branchId: $b, command: "sleep 0.5; sed -i 's/delta/DELTA/' list.txt") { id } }`,
      {
        b: branchId,
      },
    )
  ).exec;
  await Bun.sleep(150); // the run has started (with the buffer written first)
  c.text.insert(0, "typed ");
  await eventually(() => c.text.toString() === "typed alpha\nbeta\ngamma\nDELTA\n");
  await eventually(async () => (await fileOf(branchId, "list.txt")) === "typed alpha\nbeta\ngamma\nDELTA\n");
  expect((await gql(`query($r: ID!) { run(id: $r) { status } }`, { r: id })).run.status).toBe("SUCCEEDED");
});

test("a new file can be created live; binary and oversized files are refused with a reason", async () => {
  const { branchId } = await newBranch({
    "blob.bin": { content: Buffer.from([0, 1, 2, 255]).toString("base64"), encoding: "base64" },
    "big.txt": "x".repeat(5000),
  });
  const fresh = open(branchId, "docs/new.md");
  await fresh.synced;
  expect(fresh.text.toString()).toBe("");
  fresh.text.insert(0, "created from the editor\n");
  await eventually(async () => (await fileOf(branchId, "docs/new.md")) === "created from the editor\n");

  const bin = open(branchId, "blob.bin");
  expect(await bin.closed).toEqual({ code: 4400, reason: expect.stringContaining("binary") });
  const big = open(branchId, "big.txt");
  expect(await big.closed).toEqual({ code: 4413, reason: expect.stringContaining("4096") });
  const outside = open(branchId, "../../etc/passwd");
  expect((await outside.closed).code).toBe(4404);
  for (const c of [bin, big, outside]) c.provider.destroy();
});

test("deleting the branch closes its file rooms", async () => {
  const { branchId } = await newBranch({ "a.txt": "a\n" });
  const head = (await gql(`query($b: ID!) { branch(id: $b) { head { id } } }`, { b: branchId })).branch.head
    .id;
  const other = (await gql(`mutation($s: ID!) { fork(snapshotId: $s, name: "side") { id } }`, { s: head }))
    .fork.id;
  const c = open(other, "a.txt");
  await c.synced;
  await gql(`mutation($b: ID!) { deleteBranch(id: $b) }`, { b: other });
  expect((await c.closed).code).toBe(4404);
  c.provider.destroy();
});

test("kill -9 then restart: the typed buffer comes back and reaches the re-created workspace", async () => {
  const first = await spawnServer({ COLLAB_FILE_FLUSH_MS: "100" });
  const post = async (
    url: string,
    query: string,
    variables: Record<string, unknown> = {},
    token?: string,
  ) => {
    const res = await fetch(`${url}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ query, variables }),
    });
    return ((await res.json()) as { data: any }).data;
  };
  try {
    const token = (
      await post(
        first.url,
        `mutation { register(email: "f@example.com", password: "password123") { token } }`,
      )
    ).register.token;
    const branchId = (
      await post(
        first.url,
        `mutation($f: JSON) { createSession(input: { title: "crash", files: $f }) { mainBranch { id } } }`,
        { f: { "f.txt": "base\n" } },
        token,
      )
    ).createSession.mainBranch.id;
    const writer = connectRoom(first.url, `branches/${branchId}/files/f.txt`, token);
    await writer.synced;
    await eventually(() => writer.text.toString() === "base\n");
    writer.text.insert(writer.text.length, "unsnapshotted edit\n");
    await Bun.sleep(400); // past the flush and group-commit windows
    first.proc.kill("SIGKILL");
    await first.proc.exited;
    writer.provider.destroy();

    // The live workspace did not survive (the branch re-forks its head), but the room's log did.
    const second = await spawnServer({}, first.dataDir);
    try {
      const reader = connectRoom(second.url, `branches/${branchId}/files/f.txt`, token);
      await reader.synced;
      await eventually(() => reader.text.toString() === "base\nunsnapshotted edit\n");
      const runId = (
        await post(
          second.url,
          `mutation($b: ID!) { exec(branchId: $b, command: "cat f.txt") { id } }`,
          { b: branchId },
          token,
        )
      ).exec.id;
      let output = "";
      await eventually(async () => {
        const r = (
          await post(second.url, `query($r: ID!) { run(id: $r) { status output } }`, { r: runId }, token)
        ).run;
        output = r.output;
        return r.status === "SUCCEEDED";
      });
      expect(output).toBe("base\nunsnapshotted edit\n");
      reader.provider.destroy();
    } finally {
      second.proc.kill("SIGTERM");
      await second.proc.exited;
    }
  } finally {
    rmSync(first.dataDir, { recursive: true, force: true });
  }
}, 60_000);

test("kill -9 before an acknowledged edit reached the workspace, restart: the branch's next run has it (no editor reopened)", async () => {
  // The buffer would write the workspace only after a minute: the edit is in the log alone.
  const first = await spawnServer({ COLLAB_FILE_FLUSH_MS: "60000" });
  try {
    const token = (
      await first.gql(`mutation { register(email: "g@example.com", password: "password123") { token } }`)
    ).register.token as string;
    const branchId = (
      await first.gql(
        `mutation($f: JSON) { createSession(input: { title: "crash", files: $f }) { mainBranch { id } } }`,
        { f: { "g.txt": "base\n" } },
        token,
      )
    ).createSession.mainBranch.id as string;
    const room = `branches/${branchId}/files/g.txt`;
    const writer = connectRoom(first.url, room, token);
    const watcher = connectRoom(first.url, room, token);
    await Promise.all([writer.synced, watcher.synced]);
    await eventually(() => writer.text.toString() === "base\n");
    writer.text.insert(writer.text.length, "acknowledged\n");
    // Relayed to the other client: stored first.
    await eventually(() => watcher.text.toString() === "base\nacknowledged\n");
    first.proc.kill("SIGKILL");
    await first.proc.exited;
    writer.provider.destroy();
    watcher.provider.destroy();

    const second = await spawnServer({}, first.dataDir);
    const run = async (command: string) => {
      const { id } = (
        await second.gql(
          `mutation($b: ID!, $c: String!) { exec(branchId: $b, command: $c) { id } }`,
          { b: branchId, c: command },
          token,
        )
      ).exec;
      let r = { status: "QUEUED", output: "" };
      await eventually(async () => {
        r = (await second.gql(`query($r: ID!) { run(id: $r) { status output } }`, { r: id }, token)).run;
        return !["QUEUED", "RUNNING"].includes(r.status);
      }, 20_000);
      expect(r.status).toBe("SUCCEEDED");
      return r.output;
    };
    try {
      // The first item re-creates the branch's live sandbox from its head; the log's rows that sandbox
      // has not taken in reach it before that item runs.
      expect(await run("cat g.txt")).toBe("base\nacknowledged\n");
      expect(await run("cat g.txt")).toBe("base\nacknowledged\n");
    } finally {
      second.proc.kill("SIGTERM");
      await second.proc.exited;
    }
  } finally {
    rmSync(first.dataDir, { recursive: true, force: true });
  }
}, 60_000);

testUnless(inProcessOnly)(
  "a closed editor's room is not loaded again before every run (what the workspace took in is remembered)",
  async () => {
    const { branchId } = await newBranch({ "h.txt": "h\n" });
    const c = open(branchId, "h.txt");
    await c.synced;
    await eventually(() => c.text.toString() === "h\n");
    c.text.insert(2, "typed\n");
    expect(await run(branchId, "cat h.txt")).toBe("h\ntyped\n");
    const rooms = server.collabRooms();
    c.provider.destroy();
    await eventually(() => server.collabRooms() < rooms, 10_000);
    // No room is read from the log for the next run: its rows are known to be in the workspace.
    const loads = () =>
      server.queries.filter((sql) => /from "collab_updates" where "collab_updates"."room" = \?/.test(sql))
        .length;
    const before = loads();
    expect(before).toBeGreaterThan(0); // the room's own load was one
    expect(await run(branchId, "cat h.txt")).toBe("h\ntyped\n");
    expect(loads()).toBe(before);
  },
);

test("an emoji changed by a run arrives whole (no half surrogate pairs)", async () => {
  const { branchId } = await newBranch({ "e.txt": "smile 😀 end\n" });
  const c = open(branchId, "e.txt");
  await c.synced;
  await eventually(() => c.text.toString() === "smile 😀 end\n");
  await run(branchId, "sed -i 's/😀/😁/' e.txt");
  await eventually(() => c.text.toString() === "smile 😁 end\n");
});

test("a run's change lands where it was made, even when people typed elsewhere meanwhile", async () => {
  const { branchId } = await newBranch({ "r.txt": "a\nx\nb\na\nx\nb\n" });
  const c = open(branchId, "r.txt");
  await c.synced;
  await eventually(() => c.text.length > 0);
  const { id } = (
    await gql(
      `mutation($b: ID!) { exec(branchId: $b, command: "sleep 0.5; sed -i '2s/x/X/' r.txt") { id } }`,
      {
        b: branchId,
      },
    )
  ).exec;
  await Bun.sleep(150);
  c.text.insert(1, "2"); // the first "a" becomes "a2" while the run changes the first "x"
  await eventually(() => c.text.toString() === "a2\nX\nb\na\nx\nb\n");
  await eventually(async () => (await fileOf(branchId, "r.txt")) === "a2\nX\nb\na\nx\nb\n");
  expect((await gql(`query($r: ID!) { run(id: $r) { status } }`, { r: id })).run.status).toBe("SUCCEEDED");
});

test("a file a run made binary closes its room, and the room stays refused", async () => {
  const { branchId } = await newBranch({ "t.txt": "text\n" });
  const c = open(branchId, "t.txt");
  await c.synced;
  await eventually(() => c.text.toString() === "text\n");
  await run(branchId, "printf 'bin\\000ary' > t.txt");
  expect((await c.closed).code).toBe(4400);
  c.provider.destroy();
  const again = open(branchId, "t.txt");
  expect((await again.closed).code).toBe(4400);
  again.provider.destroy();
});

test("write access follows the key's scopes and the member's current role", async () => {
  const { sessionId, branchId } = await newBranch({ "w.txt": "w\n" });
  const readKey = (
    await gql(`mutation { createApiKey(name: "reader", scopes: ["read"]) { secret } }`, {}, editor.token)
  ).createApiKey.secret;
  const ro = open(branchId, "w.txt", readKey);
  const rw = open(branchId, "w.txt", editor.token);
  await Promise.all([ro.synced, rw.synced]);
  await eventually(() => ro.text.toString() === "w\n" && rw.text.toString() === "w\n");
  ro.text.insert(0, "RO:");
  rw.text.insert(rw.text.length, "rw\n");
  await eventually(() => ro.text.toString().endsWith("rw\n"));
  await Bun.sleep(200);
  expect(rw.text.toString()).toBe("w\nrw\n");
  // Demoted to VIEWER: the sockets opened as EDITOR close, and reconnect with the new role.
  await gql(
    `mutation($s: ID!, $e: String!) { shareSession(sessionId: $s, email: $e, role: VIEWER) { role } }`,
    { s: sessionId, e: editor.email },
  );
  expect((await rw.closed).code).toBe(4403);
  rw.provider.destroy();
  ro.provider.destroy();
});

test("a file opens at once while a long run holds the branch, and shows the run's result when it ends", async () => {
  const { branchId } = await newBranch({ "slow.txt": "before\n" });
  await run(branchId, "true"); // the branch has a live sandbox
  const { id } = (
    await gql(`mutation($b: ID!) { exec(branchId: $b, command: "sleep 2; echo after > slow.txt") { id } }`, {
      b: branchId,
    })
  ).exec;
  await Bun.sleep(200);
  const c = open(branchId, "slow.txt");
  await c.synced;
  await eventually(() => c.text.toString() === "before\n");
  const openedWhileRunning =
    (await gql(`query($r: ID!) { run(id: $r) { status } }`, { r: id })).run.status === "RUNNING";
  expect(openedWhileRunning).toBe(true); // not queued behind the run
  await eventually(() => c.text.toString() === "after\n", 10_000);
});
