// The attach proxy (Branch.agentUrl) against the real server and a live opencode in the branch's
// sandbox: no credential or a bad one is 401 with a Basic challenge; a stranger's valid credential
// and a missing branch read the same 404; viewers (members, read-only keys, viewer links) read but
// every write is 403; what would act outside runs is refused even for owners; the client's
// credential never reaches opencode and the server's password and gateway token never come back;
// an event stream opened through the proxy ends when the access it was opened with ends.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { type AgentHarness, startAgentHarness } from "../utils/agent.ts";
import { skip } from "../utils/isolation.ts";

let h: AgentHarness;
let owner: { token: string; userId: string; email: string };
let sessionId: string;
let branchId: string;
let url: string;

const basic = (password: string, user = "anyone") => ({
  authorization: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`,
});
const json = { "content-type": "application/json" };

async function as(token: string | null, query: string, variables: Record<string, unknown> = {}) {
  const res = await h.server.gql(query, variables, token ?? undefined);
  if (res.errors) throw new Error(JSON.stringify(res.errors));
  return res.data!;
}

beforeAll(async () => {
  h = await startAgentHarness([{ steps: [{ text: "fine" }] }]);
  owner = { token: h.token, userId: "", email: "" };
  const s = (
    await h.gql(`mutation { createSession(input: { title: "attach" }) { id mainBranch { id agentUrl } } }`)
  ).createSession;
  sessionId = s.id;
  branchId = s.mainBranch.id;
  url = s.mainBranch.agentUrl;
});
afterAll(() => h?.close());

async function member(role: "VIEWER" | "EDITOR") {
  const user = await h.server.signUp();
  await h.gql(
    `mutation($s: ID!, $e: String!, $r: Role!) { shareSession(sessionId: $s, email: $e, role: $r) { role } }`,
    {
      s: sessionId,
      e: user.email,
      r: role,
    },
  );
  return user;
}

const keyOf = async (token: string, scopes: string[]) =>
  (
    await as(
      token,
      `mutation($s: [String!]) { createApiKey(name: "k", scopes: $s) { secret apiKey { id } } }`,
      {
        s: scopes,
      },
    )
  ).createApiKey as { secret: string; apiKey: { id: string } };

test("no credential, or a bad one: 401 with a Basic challenge, before anything about the branch is told", async () => {
  for (const target of [url, `${h.server.url}/agent/br_doesnotexist00000000000000`]) {
    const none = await fetch(`${target}/session`);
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toStartWith("Basic");
    const bad = await fetch(`${target}/session`, { headers: basic("occ_not-a-real-key") });
    expect(bad.status).toBe(401);
    const garbage = await fetch(`${target}/session`, { headers: { authorization: "Basic !!!" } });
    expect(garbage.status).toBe(401);
  }
});

test("a stranger's valid credential reads exactly like a branch that does not exist", async () => {
  const stranger = await h.server.signUp();
  const key = await keyOf(stranger.token, ["read", "write"]);
  const missing = await fetch(`${h.server.url}/agent/br_doesnotexist00000000000000/session`, {
    headers: basic(key.secret),
  });
  expect(missing.status).toBe(404);
  const missingBody = await missing.text();
  for (const [method, path] of [
    ["GET", "/session"],
    ["GET", "/global/event"],
    ["POST", "/session"],
    ["POST", "/session/ses_x/message"],
  ] as const) {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: { ...basic(key.secret), ...json },
      body: method === "POST" ? "{}" : undefined,
    });
    expect(res.status).toBe(404);
    expect(await res.text()).toBe(missingBody);
  }
  // A JWT as a Bearer token: the same.
  expect(
    (await fetch(`${url}/session`, { headers: { authorization: `Bearer ${stranger.token}` } })).status,
  ).toBe(404);
});

skip.unlessAgent("viewers read; every write is 403 (members, read-only keys of editors, viewer share links)", async () => {
  const viewer = await member("VIEWER");
  const editor = await member("EDITOR");
  const readOnlyKey = (await keyOf(editor.token, ["read"])).secret;
  const link = (
    await h.gql(`mutation($s: ID!) { createShareLink(sessionId: $s, role: VIEWER) { token } }`, {
      s: sessionId,
    })
  ).createShareLink.token;
  for (const credential of [viewer.token, readOnlyKey, link]) {
    const list = await fetch(`${url}/session`, { headers: basic(credential) });
    expect(list.status).toBe(200);
    for (const [method, path] of [
      ["POST", "/session"],
      ["POST", "/session/ses_x/message"],
      ["POST", "/session/ses_x/prompt_async"],
      ["POST", "/session/ses_x/abort"],
      ["DELETE", "/session/ses_x"],
      ["POST", "/permission/per_x/reply"],
    ] as const) {
      const res = await fetch(`${url}${path}`, {
        method,
        headers: { ...basic(credential), ...json },
        body: "{}",
      });
      expect(res.status).toBe(403);
      expect((await res.json()).data.code).toBe("FORBIDDEN");
    }
  }
  // An editor's share link may write.
  const editorLink = (
    await h.gql(`mutation($s: ID!) { createShareLink(sessionId: $s, role: EDITOR) { token } }`, {
      s: sessionId,
    })
  ).createShareLink.token;
  const created = await fetch(`${url}/session`, {
    method: "POST",
    headers: { ...basic(editorLink), ...json },
    body: "{}",
  });
  expect(created.status).toBe(200);
  expect((await created.json()).id).toMatch(/^ses_/);
}, 120_000);

test("what would act outside runs or past the sandbox is refused, owners included", async () => {
  const key = (await keyOf(owner.token, ["read", "write"])).secret;
  for (const [method, path] of [
    ["GET", "/pty"],
    ["POST", "/pty"],
    ["PATCH", "/config"],
    ["PATCH", "/global/config"],
    ["PUT", "/auth/openai"],
    ["POST", "/instance/dispose"],
    ["POST", "/global/dispose"],
    ["POST", "/mcp"],
    ["POST", "/api/session/ses_x/prompt"],
    ["POST", "/experimental/workspace"],
    ["POST", "/provider/openai/oauth/authorize"],
  ] as const) {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: { ...basic(key), ...json },
      body: method === "GET" ? undefined : "{}",
    });
    expect(res.status).toBe(403);
  }
});

skip.unlessAgent("the client's credential never reaches opencode; the server's password and gateway token never come back", async () => {
  const key = (await keyOf(owner.token, ["read", "write"])).secret;
  const bodies: string[] = [];
  const read = async (path: string, init: RequestInit = {}) => {
    const res = await fetch(`${url}${path}`, {
      ...init,
      headers: { ...basic(key, "opencode"), "accept-encoding": "identity", ...(init.headers ?? {}) },
    });
    expect(res.status).toBeLessThan(400);
    bodies.push([...res.headers].map(([k, v]) => `${k}: ${v}`).join("\n"), await res.text());
  };
  await read("/path");
  await read("/config");
  await read("/config/providers");
  await read("/provider");
  const session = await (
    await fetch(`${url}/session`, { method: "POST", headers: { ...basic(key), ...json }, body: "{}" })
  ).json();
  await read(`/session/${session.id}/message`, {
    method: "POST",
    headers: json,
    body: JSON.stringify({ parts: [{ type: "text", text: "hi" }] }),
  });
  await read(`/session/${session.id}/message`);
  // opencode accepted the requests, so it got its own password, not the client's key.
  // Its private fields, read here only to look for them in what came back.
  const server = h.server.agents!.running(branchId) as unknown as { password: string; token: string };
  expect(server).toBeDefined();
  const all = bodies.join("\n");
  // (Booleans, so a failure does not print the secrets.)
  expect(all.includes(server.password)).toBe(false);
  expect(all.includes(server.token)).toBe(false);
  expect(all.includes(key)).toBe(false);
  expect(all).toContain("opencode.cloud"); // the placeholder the config holds instead of the token
}, 120_000);

skip.unlessAgent("an event stream opened through the proxy ends when the access it was opened with ends", async () => {
  const open = async (credential: string) => {
    const res = await fetch(`${url}/global/event`, { headers: basic(credential) });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    await reader.read(); // the server's hello
    /** Whether the stream ends within `ms` (false: still open then). */
    return async (ms = 15_000) => {
      const deadline = Date.now() + ms;
      for (;;) {
        const next = await Promise.race([
          reader.read(),
          Bun.sleep(Math.max(0, deadline - Date.now())).then(() => "timeout" as const),
        ]);
        if (next === "timeout") return false;
        if (next.done) return true;
      }
    };
  };

  // A member removed from the session.
  const removed = await member("VIEWER");
  const removedUser = (await as(removed.token, "{ me { id } }")).me.id;
  const ended1 = await open(removed.token);
  expect(await ended1(1000)).toBe(false); // open while the access lasts
  await h.gql(`mutation($s: ID!, $u: ID!) { removeMember(sessionId: $s, userId: $u) }`, {
    s: sessionId,
    u: removedUser,
  });
  expect(await ended1()).toBe(true);

  // An API key revoked.
  const editor = await member("EDITOR");
  const key = await keyOf(editor.token, ["read"]);
  const ended2 = await open(key.secret);
  expect(await ended2(1000)).toBe(false); // open while the access lasts
  await as(editor.token, `mutation($id: ID!) { revokeApiKey(id: $id) { id } }`, { id: key.apiKey.id });
  expect(await ended2()).toBe(true);

  // A share link revoked.
  const link = (
    await h.gql(`mutation($s: ID!) { createShareLink(sessionId: $s, role: VIEWER) { id token } }`, {
      s: sessionId,
    })
  ).createShareLink;
  const ended3 = await open(link.token);
  expect(await ended3(1000)).toBe(false); // open while the access lasts
  await h.gql(`mutation($id: ID!) { revokeShareLink(id: $id) { id } }`, { id: link.id });
  expect(await ended3()).toBe(true);
  // And it opens nothing any more.
  expect((await fetch(`${url}/session`, { headers: basic(link.token) })).status).toBe(401);
}, 120_000);
