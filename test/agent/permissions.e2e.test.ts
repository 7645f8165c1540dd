// Permission requests through the platform, with the real opencode binary in the branch's live server
// and the fake model: in ASK mode a turn that runs bash pauses on AgentPermissionAsked; an editor's
// ONCE lets it finish; REJECT makes the tool call fail and the turn go on; a viewer's answer is
// FORBIDDEN, a stranger's NOT_FOUND; the ask and the answer are events of the run (replayed too);
// back in ALLOW mode nothing is asked.
import { afterAll, beforeAll, expect } from "bun:test";
import { type AgentHarness, startAgentHarness } from "../utils/agent.ts";
import { skip } from "../utils/isolation.ts";
import { codeOf } from "../utils/server.ts";
import { collect, wsClient } from "../utils/ws.ts";

let h: AgentHarness;
beforeAll(async () => {
  h = await startAgentHarness([
    {
      match: "approve",
      steps: [
        {
          tool: "bash",
          args: { command: "echo approved > approved.txt; cat approved.txt", description: "write" },
        },
        { text: "It ran." },
      ],
    },
    {
      match: "refuse",
      steps: [
        { tool: "bash", args: { command: "rm -rf important", description: "delete" } },
        { text: "Skipped it." },
      ],
    },
    {
      match: "unattended",
      steps: [{ tool: "bash", args: { command: "echo free", description: "x" } }, { text: "Free." }],
    },
  ]);
});
afterAll(() => h.close());

const RUN_OUTPUT = `subscription($r: ID!) { runOutput(runId: $r) {
  __typename
  ... on AgentPermissionAsked { seq runId id permission patterns always toolCallId toolMessageId metadata }
  ... on AgentPermissionReplied { seq runId id reply feedback user { id } }
  ... on AgentToolEvent { seq phase callId tool input output error }
  ... on AgentTextDelta { seq text }
  ... on AgentStepFinished { seq inputTokens }
  ... on AgentError { seq message }
  ... on AgentDone { seq }
  ... on RunFinished { seq status snapshot { id file(path: "approved.txt") { content } } }
} }`;

const ANSWER = `mutation($r: ID!, $p: String!, $reply: PermissionReply!, $m: String) {
  answerPermission(runId: $r, permissionId: $p, reply: $reply, message: $m) { id status } }`;

skip.unlessAgent("ASK: the turn waits for an editor's answer; ONCE runs the call, REJECT fails it and the turn goes on", async () => {
  const s = (
    await h.gql(
      `mutation { createSession(input: { title: "asks" }) { id agentPermissions mainBranch { id } } }`,
    )
  ).createSession;
  expect(s.agentPermissions).toBe("ALLOW");
  const [editor, viewer, stranger] = [
    await h.server.signUp(),
    await h.server.signUp(),
    await h.server.signUp(),
  ];
  for (const [who, role] of [
    [editor, "EDITOR"],
    [viewer, "VIEWER"],
  ] as const)
    await h.gql(
      `mutation($s: ID!, $e: String!, $r: Role!) { shareSession(sessionId: $s, email: $e, role: $r) { role } }`,
      {
        s: s.id,
        e: who.email,
        r: role,
      },
    );
  const setMode = (mode: string, token = h.token) =>
    h.server.gql(
      `mutation($s: ID!, $m: AgentPermissionMode!) { setAgentPermissions(sessionId: $s, mode: $m) { agentPermissions } }`,
      { s: s.id, m: mode },
      token,
    );
  expect(codeOf(await setMode("ASK", editor.token))).toBe("FORBIDDEN");
  expect((await setMode("ASK")).data!.setAgentPermissions.agentPermissions).toBe("ASK");

  const client = wsClient(h.server.wsUrl, h.token);
  const startTurn = async (text: string) => {
    const run = (
      await h.gql(`mutation($b: ID!, $t: String!) { prompt(branchId: $b, text: $t) { id } }`, {
        b: s.mainBranch.id,
        t: text,
      })
    ).prompt;
    const out = collect(client, RUN_OUTPUT, { r: run.id });
    const asked = (await out.until((r) => r.data?.runOutput.__typename === "AgentPermissionAsked", 120_000))
      .data.runOutput;
    return { run, out, asked };
  };

  // 1. Asked; nobody but an editor may answer; ONCE lets the command run.
  const first = await startTurn("approve this");
  expect(first.asked).toMatchObject({
    runId: first.run.id,
    permission: "bash",
    patterns: ["echo approved > approved.txt", "cat approved.txt"],
    metadata: { command: "echo approved > approved.txt; cat approved.txt" },
  });
  expect(first.asked.toolCallId).toStartWith("call_");
  expect(first.asked.toolMessageId).toStartWith("msg_");
  // It waits: no tool result, no end while unanswered.
  await Bun.sleep(1000);
  expect(
    first.out.results.some(
      (r) => r.data.runOutput.phase === "FINISHED" || r.data.runOutput.__typename === "RunFinished",
    ),
  ).toBe(false);
  const answer = (
    token: string,
    reply: string,
    permissionId = first.asked.id,
    runId = first.run.id,
    m?: string,
  ) => h.server.gql(ANSWER, { r: runId, p: permissionId, reply, m }, token);
  expect(codeOf(await answer(viewer.token, "ONCE"))).toBe("FORBIDDEN");
  const refused = await answer(stranger.token, "ONCE");
  expect(codeOf(refused)).toBe("NOT_FOUND");
  expect(codeOf(await answer(editor.token, "ONCE", "per_not_asked"))).toBe("NOT_FOUND");
  const ok = await answer(editor.token, "ONCE");
  expect(ok.errors).toBeUndefined();
  expect(ok.data!.answerPermission.id).toBe(first.run.id);
  const end1 = (await first.out.until((r) => r.data?.runOutput.__typename === "RunFinished", 120_000)).data
    .runOutput;
  expect(end1.status).toBe("SUCCEEDED");
  expect(end1.snapshot.file.content).toBe("approved\n");
  const events1 = first.out.results.map((r) => r.data.runOutput);
  const replied = events1.filter((e) => e.__typename === "AgentPermissionReplied");
  expect(replied).toEqual([
    {
      __typename: "AgentPermissionReplied",
      seq: replied[0]!.seq,
      runId: first.run.id,
      id: first.asked.id,
      reply: "ONCE",
      feedback: null,
      user: { id: editor.userId },
    },
  ]);
  const bash1 = events1.find((e) => e.phase === "FINISHED" && e.tool === "bash");
  expect(bash1).toMatchObject({ callId: first.asked.toolCallId, output: "approved\n", error: null });
  expect(events1.map((e) => e.seq)).toEqual(events1.map((_, i) => i + 1));
  // Answered once only; the ask and the answer are in the run's stored record.
  expect(codeOf(await answer(editor.token, "ONCE"))).toBe("CONFLICT");
  const replay = collect(client, RUN_OUTPUT, { r: first.run.id });
  await replay.until((r) => r.data?.runOutput.__typename === "RunFinished");
  expect(replay.results.map((r) => r.data.runOutput)).toEqual(events1);

  // 2. REJECT with a message: the call fails with it, the model gets the next step, the turn ends well.
  const second = await startTurn("refuse this");
  expect(second.asked.metadata).toEqual({ command: "rm -rf important" });
  const rejected = await answer(h.token, "REJECT", second.asked.id, second.run.id, "never delete that");
  expect(rejected.errors).toBeUndefined();
  const end2 = (await second.out.until((r) => r.data?.runOutput.__typename === "RunFinished", 120_000)).data
    .runOutput;
  expect(end2.status).toBe("SUCCEEDED");
  const events2 = second.out.results.map((r) => r.data.runOutput);
  expect(events2.find((e) => e.__typename === "AgentPermissionReplied")).toMatchObject({
    reply: "REJECT",
    feedback: "never delete that",
  });
  const bash2 = events2.find((e) => e.phase === "FINISHED" && e.tool === "bash");
  expect(bash2.error).toContain("never delete that");
  expect(
    events2
      .filter((e) => e.__typename === "AgentTextDelta")
      .map((e) => e.text)
      .join(""),
  ).toBe("Skipped it.");

  // 3. Back to ALLOW: nothing is asked.
  await setMode("ALLOW");
  const run3 = (
    await h.gql(`mutation($b: ID!) { prompt(branchId: $b, text: "unattended run") { id } }`, {
      b: s.mainBranch.id,
    })
  ).prompt;
  const out3 = collect(client, RUN_OUTPUT, { r: run3.id });
  const end3 = (await out3.until((r) => r.data?.runOutput.__typename === "RunFinished", 120_000)).data
    .runOutput;
  expect(end3.status).toBe("SUCCEEDED");
  expect(out3.results.some((r) => r.data.runOutput.__typename === "AgentPermissionAsked")).toBe(false);
  await client.dispose();
}, 300_000);
