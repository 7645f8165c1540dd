// The opencode agent through the public API: the real binary in the branch's sandbox, the scripted
// fake model behind the gateway, events over graphql-ws.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { WebsocketProvider } from "y-websocket";
import * as Y from "yjs";
import { type FakeModel, startFakeModel } from "../../scripts/fake-model.ts";
import { type AgentHarness, startAgentHarness } from "../utils/agent.ts";
import { skip } from "../utils/isolation.ts";
import { startTestServer, type TestServer } from "../utils/server.ts";
import { collect, wsClient } from "../utils/ws.ts";

let h: AgentHarness;
let fake: FakeModel;
let server: TestServer;
let token: string;
let gql: AgentHarness["gql"];

beforeAll(async () => {
  h = await startAgentHarness([
    {
      match: "write",
      steps: [
        { tool: "write", args: { filePath: "/workspace/hello.txt", content: "hello\n" } },
        { tool: "bash", args: { command: "cat hello.txt", description: "show it" } },
        { text: "All done here." },
      ],
    },
    { match: "again", steps: [{ text: "continuing" }] },
    {
      match: "slow",
      chunkDelayMs: 250,
      steps: [{ text: "one two three four five six seven eight nine ten eleven twelve" }],
    },
  ]);
  ({ fake, server, token, gql } = h);
});
afterAll(() => h.close());

const RUN_OUTPUT = `subscription($r: ID!) { runOutput(runId: $r) {
  __typename
  ... on AgentToolEvent { seq phase tool input output }
  ... on AgentTextDelta { seq text }
  ... on AgentStepFinished { seq inputTokens outputTokens }
  ... on AgentDone { seq }
  ... on RunFinished { seq status snapshot { id file(path: "hello.txt") { content } } }
} }`;

const usersInLastRequest = () =>
  fake.requests
    .filter((r) => (r.body.tools?.length ?? 0) > 0)
    .at(-1)!
    .body.messages!.filter((m) => m.role === "user").length;

async function promptAndWait(client: ReturnType<typeof wsClient>, branchId: string, text: string) {
  const run = (
    await gql(`mutation($b: ID!, $t: String!) { prompt(branchId: $b, text: $t) { id kind status } }`, {
      b: branchId,
      t: text,
    })
  ).prompt;
  expect(run.kind).toBe("PROMPT");
  const out = collect(client, RUN_OUTPUT, { r: run.id });
  const end = await out.until((r) => r.data?.runOutput.__typename === "RunFinished", 120_000);
  return { run, events: out.results.map((r) => r.data.runOutput), end: end.data.runOutput };
}

skip.unlessAgent("a prompt streams tool calls and text in order and ends with a snapshot holding the file; fork and rollback", async () => {
  const client = wsClient(server.wsUrl, token);
  const s = (
    await gql(
      `mutation { createSession(input: { title: "agent" }) { id mainBranch { id } rootSnapshot { id } } }`,
    )
  ).createSession;

  const branchEvents = collect(
    client,
    `subscription($b: ID!) { agentEvents(branchId: $b) { __typename ... on AgentToolEvent { phase tool } } }`,
    {
      b: s.mainBranch.id,
    },
  );
  await Bun.sleep(100);
  const first = await promptAndWait(client, s.mainBranch.id, "please write hello");
  const story = first.events
    .filter((e) => e.__typename !== "AgentStepFinished")
    .map((e) => (e.__typename === "AgentToolEvent" ? `${e.phase}:${e.tool}` : e.__typename));
  // Tool calls in order, then text deltas, then the end (updates while running may appear in between).
  const compact = story.filter((x, i) => x !== story[i - 1] && !x.startsWith("UPDATED"));
  expect(compact).toEqual([
    "STARTED:write",
    "FINISHED:write",
    "STARTED:bash",
    "FINISHED:bash",
    "AgentTextDelta",
    "AgentDone",
    "RunFinished",
  ]);
  expect(
    first.events
      .filter((e) => e.__typename === "AgentTextDelta")
      .map((e) => e.text)
      .join(""),
  ).toBe("All done here.");
  const bash = first.events.find(
    (e) => e.__typename === "AgentToolEvent" && e.phase === "FINISHED" && e.tool === "bash",
  );
  expect(bash.input.command).toBe("cat hello.txt");
  expect(bash.output).toContain("hello");
  const seqs = first.events.map((e) => e.seq);
  expect(seqs).toEqual(seqs.map((_, i) => i + 1));
  expect(first.end.status).toBe("SUCCEEDED");
  // The branch-wide stream carried the same agent events.
  await branchEvents.until((r) => r.data.agentEvents.__typename === "AgentDone");
  expect(
    branchEvents.results
      .filter((r) => r.data.agentEvents.phase === "FINISHED")
      .map((r) => r.data.agentEvents.tool),
  ).toEqual(["write", "bash"]);
  branchEvents.dispose();
  expect(first.end.snapshot.file.content).toBe("hello\n");
  const usage = (
    await gql(`query($r: ID!) { run(id: $r) { output modelRequests inputTokens outputTokens } }`, {
      r: first.run.id,
    })
  ).run;
  expect(usage).toMatchObject({ output: "All done here.", modelRequests: 3 });
  expect(usage.inputTokens).toBeGreaterThan(0);
  const sums = await gql(
    `query($s: ID!) { session(id: $s) { usage { runs promptRuns modelRequests inputTokens wallMs } } me { usage { promptRuns } } }`,
    { s: s.id },
  );
  expect(sums.session.usage).toMatchObject({
    runs: 1,
    promptRuns: 1,
    modelRequests: 3,
    inputTokens: usage.inputTokens,
  });
  expect(sums.session.usage.wallMs).toBeGreaterThan(0);
  expect(sums.me.usage.promptRuns).toBeGreaterThanOrEqual(1);

  // The prompt and the agent's answer are in the session's shared chat, for everyone to see.
  const chat = new Y.Doc();
  const chatProvider = new WebsocketProvider(
    `${server.url.replace(/^http/, "ws")}/collab`,
    `sessions/${s.id}/chat`,
    chat,
    {
      params: { token },
      WebSocketPolyfill: WebSocket as never,
      disableBc: true,
    },
  );
  for (let i = 0; i < 200 && chat.getArray("messages").length < 2; i++) await Bun.sleep(25);
  const messages = chat
    .getArray<{ author: { kind: string }; text: string; runId: string }>("messages")
    .toArray();
  expect(messages.map((m) => [m.author.kind, m.text, m.runId])).toEqual([
    ["user", "please write hello", first.run.id],
    ["agent", "All done here.", first.run.id],
  ]);
  chatProvider.destroy();

  // A fork of that snapshot continues the conversation: the model sees the first prompt.
  const fork = (
    await gql(`mutation($s: ID!) { fork(snapshotId: $s, name: "more") { id } }`, { s: first.end.snapshot.id })
  ).fork;
  expect((await promptAndWait(client, fork.id, "again please")).end.status).toBe("SUCCEEDED");
  expect(usersInLastRequest()).toBe(2);

  // Rolled back to before the first turn, the agent has forgotten it.
  await gql(`mutation($b: ID!, $s: ID!) { rollback(branchId: $b, snapshotId: $s) { id } }`, {
    b: s.mainBranch.id,
    s: s.rootSnapshot.id,
  });
  expect((await promptAndWait(client, s.mainBranch.id, "again, after rollback")).end.status).toBe(
    "SUCCEEDED",
  );
  expect(usersInLastRequest()).toBe(1);
  await client.dispose();
}, 180_000);

skip.unlessAgent("abortRun stops a long turn within a second", async () => {
  const client = wsClient(server.wsUrl, token);
  const s = (await gql(`mutation { createSession(input: { title: "abort" }) { mainBranch { id } } }`))
    .createSession;
  const run = (
    await gql(`mutation($b: ID!) { prompt(branchId: $b, text: "slow answer please") { id } }`, {
      b: s.mainBranch.id,
    })
  ).prompt;
  const out = collect(client, RUN_OUTPUT, { r: run.id });
  await out.until((r) => r.data?.runOutput.__typename === "AgentTextDelta", 60_000);
  const t = performance.now();
  const aborted = (await gql(`mutation($r: ID!) { abortRun(id: $r) { status } }`, { r: run.id })).abortRun;
  expect(performance.now() - t).toBeLessThan(1_000);
  expect(aborted.status).toBe("ABORTED");
  await client.dispose();
}, 120_000);

skip.unlessAgent("a user's own model key is sealed at rest and used only for their runs", async () => {
  const own = startFakeModel({
    apiKey: "sk-users-own-key",
    scenarios: [{ steps: [{ text: "from your own model" }] }],
  });
  try {
    const user = await server.signUp();
    const set = await server.gql(
      `mutation($u: String!) { setModelKey(baseURL: $u, apiKey: "sk-users-own-key", model: "their-model") { baseURL model keyHint } }`,
      { u: own.baseURL },
      user.token,
    );
    expect(set.data!.setModelKey).toEqual({ baseURL: own.baseURL, model: "their-model", keyHint: "…-key" });
    expect(set.text).not.toContain("sk-users-own-key");
    // Sealed in the database: the plain key appears nowhere in the file.
    const dbText = await Bun.file(`${server.dataDir}/opencode-cloud.db`).text();
    const wal = await Bun.file(`${server.dataDir}/opencode-cloud.db-wal`)
      .text()
      .catch(() => "");
    expect(dbText + wal).not.toContain("sk-users-own-key");

    const s = (
      await server.gql(
        `mutation { createSession(input: { title: "own" }) { mainBranch { id } } }`,
        {},
        user.token,
      )
    ).data!.createSession;
    const platformRequests = fake.requests.length;
    const run = (
      await server.gql(
        `mutation($b: ID!) { prompt(branchId: $b, text: "hi") { id } }`,
        { b: s.mainBranch.id },
        user.token,
      )
    ).data!.prompt;
    for (let i = 0; i < 600; i++) {
      const r = (
        await server.gql(`query($r: ID!) { run(id: $r) { status output } }`, { r: run.id }, user.token)
      ).data!.run;
      if (!["QUEUED", "RUNNING"].includes(r.status)) {
        expect(r).toEqual({ status: "SUCCEEDED", output: "from your own model" });
        break;
      }
      await Bun.sleep(50);
    }
    const seen = own.requests.filter((r) => (r.body.tools?.length ?? 0) > 0).at(-1)!;
    expect(seen.headers.authorization).toBe("Bearer sk-users-own-key");
    expect(seen.body.model).toBe("their-model");
    expect(fake.requests.length).toBe(platformRequests); // the platform's model was not used
    expect(
      (await server.gql("{ me { modelKey { keyHint } } }", {}, user.token)).data!.me.modelKey.keyHint,
    ).toBe("…-key");
    expect((await server.gql("mutation { deleteModelKey }", {}, user.token)).data!.deleteModelKey).toBe(true);
  } finally {
    await own.close();
  }
}, 120_000);

test("without a model, prompt fails with a typed error naming what to set", async () => {
  const bare = await startTestServer();
  try {
    const user = await bare.signUp();
    const s = (
      await bare.gql(
        `mutation { createSession(input: { title: "x" }) { mainBranch { id } } }`,
        {},
        user.token,
      )
    ).data!.createSession;
    const res = await bare.gql(
      `mutation($b: ID!) { prompt(branchId: $b, text: "hi") { id } }`,
      { b: s.mainBranch.id },
      user.token,
    );
    expect(res.errors![0]!.extensions!.code).toBe("UNAVAILABLE");
    expect(res.errors![0]!.message).toContain("AGENT_MODEL_BASE_URL");
  } finally {
    await bare.close();
  }
});
