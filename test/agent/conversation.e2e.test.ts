// Snapshot.conversation with the real opencode binary and the fake model: a turn's snapshot holds the
// conversation (prompt, tool calls with input and output, answer, tokens); a fork's snapshot shows the
// parent's messages and then its own while the parent's stays as it was; a snapshot before any turn
// has none; viewers may read it, strangers learn nothing.
import { afterAll, beforeAll, expect } from "bun:test";
import { type AgentHarness, startAgentHarness } from "../utils/agent.ts";
import { skip } from "../utils/isolation.ts";
import { codeOf } from "../utils/server.ts";

let h: AgentHarness;
beforeAll(async () => {
  h = await startAgentHarness([
    {
      match: "write",
      steps: [
        { tool: "write", args: { filePath: "/workspace/hello.txt", content: "hello\n" } },
        { tool: "bash", args: { command: "cat hello.txt", description: "show it" } },
        { text: "Wrote and printed hello.txt." },
      ],
    },
    { match: "again", steps: [{ text: "Still here, continuing." }] },
  ]);
});
afterAll(() => h.close());

const CONVERSATION = `query($s: ID!, $last: Int) { snapshot(id: $s) { conversation(last: $last) {
  sessionId totalMessages truncated
  messages { role text finish model tokens { input output } completedAt
    toolCalls { tool status input output title inputTruncated outputTruncated startedAt finishedAt } }
} } }`;

async function turn(branchId: string, text: string): Promise<string> {
  const run = (
    await h.gql(`mutation($b: ID!, $t: String!) { prompt(branchId: $b, text: $t) { id } }`, {
      b: branchId,
      t: text,
    })
  ).prompt;
  for (let i = 0; i < 2400; i++) {
    const r = (await h.gql(`query($r: ID!) { run(id: $r) { status snapshot { id } } }`, { r: run.id })).run;
    if (!["QUEUED", "RUNNING"].includes(r.status)) {
      expect(r.status).toBe("SUCCEEDED");
      return r.snapshot.id;
    }
    await Bun.sleep(50);
  }
  throw new Error("the turn did not end");
}

skip.unlessAgent("a turn's snapshot holds its conversation; a fork's shows the parent's and its own", async () => {
  const s = (
    await h.gql(
      `mutation { createSession(input: { title: "conversation" }) { id mainBranch { id } rootSnapshot { id } } }`,
    )
  ).createSession;
  expect((await h.gql(CONVERSATION, { s: s.rootSnapshot.id })).snapshot.conversation).toBeNull();

  const first = await turn(s.mainBranch.id, "please write hello");
  const c1 = (await h.gql(CONVERSATION, { s: first })).snapshot.conversation;
  expect(c1.messages.map((m: any) => m.role)).toEqual(["USER", "ASSISTANT", "ASSISTANT", "ASSISTANT"]);
  expect(c1.totalMessages).toBe(4);
  expect(c1.truncated).toBe(false);
  expect(c1.messages[0].text).toContain("please write hello");
  const tools = c1.messages.flatMap((m: any) => m.toolCalls);
  expect(tools.map((t: any) => [t.tool, t.status])).toEqual([
    ["write", "completed"],
    ["bash", "completed"],
  ]);
  expect(tools[0].input).toEqual({ filePath: "/workspace/hello.txt", content: "hello\n" });
  expect(tools[1]).toMatchObject({ input: { command: "cat hello.txt" }, title: "cat hello.txt" });
  expect(tools[1].output).toContain("hello");
  expect(new Date(tools[1].finishedAt).getTime()).toBeGreaterThanOrEqual(
    new Date(tools[1].startedAt).getTime(),
  );
  const answer = c1.messages.at(-1);
  expect(answer).toMatchObject({ text: "Wrote and printed hello.txt.", finish: "stop", model: "fake-model" });
  expect(answer.tokens).toEqual({ input: 100, output: 20 });

  // The fork continues the conversation in its own branch.
  const fork = (await h.gql(`mutation($s: ID!) { fork(snapshotId: $s, name: "more") { id } }`, { s: first }))
    .fork;
  const second = await turn(fork.id, "again please");
  const c2 = (await h.gql(CONVERSATION, { s: second })).snapshot.conversation;
  expect(c2.sessionId).toBe(c1.sessionId);
  expect(c2.messages.filter((m: any) => m.role === "USER").map((m: any) => m.text)).toEqual([
    expect.stringContaining("please write hello"),
    expect.stringContaining("again please"),
  ]);
  expect(c2.messages.slice(0, 4)).toEqual(c1.messages);
  expect(c2.messages.at(-1).text).toBe("Still here, continuing.");
  // The parent's snapshot is unchanged; `last` keeps the latest ones.
  expect((await h.gql(CONVERSATION, { s: first })).snapshot.conversation).toEqual(c1);
  const latest = (await h.gql(CONVERSATION, { s: second, last: 2 })).snapshot.conversation;
  expect(latest.messages).toEqual(c2.messages.slice(-2));
  expect(latest).toMatchObject({ totalMessages: 6, truncated: true });

  const bad = await h.server.gql(CONVERSATION, { s: second, last: 0 }, h.token);
  expect(codeOf(bad)).toBe("BAD_USER_INPUT");

  // A viewer may read it; a stranger learns nothing.
  const viewer = await h.server.signUp();
  await h.gql(
    `mutation($s: ID!, $e: String!) { shareSession(sessionId: $s, email: $e, role: VIEWER) { role } }`,
    {
      s: s.id,
      e: viewer.email,
    },
  );
  const seen = await h.server.gql(CONVERSATION, { s: second }, viewer.token);
  expect(seen.errors).toBeUndefined();
  expect(seen.data!.snapshot.conversation).toEqual(c2);
  const stranger = await h.server.signUp();
  const refused = await h.server.gql(CONVERSATION, { s: second }, stranger.token);
  expect(codeOf(refused)).toBe("NOT_FOUND");
  expect(refused.text).not.toContain("again please");
}, 240_000);
