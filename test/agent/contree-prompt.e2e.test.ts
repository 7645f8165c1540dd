// The agent on a contree session: the real opencode binary runs `opencode run --format json` inside
// the (fake) ConTree VM, copied in as a file; its model traffic goes out over the VM's network to the
// platform's gateway with a per-run token (the provider key never enters the VM). The conversation
// lives in the workspace image, so the next turn continues it and a fork carries it along.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { type FakeContree, startFakeContree } from "../../scripts/fake-contree/index.ts";
import { type AgentHarness, startAgentHarness } from "../utils/agent.ts";
import { agentInFakeContreeUnavailable, skipBecause } from "../utils/isolation.ts";
import { collect, wsClient } from "../utils/ws.ts";

let contree: FakeContree;
let h: AgentHarness;

beforeAll(async () => {
  contree = await startFakeContree({ delays: { pendingMs: 5, assignedMs: 5 } });
  h = await startAgentHarness(
    [
      {
        match: "write",
        steps: [
          { tool: "write", args: { filePath: "/workspace/hello.txt", content: "hello from the vm\n" } },
          { tool: "bash", args: { command: "cat hello.txt", description: "show it" } },
          { text: "Wrote it in the VM." },
        ],
      },
      { match: "again", steps: [{ text: "still here" }] },
    ],
    {
      CONTREE_URL: contree.url,
      CONTREE_API_KEY: contree.token,
      CONTREE_PROJECT: contree.project ?? "",
      SANDBOX_PROVIDER: "contree",
    },
  );
});
afterAll(async () => {
  await h?.close();
  await contree?.close();
});

const RUN_OUTPUT = `subscription($r: ID!) { runOutput(runId: $r) {
  __typename
  ... on AgentToolEvent { seq phase tool input output }
  ... on AgentTextDelta { seq text }
  ... on AgentDone { seq }
  ... on RunFinished { seq status snapshot { id file(path: "hello.txt") { content } } }
} }`;

test.skipIf(skipBecause(agentInFakeContreeUnavailable))(
  "a prompt on a contree session runs opencode in the VM through the gateway; the next turn continues",
  async () => {
    const client = wsClient(h.server.wsUrl, h.token);
    const s = (
      await h.gql(
        `mutation { createSession(input: { title: "vm agent" }) { id provider mainBranch { id } } }`,
      )
    ).createSession;
    expect(s.provider).toBe("contree");
    const turn = async (text: string) => {
      const run = (
        await h.gql(`mutation($b: ID!, $t: String!) { prompt(branchId: $b, text: $t) { id } }`, {
          b: s.mainBranch.id,
          t: text,
        })
      ).prompt;
      const out = collect(client, RUN_OUTPUT, { r: run.id });
      const end = await out.until((r) => r.data?.runOutput.__typename === "RunFinished", 120_000);
      return { run, events: out.results.map((r) => r.data.runOutput), end: end.data.runOutput };
    };

    const first = await turn("please write hello");
    expect(first.end.status).toBe("SUCCEEDED");
    const story = first.events
      .filter((e) => e.__typename !== "AgentStepFinished")
      .map((e) => (e.__typename === "AgentToolEvent" ? `${e.phase}:${e.tool}` : e.__typename));
    expect(story).toEqual([
      "STARTED:write",
      "FINISHED:write",
      "STARTED:bash",
      "FINISHED:bash",
      "AgentTextDelta",
      "AgentDone",
      "RunFinished",
    ]);
    expect(first.events.find((e) => e.tool === "bash" && e.phase === "FINISHED").output).toContain(
      "hello from the vm",
    );
    // The file the agent wrote is in the run's snapshot (a ConTree image).
    expect(first.end.snapshot.file.content).toBe("hello from the vm\n");
    // The model saw the gateway's per-run token, never the platform's key; usage was counted.
    const requests = h.fake.requests.filter((r) => (r.body.tools?.length ?? 0) > 0);
    expect(requests.length).toBe(3);
    expect(requests.every((r) => r.headers.authorization === "Bearer sk-platform")).toBe(true);
    const usage = (
      await h.gql(`query($r: ID!) { run(id: $r) { output modelRequests } }`, { r: first.run.id })
    ).run;
    expect(usage).toEqual({ output: "Wrote it in the VM.", modelRequests: 3 });

    // The conversation is in the image: the next turn continues it (the model sees both prompts).
    const second = await turn("and again");
    expect(second.end.status).toBe("SUCCEEDED");
    const last = h.fake.requests.filter((r) => (r.body.tools?.length ?? 0) > 0).at(-1)!;
    expect(last.body.messages!.filter((m) => m.role === "user").length).toBe(2);
    // The binary copied into the VM lives outside the workspace: listings show the agent's work and
    // its state directory, nothing else.
    const files = (
      await h.gql(`query($b: ID!) { branch(id: $b) { files { path } } }`, { b: s.mainBranch.id })
    ).branch.files.map((f: { path: string }) => f.path);
    expect(files).toContain("hello.txt");
    expect(files.some((p: string) => p.includes("opencode") && !p.startsWith(".opencode-state"))).toBe(false);
    await client.dispose();
  },
  180_000,
);
