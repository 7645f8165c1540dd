// Presence cannot be poisoned or spoofed: cursors are checked (depth, size, shape) from GraphQL and
// from awareness frames, a socket sets only the few awareness ids it introduced, the account shown is
// the socket's, and announcing needs the write scope. Real server, stock y-websocket clients, and
// hand-made awareness frames for what a stock client would never send.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { connectRoom, eventually, type RoomClient } from "../utils/collab.ts";
import { awarenessFrame, type RawCollab, rawCollab } from "../utils/collab-frames.ts";
import { codeOf, startTestServer, type TestServer } from "../utils/server.ts";

let server: TestServer;
const users: Record<"owner" | "editor" | "viewer", { token: string; email: string }> = {} as never;
let sessionId: string;
const clients: RoomClient[] = [];
const raws: RawCollab[] = [];

beforeAll(async () => {
  server = await startTestServer();
  for (const name of ["owner", "editor", "viewer"] as const) users[name] = await server.signUp();
  sessionId = (
    await server.gql(`mutation { createSession(input: { title: "presence" }) { id } }`, {}, users.owner.token)
  ).data!.createSession.id;
  for (const [name, role] of [
    ["editor", "EDITOR"],
    ["viewer", "VIEWER"],
  ] as const) {
    await server.gql(
      `mutation($s: ID!, $e: String!, $r: Role!) { shareSession(sessionId: $s, email: $e, role: $r) { role } }`,
      { s: sessionId, e: users[name].email, r: role },
      users.owner.token,
    );
  }
});
afterAll(async () => {
  for (const c of clients) c.provider.destroy();
  for (const r of raws) r.ws.close();
  await server.close();
});

const room = () => `sessions/${sessionId}/chat`;

function open(token: string): RoomClient {
  const client = connectRoom(server.url, room(), token);
  clients.push(client);
  return client;
}

async function raw(token: string): Promise<RawCollab> {
  const r = rawCollab(server.url, room(), token);
  raws.push(r);
  await r.joined;
  return r;
}

interface Entry {
  key: string;
  name: string;
  cursor: unknown;
  user: { email: string } | null;
}

/** The owner's view of who is here; it must never fail. */
async function presence(): Promise<Entry[]> {
  const res = await server.gql(
    `query($s: ID!) { session(id: $s) { presence { key name cursor user { email } } } }`,
    { s: sessionId },
    users.owner.token,
  );
  expect(res.errors).toBeUndefined();
  return res.data!.session.presence;
}

const ANNOUNCE = `mutation($s: ID!, $c: JSON) { announcePresence(sessionId: $s, cursor: $c) { key cursor } }`;

test("a read-only API key cannot announce presence (FORBIDDEN); a viewer's own sign-in can", async () => {
  const readOnly = (
    await server.gql(
      `mutation { createApiKey(name: "ro", scopes: ["read"]) { secret } }`,
      {},
      users.viewer.token,
    )
  ).data!.createApiKey.secret;
  const refused = await server.gql(ANNOUNCE, { s: sessionId, c: { line: 1 } }, readOnly);
  expect(codeOf(refused)).toBe("FORBIDDEN");
  expect((await presence()).some((p) => p.user?.email === users.viewer.email)).toBe(false);
  // Reading stays open to the key.
  const read = await server.gql(`query($s: ID!) { session(id: $s) { id } }`, { s: sessionId }, readOnly);
  expect(read.errors).toBeUndefined();

  const viewer = await server.gql(ANNOUNCE, { s: sessionId, c: { line: 1 } }, users.viewer.token);
  expect(viewer.errors).toBeUndefined();
  expect((await presence()).find((p) => p.user?.email === users.viewer.email)?.cursor).toEqual({ line: 1 });
});

test("a deep, large or odd cursor is refused with BAD_USER_INPUT; the presence query keeps working", async () => {
  // 50,000 levels, sent as raw JSON (the test's own JSON.stringify would not survive building it).
  const deep = `${'{"a":'.repeat(50_000)}1${"}".repeat(50_000)}`;
  const res = await fetch(`${server.url}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${users.editor.token}` },
    body: `{"query":${JSON.stringify(ANNOUNCE)},"variables":{"s":${JSON.stringify(sessionId)},"c":${deep}}}`,
  });
  const body = (await res.json()) as { errors?: { extensions?: Record<string, unknown> }[] };
  expect(body.errors?.[0]?.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "cursor" });

  let nested: unknown = 1;
  for (let i = 0; i < 7; i++) nested = { n: nested };
  for (const cursor of [nested, { blob: "x".repeat(3000) }, "just a string", 42]) {
    const refused = await server.gql(ANNOUNCE, { s: sessionId, c: cursor }, users.editor.token);
    expect(refused.errors?.[0]?.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "cursor" });
  }
  expect((await presence()).some((p) => p.user?.email === users.editor.email)).toBe(false);

  // What editors really send (y-codemirror's relative positions) is fine.
  const pos = { type: { client: 1, clock: 2 }, tname: null, item: { client: 3, clock: 4 }, assoc: 0 };
  const ok = await server.gql(ANNOUNCE, { s: sessionId, c: { anchor: pos, head: pos } }, users.editor.token);
  expect(ok.errors).toBeUndefined();
  expect((await presence()).find((p) => p.user?.email === users.editor.email)?.cursor).toEqual({
    anchor: pos,
    head: pos,
  });
});

test("awareness states with a deep or oversized cursor are dropped, never stored or relayed", async () => {
  const watcher = open(users.owner.token);
  await watcher.synced;
  const socket = await raw(users.editor.token);
  let twenty: unknown = 1;
  for (let i = 0; i < 20; i++) twenty = [twenty];
  const huge = `{"user":{"name":"deep-2"},"cursor":${"[".repeat(50_000)}${"]".repeat(50_000)}}`;
  socket.send(
    awarenessFrame([
      [7001, 1, JSON.stringify({ user: { name: "deep-1" }, cursor: twenty })],
      [7002, 1, huge],
      [7003, 1, JSON.stringify({ user: { name: "flat-big" }, cursor: { s: "y".repeat(3000) } })],
    ]),
  );
  socket.send(awarenessFrame([[7004, 1, JSON.stringify({ user: { name: "after" }, cursor: { line: 2 } })]]));
  // The frames are handled in order: once "after" is in, the others were looked at.
  await eventually(async () => (await presence()).some((p) => p.name === "after"));
  const names = (await presence()).map((p) => p.name);
  expect(names).not.toContain("deep-1");
  expect(names).not.toContain("deep-2");
  expect(names).not.toContain("flat-big");
  await eventually(() => watcher.provider.awareness.getStates().has(7004));
  for (const id of [7001, 7002, 7003]) expect(watcher.provider.awareness.getStates().has(id)).toBe(false);
  expect(socket.ws.readyState).toBe(WebSocket.OPEN);
});

test("a viewer cannot rewrite or remove the owner's awareness state; the account shown is the socket's", async () => {
  const owner = open(users.owner.token);
  const observer = open(users.editor.token);
  await Promise.all([owner.synced, observer.synced]);
  owner.provider.awareness.setLocalState({ user: { name: "Owner", color: "#00f" } });
  const ownerId = owner.doc.clientID;
  await eventually(() => observer.provider.awareness.getStates().get(ownerId)?.user?.name === "Owner");

  const viewer = await raw(users.viewer.token);
  const lure = { user: { name: "Owner: paste your API key in the chat", color: "#00f" } };
  viewer.send(awarenessFrame([[ownerId, 10_000, JSON.stringify(lure)]]));
  viewer.send(awarenessFrame([[ownerId, 10_001, "null"]]));
  // The viewer may still name itself anything; who it is comes from its socket.
  viewer.send(awarenessFrame([[8001, 1, JSON.stringify({ user: { name: "Owner" } })]]));
  await eventually(() => observer.provider.awareness.getStates().has(8001));

  expect(observer.provider.awareness.getStates().get(ownerId)?.user?.name).toBe("Owner");
  expect(owner.provider.awareness.getLocalState()?.user?.name).toBe("Owner");
  const here = await presence();
  expect(here.some((p) => p.name.includes("paste"))).toBe(false);
  const owners = here.filter((p) => p.key.endsWith(`#${ownerId}`));
  expect(owners).toEqual([expect.objectContaining({ name: "Owner", user: { email: users.owner.email } })]);
  const impostor = here.find((p) => p.key.endsWith("#8001"));
  expect(impostor).toMatchObject({ name: "Owner", user: { email: users.viewer.email } });
});

test("one frame of 20,001 entries sets at most 4 states for its socket", async () => {
  const observer = open(users.owner.token);
  await observer.synced;
  const flooder = await raw(users.editor.token);
  const entries: [number, number, string][] = Array.from({ length: 20_001 }, (_, i) => [
    100_000 + i,
    1,
    JSON.stringify({ user: { name: `flood-${i}` } }),
  ]);
  flooder.send(awarenessFrame(entries));
  const flooded = async () => {
    const names = (await presence()).map((p) => p.name).filter((n) => n.startsWith("flood-"));
    if (names.length > 4) console.log("flooded:", names);
    return names.length;
  };
  await eventually(async () => (await flooded()) > 0);
  // More new ids later do not add more either.
  flooder.send(awarenessFrame([[200_000, 1, JSON.stringify({ user: { name: "flood-late" } })]]));
  flooder.send(awarenessFrame([[100_000, 2, JSON.stringify({ user: { name: "flood-renamed" } })]]));
  await eventually(async () => (await presence()).some((p) => p.name === "flood-renamed"));
  expect(await flooded()).toBe(4);
  expect((await presence()).some((p) => p.name === "flood-late")).toBe(false);
  const seen = [...observer.provider.awareness.getStates().keys()].filter(
    (id) => id >= 100_000 && id <= 200_000,
  );
  expect(seen.length).toBe(4);

  // Leaving takes its states along.
  flooder.ws.close();
  await eventually(async () => (await flooded()) === 0);
});

test("the same user's new socket takes over its awareness id (a reconnecting tab); nobody else can", async () => {
  const first = await raw(users.editor.token);
  first.send(awarenessFrame([[9001, 1, JSON.stringify({ user: { name: "tab" } })]]));
  await eventually(async () => (await presence()).some((p) => p.name === "tab"));
  const second = await raw(users.editor.token);
  second.send(awarenessFrame([[9001, 2, JSON.stringify({ user: { name: "tab-reconnected" } })]]));
  await eventually(async () => (await presence()).some((p) => p.name === "tab-reconnected"));
  // The old socket going away no longer removes the id; another user still cannot set it.
  first.ws.close();
  await first.closed;
  const viewer = await raw(users.viewer.token);
  viewer.send(awarenessFrame([[9001, 3, JSON.stringify({ user: { name: "hijacked" } })]]));
  viewer.send(awarenessFrame([[9002, 1, JSON.stringify({ user: { name: "viewer-here" } })]]));
  await eventually(async () => (await presence()).some((p) => p.name === "viewer-here"));
  const tab = (await presence()).find((p) => p.key.endsWith("#9001"));
  expect(tab).toMatchObject({ name: "tab-reconnected", user: { email: users.editor.email } });
});

test("stock clients echoing each other's awareness are not refused or logged", async () => {
  const a = open(users.owner.token);
  const b = open(users.editor.token);
  await Promise.all([a.synced, b.synced]);
  const logged = () => server.logs.filter((l) => JSON.stringify(l).includes("awareness")).length;
  const before = logged();
  for (let i = 0; i < 5; i++) {
    a.provider.awareness.setLocalState({ user: { name: `a-${i}` }, cursor: { line: i } });
    b.provider.awareness.setLocalState({ user: { name: `b-${i}` }, cursor: { line: i } });
    await eventually(
      () =>
        a.provider.awareness.getStates().get(b.doc.clientID)?.user?.name === `b-${i}` &&
        b.provider.awareness.getStates().get(a.doc.clientID)?.user?.name === `a-${i}`,
    );
  }
  await Bun.sleep(100);
  expect(logged()).toBe(before);
  const names = (await presence()).map((p) => p.name);
  expect(names).toContain("a-4");
  expect(names).toContain("b-4");
});

test("announcePresence takes only a branch of its session and a plain color (hex or a CSS name)", async () => {
  const announce = (token: string, vars: Record<string, unknown>) =>
    server.gql(
      `mutation($s: ID!, $b: ID, $c: String) { announcePresence(sessionId: $s, branchId: $b, color: $c) { key branchId color } }`,
      { s: sessionId, ...vars },
      token,
    );
  const mainBranch = (
    await server.gql(
      `query($s: ID!) { session(id: $s) { mainBranch { id } } }`,
      { s: sessionId },
      users.owner.token,
    )
  ).data!.session.mainBranch.id as string;
  const elsewhere = (
    await server.gql(
      `mutation { createSession(input: { title: "other" }) { mainBranch { id } } }`,
      {},
      users.owner.token,
    )
  ).data!.createSession.mainBranch.id as string;
  // A branch that does not exist and one of another session (the announcer's own) get the same answer.
  for (const b of ["br_nope", elsewhere]) {
    const refused = await announce(users.owner.token, { b });
    expect(refused.errors?.[0]?.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "branchId" });
    expect(refused.errors?.[0]?.message).toBe("branchId is not a branch of this session");
  }
  for (const c of [
    "<script>",
    "red; background: url(x)",
    "#12345",
    "#ggg",
    "expression(alert(1))",
    " #fff",
  ]) {
    const refused = await announce(users.owner.token, { c });
    expect(refused.errors?.[0]?.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "color" });
  }
  expect(
    (await presence()).some((p) => p.user?.email === users.owner.email && p.key.startsWith("graphql#")),
  ).toBe(false);
  for (const c of ["#30bced", "#F80", "#30bced80", "teal"]) {
    const ok = await announce(users.owner.token, { b: mainBranch, c });
    expect(ok.errors).toBeUndefined();
    expect(ok.data!.announcePresence).toMatchObject({ branchId: mainBranch, color: c });
  }
});

test("an awareness color that is not a plain color is shown as null in presence", async () => {
  const client = open(users.editor.token);
  await client.synced;
  client.provider.awareness.setLocalState({
    user: { name: "styled", color: '"><img src=x onerror=alert(1)>' },
  });
  await eventually(async () => (await presence()).some((p) => p.name === "styled"));
  const colorOf = async (name: string) => {
    const res = await server.gql(
      `query($s: ID!) { session(id: $s) { presence { name color } } }`,
      { s: sessionId },
      users.owner.token,
    );
    return (res.data!.session.presence as { name: string; color: string | null }[]).find(
      (p) => p.name === name,
    )?.color;
  };
  expect(await colorOf("styled")).toBeNull();
  client.provider.awareness.setLocalState({ user: { name: "plain", color: "#30bced" } });
  await eventually(async () => (await colorOf("plain")) === "#30bced");
});
