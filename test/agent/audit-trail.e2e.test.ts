// The audit trail: a run's stream is stored with it, so runOutput of a finished run replays exactly
// what a live subscriber saw (an EXEC run's output chunks; a PROMPT run's text, tool calls with input
// and output, step usage), a subscriber that joins mid-run misses nothing and sees nothing twice, and
// the replay still holds after the server restarts (nothing in memory). Real opencode binary, the
// scripted fake model.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { loadConfig } from "../../api/config.ts";
import { bunRuntime } from "../../api/runtime/bun.ts";
import { type StartedServer, startServer } from "../../api/start.ts";
import { type AgentHarness, startAgentHarness } from "../utils/agent.ts";
import { skip } from "../utils/isolation.ts";
import { collect, wsClient } from "../utils/ws.ts";

let h: AgentHarness;
let restarted: StartedServer | null = null;

beforeAll(async () => {
  h = await startAgentHarness([
    {
      match: "write",
      steps: [
        { tool: "write", args: { filePath: "/workspace/hello.txt", content: "hello\n" } },
        { tool: "bash", args: { command: "cat hello.txt; echo to-stderr >&2", description: "show it" } },
        { text: "All done here, the file is written." },
      ],
    },
  ]);
});
afterAll(async () => {
  if (restarted) {
    await restarted.stop();
    await h.fake.close();
    rmSync(h.server.dataDir, { recursive: true, force: true });
  } else await h.close();
});

const RUN_OUTPUT = `subscription($r: ID!) { runOutput(runId: $r) {
  __typename
  ... on RunOutputChunk { seq stream text }
  ... on AgentTextDelta { seq runId partId text }
  ... on AgentToolEvent { seq runId phase callId tool input output error title }
  ... on AgentStepFinished { seq runId inputTokens outputTokens reasoningTokens cost }
  ... on AgentPermissionAsked { seq runId id permission patterns }
  ... on AgentError { seq runId message }
  ... on AgentDone { seq runId }
  ... on RunTrailTruncated { seq storedEvents maxEvents }
  ... on RunFinished { seq status exitCode snapshot { id } }
} }`;

type Event = Record<string, any>;

/** Every event of runOutput until RunFinished, from a fresh subscription on `url`. */
async function followRun(wsUrl: string, token: string, runId: string): Promise<Event[]> {
  const client = wsClient(wsUrl, token);
  try {
    const out = collect(client, RUN_OUTPUT, { r: runId });
    await out.until((r) => r.data?.runOutput.__typename === "RunFinished", 120_000);
    expect(out.errors).toEqual([]);
    return out.results.map((r) => r.data.runOutput);
  } finally {
    await client.dispose();
  }
}

const runs: { id: string; live: Event[] }[] = [];

test("an EXEC run: live, mid-run and finished subscribers see the same chunks, in seq order", async () => {
  const s = (await h.gql(`mutation { createSession(input: { title: "trail" }) { mainBranch { id } } }`))
    .createSession;
  const run = (
    await h.gql(`mutation($b: ID!, $c: String!) { exec(branchId: $b, command: $c) { id } }`, {
      b: s.mainBranch.id,
      c: "for i in 1 2 3 4 5 6; do echo out $i; echo err $i >&2; sleep 0.15; done; exit 3",
    })
  ).exec;
  const client = wsClient(h.server.wsUrl, h.token);
  const live = collect(client, RUN_OUTPUT, { r: run.id });
  // A second subscriber joins mid-run: part of its events come from the database, the rest live.
  await live.until(
    (r) => r.data?.runOutput.__typename === "RunOutputChunk" && r.data.runOutput.text.includes("3"),
  );
  const midRun = followRun(h.server.wsUrl, h.token, run.id);
  await live.until((r) => r.data?.runOutput.__typename === "RunFinished", 60_000);
  const liveEvents = live.results.map((r) => r.data.runOutput);
  await client.dispose();

  expect(liveEvents.map((e) => e.seq)).toEqual(liveEvents.map((_, i) => i + 1));
  const text = (stream: string) =>
    liveEvents
      .filter((e) => e.stream === stream)
      .map((e) => e.text)
      .join("");
  expect(text("stdout")).toBe("out 1\nout 2\nout 3\nout 4\nout 5\nout 6\n");
  expect(text("stderr")).toBe("err 1\nerr 2\nerr 3\nerr 4\nerr 5\nerr 6\n");
  expect(liveEvents.at(-1)).toMatchObject({ __typename: "RunFinished", status: "FAILED", exitCode: 3 });

  expect(await midRun).toEqual(liveEvents);
  expect(await followRun(h.server.wsUrl, h.token, run.id)).toEqual(liveEvents);
  runs.push({ id: run.id, live: liveEvents });
}, 120_000);

skip.unlessAgent("a PROMPT run: the replay holds every text delta, tool call (input and output) and step usage", async () => {
  const s = (await h.gql(`mutation { createSession(input: { title: "agent trail" }) { mainBranch { id } } }`))
    .createSession;
  const run = (
    await h.gql(`mutation($b: ID!) { prompt(branchId: $b, text: "please write hello") { id } }`, {
      b: s.mainBranch.id,
    })
  ).prompt;
  const live = await followRun(h.server.wsUrl, h.token, run.id);

  expect(live.map((e) => e.seq)).toEqual(live.map((_, i) => i + 1));
  const finished = live.filter((e) => e.__typename === "AgentToolEvent" && e.phase === "FINISHED");
  expect(finished.map((e) => e.tool)).toEqual(["write", "bash"]);
  expect(finished[0]!.input).toEqual({ filePath: "/workspace/hello.txt", content: "hello\n" });
  expect(finished[1]!.input.command).toBe("cat hello.txt; echo to-stderr >&2");
  expect(finished[1]!.output).toContain("hello");
  const steps = live.filter((e) => e.__typename === "AgentStepFinished");
  expect(steps.length).toBe(3);
  for (const step of steps) expect(step).toMatchObject({ inputTokens: 100, outputTokens: 20 });
  expect(
    live
      .filter((e) => e.__typename === "AgentTextDelta")
      .map((e) => e.text)
      .join(""),
  ).toBe("All done here, the file is written.");
  expect(live.at(-2)!.__typename).toBe("AgentDone");
  expect(live.at(-1)).toMatchObject({ __typename: "RunFinished", status: "SUCCEEDED" });

  expect(await followRun(h.server.wsUrl, h.token, run.id)).toEqual(live);
  runs.push({ id: run.id, live });
}, 180_000);

test("after a restart (nothing in memory) both runs still replay exactly", async () => {
  expect(runs.length).toBeGreaterThan(0);
  await h.server.stop();
  const config = loadConfig({
    NODE_ENV: "test",
    PORT: "0",
    DATA_DIR: h.server.dataDir,
    LOG_LEVEL: "error",
    OUTBOUND_ALLOW_HOSTS: "127.0.0.1",
  });
  restarted = await startServer(config, bunRuntime, { logSink: () => {} });
  const wsUrl = `${restarted.url.replace(/^http/, "ws")}/graphql`;
  for (const run of runs) expect(await followRun(wsUrl, h.token, run.id)).toEqual(run.live);
}, 120_000);
