// The ASK and ALLOW rulesets (agent/permissions.ts) and the permission event translation
// (agent/events.ts) against the real `opencode serve` and the fake model: a session PATCHed with ASK
// pauses a bash call on permission.asked (id, patterns, the command, the tool call); ONCE lets it run;
// REJECT fails the call with the message and the turn goes on; PATCHing ALLOW afterwards asks nothing.
// (Runs on the host; the platform's end-to-end path through answerPermission is in permissions.e2e.)
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type AgentEvent, permissionAsked, permissionReplied } from "../../agent/events.ts";
import { offlineEnv, opencodeBinary, projectConfig } from "../../agent/opencode-binary.ts";
import { permissionRules } from "../../agent/permissions.ts";
import { type FakeModel, startFakeModel } from "../../scripts/fake-model.ts";

const bin = opencodeBinary();
let root: string;
let fake: FakeModel;
let server: ReturnType<typeof Bun.spawn> | null = null;
let base = "";
const auth = `Basic ${btoa("opencode:test-password")}`;
const events: { type: string; properties: Record<string, any> }[] = [];
const stream = new AbortController();

async function api(method: string, path: string, body?: unknown) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: auth, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function waitFor<T>(find: () => T | undefined, what: string, ms = 60_000): Promise<T> {
  for (const end = Date.now() + ms; Date.now() < end; await Bun.sleep(50)) {
    const found = find();
    if (found !== undefined) return found;
  }
  throw new Error(`timed out waiting for ${what}: ${JSON.stringify(events.map((e) => e.type))}`);
}

beforeAll(async () => {
  if (!bin) return;
  root = mkdtempSync(join(tmpdir(), "occ-permissions-"));
  const project = join(root, "project");
  mkdirSync(project);
  fake = startFakeModel({
    apiKey: "sk-p",
    scenarios: [
      {
        match: "first",
        steps: [
          { tool: "bash", args: { command: "echo one > one.txt; cat one.txt", description: "one" } },
          { text: "first done" },
        ],
      },
      {
        match: "second",
        steps: [
          { tool: "bash", args: { command: "rm -rf ./important", description: "two" } },
          { text: "second done" },
        ],
      },
      {
        match: "third",
        steps: [
          { tool: "bash", args: { command: "echo three", description: "three" } },
          { text: "third done" },
        ],
      },
    ],
  });
  server = Bun.spawn([bin, "serve", "--port", "0", "--hostname", "127.0.0.1"], {
    cwd: project,
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      ...offlineEnv(join(root, "state")),
      OPENCODE_SERVER_PASSWORD: "test-password",
      OPENCODE_CONFIG_CONTENT: projectConfig(fake.baseURL, "sk-p"),
    },
    stdout: "pipe",
    stderr: "ignore",
  });
  const reader = (server.stdout as ReadableStream<Uint8Array>).getReader();
  let seen = "";
  while (!base) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`opencode serve exited: ${seen}`);
    seen += new TextDecoder().decode(value);
    base = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(seen)?.[1] ?? "";
  }
  const res = await fetch(`${base}/event`, { headers: { authorization: auth }, signal: stream.signal });
  void (async () => {
    let buffer = "";
    try {
      for await (const chunk of res.body!) {
        buffer += new TextDecoder().decode(chunk);
        for (let at = buffer.indexOf("\n\n"); at >= 0; at = buffer.indexOf("\n\n")) {
          const data = buffer
            .slice(0, at)
            .split("\n")
            .filter((l) => l.startsWith("data:"))
            .map((l) => l.slice(5).trim())
            .join("");
          buffer = buffer.slice(at + 2);
          if (data) events.push(JSON.parse(data));
        }
      }
    } catch {
      // the stream is closed at the end
    }
  })();
}, 90_000);

afterAll(async () => {
  stream.abort();
  server?.kill("SIGKILL");
  await server?.exited;
  await fake?.close();
  if (root) rmSync(root, { recursive: true, force: true });
});

/** One prompt; resolves with the events from its start, once `until` holds. */
async function turn(sessionId: string, text: string) {
  const from = events.length;
  await api("POST", `/session/${sessionId}/prompt_async`, { parts: [{ type: "text", text }] });
  return from;
}
const idleAfter = (from: number, sessionId: string) =>
  waitFor(
    () => events.slice(from).find((e) => e.type === "session.idle" && e.properties.sessionID === sessionId),
    "session.idle",
  );
const lastBash = (from: number) =>
  events
    .slice(from)
    .filter((e) => e.type === "message.part.updated" && e.properties.part?.tool === "bash")
    .at(-1)?.properties.part.state;

test.skipIf(!bin)(
  "ASK pauses on permission.asked; ONCE runs the call, REJECT fails it and the turn goes on; ALLOW asks nothing",
  async () => {
    const session = await api("POST", "/session", { title: "permissions" });
    await api("PATCH", `/session/${session.id}`, { permission: permissionRules("ASK") });

    // 1. Asked, answered ONCE: the command runs.
    let from = await turn(session.id, "first please");
    const raw = await waitFor(() => events.slice(from).find((e) => e.type === "permission.asked"), "an ask");
    const asked = permissionAsked(raw.properties) as Extract<AgentEvent, { type: "permission.asked" }>;
    expect(asked).toMatchObject({
      type: "permission.asked",
      permission: "bash",
      patterns: ["echo one > one.txt", "cat one.txt"],
      metadata: { command: "echo one > one.txt; cat one.txt" },
    });
    expect(asked.id).toStartWith("per_");
    expect(asked.callId).toStartWith("call_");
    expect(asked.messageId).toStartWith("msg_");
    expect(asked.always!.length).toBeGreaterThan(0);
    // Paused: no result while nobody answers.
    await Bun.sleep(500);
    expect(lastBash(from)?.status).not.toBe("completed");
    expect((await api("GET", "/permission")).map((p: { id: string }) => p.id)).toEqual([asked.id]);
    await api("POST", `/permission/${asked.id}/reply`, { reply: "once" });
    await idleAfter(from, session.id);
    expect(lastBash(from)).toMatchObject({ status: "completed", output: "one\n" });
    const replied = events.slice(from).find((e) => e.type === "permission.replied")!;
    expect(permissionReplied(replied.properties)).toEqual({
      type: "permission.replied",
      id: asked.id,
      reply: "once",
      userId: null,
    });

    // 2. Rejected with a message: the call fails with it, and the model is asked for the next step.
    from = await turn(session.id, "second please");
    const second = await waitFor(
      () => events.slice(from).find((e) => e.type === "permission.asked"),
      "an ask",
    );
    const requestsBefore = fake.requests.length;
    await api("POST", `/permission/${second.properties.id}/reply`, {
      reply: "reject",
      message: "never delete that",
    });
    await idleAfter(from, session.id);
    expect(lastBash(from).status).toBe("error");
    expect(lastBash(from).error).toContain("never delete that");
    expect(fake.requests.length).toBeGreaterThan(requestsBefore); // the turn went on
    const final = events
      .slice(from)
      .filter((e) => e.type === "message.part.updated" && e.properties.part?.type === "text")
      .at(-1);
    expect(final?.properties.part.text).toBe("second done");

    // 3. Back to ALLOW (appended after the ASK rules): nothing is asked.
    await api("PATCH", `/session/${session.id}`, { permission: permissionRules("ALLOW") });
    from = await turn(session.id, "third please");
    await idleAfter(from, session.id);
    expect(events.slice(from).some((e) => e.type === "permission.asked")).toBe(false);
    expect(lastBash(from)).toMatchObject({ status: "completed", output: "three\n" });
  },
  120_000,
);

test("metadata strings are cut and anything but once/always/reject is not a reply", () => {
  const big = "d".repeat(200_000);
  const e = permissionAsked({
    id: "per_1",
    permission: "edit",
    patterns: ["a.txt"],
    metadata: { diff: big },
  });
  expect((e as unknown as { metadata: { diff: string } }).metadata.diff.length).toBeLessThan(70_000);
  expect(permissionReplied({ requestID: "per_1", reply: "maybe" })).toBeNull();
});
