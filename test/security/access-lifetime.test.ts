// Issue 12 #4: every live stream ends when its access ends. GraphQL subscriptions (graphql-ws and
// SSE), collaboration sockets: removal, role change, token expiry, sign-out everywhere, share-link
// revocation, session deletion. Real server, real graphql-ws and y-websocket clients.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createClient } from "graphql-ws";
import { connectRoom, eventually, type RoomClient } from "../utils/collab.ts";
import { codeOf, startTestServer, type TestServer } from "../utils/server.ts";
import { type Collector, collect, wsClient } from "../utils/ws.ts";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server.close());

type Account = { token: string; userId: string; email: string };

async function ok(token: string, query: string, variables: Record<string, unknown> = {}) {
  const res = await server.gql(query, variables, token);
  if (res.errors) throw new Error(`${query.slice(0, 80)}: ${JSON.stringify(res.errors)}`);
  return res.data as Record<string, any>;
}

/** A session of `owner`'s, shared with each member at the given role. */
async function sharedSession(owner: Account, shares: [Account, "EDITOR" | "VIEWER"][] = []) {
  const s = (
    await ok(
      owner.token,
      `mutation { createSession(input: { title: "live" }) { id mainBranch { id head { id } } } }`,
    )
  ).createSession;
  for (const [member, role] of shares) await share(owner, s.id, member, role);
  return {
    sessionId: s.id as string,
    branchId: s.mainBranch.id as string,
    rootId: s.mainBranch.head.id as string,
  };
}

const share = (owner: Account, sessionId: string, member: Account, role: string) =>
  ok(
    owner.token,
    "mutation($s: ID!, $e: String!, $r: Role!) { shareSession(sessionId: $s, email: $e, role: $r) { role } }",
    { s: sessionId, e: member.email, r: role },
  );

const removeMember = (owner: Account, sessionId: string, member: Account) =>
  ok(owner.token, "mutation($s: ID!, $u: ID!) { removeMember(sessionId: $s, userId: $u) }", {
    s: sessionId,
    u: member.userId,
  });

const checkpoint = async (token: string, branchId: string) =>
  (await ok(token, "mutation($b: ID!) { checkpoint(branchId: $b) { id } }", { b: branchId })).checkpoint
    .id as string;

const exec = async (token: string, branchId: string, command: string) =>
  (
    await ok(token, "mutation($b: ID!, $c: String!) { exec(branchId: $b, command: $c) { id } }", {
      b: branchId,
      c: command,
    })
  ).exec.id as string;

const SESSION_EVENTS =
  "subscription($s: ID!) { sessionEvents(sessionId: $s) { kind run { id } snapshot { id } } }";
const PRESENCE = "subscription($s: ID!) { presence(sessionId: $s) { kind entry { key } } }";
const RUN_OUTPUT =
  "subscription($r: ID!) { runOutput(runId: $r) { __typename ... on RunOutputChunk { text } } }";

/** Announces `who` in the session until the presence subscription has seen it (it may start late). */
async function announcedTo(who: Account, sessionId: string, presence: Collector) {
  await eventually(async () => {
    await ok(who.token, "mutation($s: ID!) { announcePresence(sessionId: $s) { key } }", { s: sessionId });
    await Bun.sleep(50);
    return presence.results.length > 0;
  });
}

/** The code of the error a subscription ended with (a final result with errors, then complete). */
async function endedWith(c: Collector): Promise<unknown> {
  await c.completed;
  const last = c.results.at(-1);
  if (last?.errors) return last.errors[0]?.extensions?.code;
  const error = c.errors[0] as { extensions?: { code?: unknown } }[] | undefined;
  return error?.[0]?.extensions?.code ?? "completed without an error";
}

/** Every close a y-websocket client saw. After a 44xx close it stays closed until connect(). */
function closesOf(room: RoomClient): { code: number; reason: string }[] {
  const seen: { code: number; reason: string }[] = [];
  room.provider.on("connection-close", (event: CloseEvent | null) => {
    if (event) seen.push({ code: event.code, reason: event.reason });
  });
  return seen;
}

/** Reconnects a closed client (with the token it was made with); resolves with its next close, or "synced". */
async function reconnect(room: RoomClient, closes: { code: number }[]): Promise<number | "synced"> {
  const before = closes.length;
  room.provider.connect();
  let outcome: number | "synced" | undefined;
  await eventually(() => {
    if (closes.length > before) outcome = closes[before]!.code;
    else if (room.provider.wsconnected && room.provider.synced) outcome = "synced";
    return outcome !== undefined;
  }, 10_000);
  return outcome!;
}

/** A graphql-ws client whose socket close is observable. */
function observedClient(token: string) {
  let resolve!: (e: { code: number; reason: string }) => void;
  const closed = new Promise<{ code: number; reason: string }>((r) => {
    resolve = r;
  });
  const client = createClient({
    url: server.wsUrl,
    connectionParams: { authorization: `Bearer ${token}` },
    lazy: false,
    retryAttempts: 0,
    on: { closed: (e) => resolve(e as { code: number; reason: string }) },
    onNonLazyError: () => {},
  });
  return { client, closed };
}

/** A subscription over HTTP (server-sent events), collected like the graphql-ws one. */
function sse(token: string, query: string, variables: Record<string, unknown>) {
  const results: any[] = [];
  const abort = new AbortController();
  const completed = (async () => {
    const res = await fetch(`${server.url}/graphql`, {
      method: "POST",
      signal: abort.signal,
      headers: {
        "content-type": "application/json",
        accept: "text/event-stream",
        authorization: `Bearer ${token}`,
      },
      body: JSON.stringify({ query, variables }),
    });
    const decoder = new TextDecoder();
    let buffer = "";
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let end = buffer.indexOf("\n\n");
      while (end >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (event === "complete") return;
        if (event === "next" && data) results.push(JSON.parse(data));
        end = buffer.indexOf("\n\n");
      }
    }
  })().catch((error) => {
    if (!abort.signal.aborted) throw error;
  });
  return { results, completed, close: () => abort.abort() };
}

let people = 0;
const signUp = () => server.signUp(`access-${++people}-${crypto.randomUUID().slice(0, 6)}@example.com`);

describe("GraphQL subscriptions", () => {
  test("a removed member's sessionEvents, runOutput and presence end, and never see the owner's next command", async () => {
    const [owner, member] = [await signUp(), await signUp()];
    const { sessionId, branchId, rootId } = await sharedSession(owner, [[member, "VIEWER"]]);
    // A long run on a branch of its own (runs queue per branch; the main branch stays free).
    const side = (
      await ok(owner.token, `mutation($s: ID!) { fork(snapshotId: $s, name: "side") { id } }`, { s: rootId })
    ).fork.id;
    const slow = await exec(owner.token, side, "for i in $(seq 1 600); do echo tick $i; sleep 0.1; done");
    const client = wsClient(server.wsUrl, member.token);
    const ownerClient = wsClient(server.wsUrl, owner.token);
    try {
      const events = collect(client, SESSION_EVENTS, { s: sessionId });
      const presence = collect(client, PRESENCE, { s: sessionId });
      const output = collect(client, RUN_OUTPUT, { r: slow });
      const overHttp = sse(member.token, SESSION_EVENTS, { s: sessionId });
      const account = collect(client, "subscription { accountEvents { kind } }");
      const ownerEvents = collect(ownerClient, SESSION_EVENTS, { s: sessionId });
      // Every stream is live: each delivers something first.
      await output.until((r) => r.data?.runOutput?.text?.includes("tick"));
      await Bun.sleep(200);
      const first = await checkpoint(owner.token, branchId);
      await events.until((r) => r.data?.sessionEvents?.snapshot?.id === first);
      await eventually(() => overHttp.results.some((r) => r.data?.sessionEvents?.snapshot?.id === first));
      await announcedTo(owner, sessionId, presence);

      await removeMember(owner, sessionId, member);
      for (const stream of [events, presence, output]) expect(await endedWith(stream)).toBe("NOT_FOUND");
      await overHttp.completed;
      expect(overHttp.results.at(-1)?.errors?.[0]?.extensions?.code).toBe("NOT_FOUND");

      // The owner's next command: the removed member's streams saw none of it.
      await ok(owner.token, "mutation($r: ID!) { abortRun(id: $r) { id } }", { r: slow });
      const next = await exec(owner.token, branchId, "echo after-removal");
      await ownerEvents.until(
        (r) => r.data?.sessionEvents?.kind === "RUN_FINISHED" && r.data.sessionEvents.run?.id === next,
      );
      const seen = JSON.stringify([events.results, presence.results, output.results, overHttp.results]);
      expect(seen).not.toContain(next);
      expect(seen).not.toContain("after-removal");
      // Nor can they subscribe again.
      const again = collect(client, RUN_OUTPUT, { r: next });
      expect(await endedWith(again)).toBe("NOT_FOUND");

      // Only those operations ended: the socket and the member's own account stream go on.
      await ok(member.token, `mutation { createApiKey(name: "still here") { apiKey { id } } }`);
      await account.until((r) => r.data?.accountEvents?.kind === "API_KEY_CREATED");
      overHttp.close();
      ownerEvents.dispose();
      account.dispose();
    } finally {
      await client.dispose();
      await ownerClient.dispose();
    }
  });

  test("a demoted editor keeps subscriptions that need VIEWER", async () => {
    const [owner, member] = [await signUp(), await signUp()];
    const { sessionId, branchId } = await sharedSession(owner, [[member, "EDITOR"]]);
    const client = wsClient(server.wsUrl, member.token);
    try {
      const events = collect(client, SESSION_EVENTS, { s: sessionId });
      await Bun.sleep(200);
      await checkpoint(owner.token, branchId);
      await events.until((r) => r.data?.sessionEvents?.kind === "SNAPSHOT_ADDED");
      await share(owner, sessionId, member, "VIEWER");
      const after = await checkpoint(owner.token, branchId);
      await events.until((r) => r.data?.sessionEvents?.snapshot?.id === after);
      expect(events.results.every((r) => !r.errors)).toBe(true);
      events.dispose();
    } finally {
      await client.dispose();
    }
  });

  test("deleting the session ends its subscriptions: sessionEvents after SESSION_DELETED, presence with NOT_FOUND", async () => {
    const [owner, member] = [await signUp(), await signUp()];
    const { sessionId } = await sharedSession(owner, [[member, "VIEWER"]]);
    const client = wsClient(server.wsUrl, member.token);
    try {
      const events = collect(client, SESSION_EVENTS, { s: sessionId });
      const presence = collect(client, PRESENCE, { s: sessionId });
      await announcedTo(owner, sessionId, presence);
      await ok(owner.token, "mutation($s: ID!) { deleteSession(id: $s) }", { s: sessionId });
      await events.until((r) => r.data?.sessionEvents?.kind === "SESSION_DELETED");
      await events.completed;
      expect(await endedWith(presence)).toBe("NOT_FOUND");
    } finally {
      await client.dispose();
    }
  });
});

describe("sign out everywhere", () => {
  test("ends every earlier token and the sockets and streams using them; the fresh token and API keys work", async () => {
    const user = await signUp();
    const second = (
      await ok("", `mutation($e: String!) { login(email: $e, password: "password123") { token } }`, {
        e: user.email,
      })
    ).login.token as string;
    const key = (await ok(user.token, `mutation { createApiKey(name: "ci") { secret } }`)).createApiKey
      .secret;
    const { sessionId } = await sharedSession(user);
    const ws = observedClient(user.token);
    const account = collect(ws.client, "subscription { accountEvents { kind } }");
    const stream = sse(second, SESSION_EVENTS, { s: sessionId });
    const room = connectRoom(server.url, `sessions/${sessionId}/chat`, second);
    const roomCloses = closesOf(room);
    await room.synced;
    await Bun.sleep(200);

    const signedOut = (await ok(user.token, "mutation { signOutEverywhere { signedOutAt token expiresAt } }"))
      .signOutEverywhere;
    expect(typeof signedOut.token).toBe("string");

    expect((await ws.closed).code).toBe(4401);
    await eventually(() => roomCloses.some((c) => c.code === 4401));
    await stream.completed;
    expect(stream.results.at(-1)?.errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
    for (const old of [user.token, second]) {
      const res = await server.gql("{ me { id } }", {}, old);
      expect(res.status).toBe(401);
      expect(codeOf(res)).toBe("UNAUTHENTICATED");
    }
    // The fresh token (issued in the same second as the cut) and a login right now both work.
    expect((await ok(signedOut.token, "{ me { id } }")).me.id).toBe(user.userId);
    const fresh = (
      await ok("", `mutation($e: String!) { login(email: $e, password: "password123") { token } }`, {
        e: user.email,
      })
    ).login.token;
    expect((await ok(fresh, "{ me { id } }")).me.id).toBe(user.userId);
    expect((await ok(key, "{ me { id } }")).me.id).toBe(user.userId);
    // An old token cannot open a socket again.
    const again = observedClient(user.token);
    expect((await again.closed).code).toBe(4401);
    account.dispose();
    room.provider.destroy();
    await ws.client.dispose();
    await again.client.dispose();
  });
});

describe("collaboration sockets", () => {
  test("a socket opened with a short-lived JWT closes when it expires and cannot write after", async () => {
    const [owner, member] = [await signUp(), await signUp()];
    const { sessionId } = await sharedSession(owner, [[member, "EDITOR"]]);
    // JWT_TTL_SECONDS cannot go below 60 s, so the server's own signer mints a 3-second access token.
    const shortLived = await server.tokens.signFor(
      "opencode.cloud/api",
      { sub: member.userId },
      Date.now() + 3000,
    );
    const name = `sessions/${sessionId}/chat`;
    const watcher = connectRoom(server.url, name, owner.token);
    const guest = connectRoom(server.url, name, shortLived);
    const closes = closesOf(guest);
    const ws = observedClient(shortLived);
    try {
      await Promise.all([watcher.synced, guest.synced]);
      guest.text.insert(0, "before;");
      await eventually(() => watcher.text.toString().includes("before;"));
      await eventually(() => closes.some((c) => c.code === 4401), 10_000);
      expect(closes[0]!.code).toBe(4401);
      expect((await ws.closed).code).toBe(4401);
      // Typing on, and reconnecting with the expired token: refused, and nothing lands.
      guest.text.insert(0, "after-expiry;");
      expect(await reconnect(guest, closes)).toBe(4401);
      watcher.text.insert(watcher.text.length, ";owner-after");
      await eventually(() => watcher.text.toString().includes("owner-after"));
      expect(watcher.text.toString()).not.toContain("after-expiry");
    } finally {
      guest.provider.destroy();
      watcher.provider.destroy();
      await ws.client.dispose();
    }
  });

  test("an EDITOR demoted to VIEWER is reconnected and can no longer write", async () => {
    const [owner, member] = [await signUp(), await signUp()];
    const { sessionId } = await sharedSession(owner, [[member, "EDITOR"]]);
    const name = `sessions/${sessionId}/chat`;
    const watcher = connectRoom(server.url, name, owner.token);
    const editor = connectRoom(server.url, name, member.token);
    const closes = closesOf(editor);
    try {
      await Promise.all([watcher.synced, editor.synced]);
      editor.text.insert(0, "as-editor;");
      await eventually(() => watcher.text.toString().includes("as-editor;"));
      await share(owner, sessionId, member, "VIEWER");
      await eventually(() => closes.some((c) => c.code === 4403));
      expect(await reconnect(editor, closes)).toBe("synced");
      editor.text.insert(0, "as-viewer;");
      watcher.text.insert(watcher.text.length, ";owner-after");
      // The viewer still reads (the owner's edit arrives), but its own edit never lands.
      await eventually(() => editor.text.toString().includes("owner-after"));
      await Bun.sleep(300);
      expect(watcher.text.toString()).not.toContain("as-viewer");
    } finally {
      editor.provider.destroy();
      watcher.provider.destroy();
    }
  });
});

describe("share links", () => {
  const create = async (owner: Account, sessionId: string, role = "EDITOR") =>
    (
      await ok(
        owner.token,
        "mutation($s: ID!, $r: Role!) { createShareLink(sessionId: $s, role: $r) { id token role } }",
        {
          s: sessionId,
          r: role,
        },
      )
    ).createShareLink as { id: string; token: string };
  const revoke = (token: string, id: string) =>
    server.gql("mutation($id: ID!) { revokeShareLink(id: $id) { id revokedAt active } }", { id }, token);
  const join = (token: string, link: string) =>
    server.gql("mutation($t: String!) { joinSession(token: $t) { id } }", { t: link }, token);

  test("owners list and revoke links; a revoked link closes its sockets and opens nothing again", async () => {
    const [owner, editor, outsider] = [await signUp(), await signUp(), await signUp()];
    const { sessionId } = await sharedSession(owner, [[editor, "EDITOR"]]);
    const link = await create(owner, sessionId);
    const listed = (
      await ok(
        owner.token,
        "query($s: ID!) { session(id: $s) { shareLinks { id role active revokedAt createdBy { id } } } }",
        {
          s: sessionId,
        },
      )
    ).session.shareLinks;
    expect(listed).toEqual([
      { id: link.id, role: "EDITOR", active: true, revokedAt: null, createdBy: { id: owner.userId } },
    ]);
    // Only owners see or revoke links.
    const asEditor = await server.gql(
      "query($s: ID!) { session(id: $s) { shareLinks { id } } }",
      { s: sessionId },
      editor.token,
    );
    expect(codeOf(asEditor)).toBe("FORBIDDEN");
    expect(codeOf(await revoke(editor.token, link.id))).toBe("FORBIDDEN");
    expect(codeOf(await revoke(outsider.token, link.id))).toBe("NOT_FOUND");

    const name = `sessions/${sessionId}/chat`;
    const watcher = connectRoom(server.url, name, owner.token);
    const guest = connectRoom(server.url, name, link.token);
    const closes = closesOf(guest);
    try {
      await Promise.all([watcher.synced, guest.synced]);
      guest.text.insert(0, "guest;");
      await eventually(() => watcher.text.toString().includes("guest;"));

      const revoked = await revoke(owner.token, link.id);
      expect(revoked.data!.revokeShareLink).toMatchObject({ id: link.id, active: false });
      expect(revoked.data!.revokeShareLink.revokedAt).not.toBeNull();
      await eventually(() => closes.length > 0);
      expect(closes[0]).toMatchObject({ code: 4401 });
      expect(closes[0]!.reason).toContain("revoked");
      guest.text.insert(0, "after-revoke;");
      expect(await reconnect(guest, closes)).toBe(4401);
      expect(closes.at(-1)!.reason).toContain("revoked");
      // A fresh client with the link is refused the same way.
      const late = connectRoom(server.url, name, link.token);
      expect((await late.closed).code).toBe(4401);
      late.provider.destroy();
      watcher.text.insert(watcher.text.length, ";owner-after");
      await eventually(() => watcher.text.toString().includes("owner-after"));
      expect(watcher.text.toString()).not.toContain("after-revoke");

      const joined = await join(outsider.token, link.token);
      expect(codeOf(joined)).toBe("BAD_USER_INPUT");
      expect(joined.errors![0]!.extensions!.reason).toBe("revoked");
    } finally {
      guest.provider.destroy();
      watcher.provider.destroy();
    }
  });

  test("removeMember closes the member's sockets, share-link ones too; with the link revoked they stay out", async () => {
    const [owner, member] = [await signUp(), await signUp()];
    const { sessionId } = await sharedSession(owner);
    const link = await create(owner, sessionId);
    expect((await join(member.token, link.token)).data!.joinSession.id).toBe(sessionId);
    const name = `sessions/${sessionId}/chat`;
    const watcher = connectRoom(server.url, name, owner.token);
    const asMember = connectRoom(server.url, name, member.token);
    const asLink = connectRoom(server.url, name, link.token);
    const memberCloses = closesOf(asMember);
    const linkCloses = closesOf(asLink);
    try {
      await Promise.all([watcher.synced, asMember.synced, asLink.synced]);
      await removeMember(owner, sessionId, member);
      await eventually(() => memberCloses.length > 0 && linkCloses.length > 0);
      expect(memberCloses[0]!.code).toBe(4403);
      expect(linkCloses[0]!.code).toBe(4403);
      // The member's own credential no longer opens the room (4404: not theirs); the link still does,
      // as anyone's who holds it...
      expect(await reconnect(asMember, memberCloses)).toBe(4404);
      expect(await reconnect(asLink, linkCloses)).toBe("synced");
      // ...until the owner revokes it: then neither the link socket nor a rejoin gets in.
      expect(codeOf(await revoke(owner.token, link.id))).toBeUndefined();
      await eventually(() => linkCloses.some((c) => c.code === 4401));
      asLink.text.insert(0, "sneaky;");
      asMember.text.insert(0, "sneaky;");
      expect(await reconnect(asLink, linkCloses)).toBe(4401);
      expect(await reconnect(asMember, memberCloses)).toBe(4404);
      watcher.text.insert(watcher.text.length, ";owner-after");
      await eventually(() => watcher.text.toString().includes("owner-after"));
      expect(watcher.text.toString()).not.toContain("sneaky");
      const rejoin = await join(member.token, link.token);
      expect(codeOf(rejoin)).toBe("BAD_USER_INPUT");
      const session = await server.gql(
        "query($s: ID!) { session(id: $s) { id } }",
        { s: sessionId },
        member.token,
      );
      expect(codeOf(session)).toBe("NOT_FOUND");
    } finally {
      for (const c of [asLink, asMember, watcher]) c.provider.destroy();
    }
  });

  test("links minted before links were revocable (no link id) are refused", async () => {
    const owner = await signUp();
    const other = await signUp();
    const { sessionId } = await sharedSession(owner);
    const legacy = await server.tokens.signFor(
      "opencode.cloud/share",
      { sid: sessionId, role: "EDITOR" },
      Date.now() + 3600_000,
    );
    const joined = await join(other.token, legacy);
    expect(codeOf(joined)).toBe("BAD_USER_INPUT");
    expect(joined.errors![0]!.extensions!.reason).toBe("outdated");
    const guest = connectRoom(server.url, `sessions/${sessionId}/chat`, legacy);
    expect((await guest.closed).code).toBe(4401);
    guest.provider.destroy();
  });
});
