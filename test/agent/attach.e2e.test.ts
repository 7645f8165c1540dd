// `opencode attach <Branch.agentUrl> -p <API key>`: opencode's own TUI (the real binary, under tmux)
// drives a branch through the platform's proxy, and its turn is a PROMPT run like `prompt` (the
// user's text as input, streamed, metered, ended as a snapshot). Two clients attached to one branch
// see each other's turns live.
import { afterAll, beforeAll, expect } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { opencodeBinary } from "../../agent/opencode-binary.ts";
import type { FakeModel } from "../../scripts/fake-model.ts";
import { type AgentHarness, startAgentHarness } from "../utils/agent.ts";
import { agentUnavailable, skip, testUnless } from "../utils/isolation.ts";
import { collect, wsClient } from "../utils/ws.ts";

let h: AgentHarness;
let fake: FakeModel;
const hasTmux = spawnSync("tmux", ["-V"]).status === 0;
// The TUI test needs the agent (bubblewrap, opencode) and tmux: skipped with the reason otherwise.
const it = testUnless(agentUnavailable ?? (hasTmux ? null : "tmux is not installed"));

beforeAll(async () => {
  h = await startAgentHarness([
    {
      match: "from the tui",
      steps: [
        { tool: "write", args: { filePath: "/workspace/tui.txt", content: "written from the TUI\n" } },
        { text: "Done from the cloud branch." },
      ],
    },
    { steps: [{ text: "a plain answer" }] },
  ]);
  ({ fake } = h);
});
afterAll(() => h?.close());

const newBranch = async () =>
  (await h.gql(`mutation { createSession(input: { title: "attach" }) { id mainBranch { id agentUrl } } }`))
    .createSession as { id: string; mainBranch: { id: string; agentUrl: string } };

const apiKey = async () =>
  (await h.gql(`mutation { createApiKey(name: "laptop", scopes: ["read", "write"]) { secret } }`))
    .createApiKey.secret as string;

const basic = (secret: string) => ({ authorization: `Basic ${btoa(`anyone:${secret}`)}` });

async function runsOf(branchId: string) {
  return (
    await h.gql(
      `query($b: ID!) { branch(id: $b) { runs { edges { node { id kind input status modelRequests snapshot { id file(path: "tui.txt") { content } } } } } } }`,
      { b: branchId },
    )
  ).branch.runs.edges.map((e: { node: unknown }) => e.node) as {
    id: string;
    kind: string;
    input: string;
    status: string;
    modelRequests: number | null;
    snapshot: { id: string; file: { content: string } | null } | null;
  }[];
}

/** opencode's TUI in a private tmux server, with a home of its own (nothing of this machine's). */
function startTui(url: string, password: string) {
  const home = mkdtempSync(join(tmpdir(), "occ-tui-"));
  const socket = `occ-attach-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const tmux = (...args: string[]) => spawnSync("tmux", ["-L", socket, ...args], { encoding: "utf8" });
  const env = [
    `HOME=${home}`,
    `XDG_CONFIG_HOME=${home}/config`,
    `XDG_DATA_HOME=${home}/data`,
    `XDG_STATE_HOME=${home}/state`,
    `XDG_CACHE_HOME=${home}/cache`,
    "OPENCODE_DISABLE_AUTOUPDATE=1",
    "OPENCODE_DISABLE_MODELS_FETCH=1",
    "TERM=xterm-256color",
  ].join(" ");
  const started = tmux(
    "new-session",
    "-d",
    "-s",
    "tui",
    "-x",
    "160",
    "-y",
    "45",
    `env ${env} ${opencodeBinary()} attach ${url} -p ${password}; sleep 600`,
  );
  if (started.status !== 0) throw new Error(`tmux: ${started.stderr}`);
  return {
    screen: () => tmux("capture-pane", "-p", "-t", "tui").stdout,
    type: (text: string) => tmux("send-keys", "-t", "tui", "-l", text),
    enter: () => tmux("send-keys", "-t", "tui", "Enter"),
    async waitFor(text: string, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const screen = tmux("capture-pane", "-p", "-t", "tui").stdout;
        if (screen.includes(text)) return screen;
        if (Date.now() > deadline) throw new Error(`"${text}" never appeared on the TUI:\n${screen}`);
        await Bun.sleep(250);
      }
    },
    close() {
      tmux("kill-server");
      rmSync(home, { recursive: true, force: true });
    },
  };
}

it("opencode attach: a turn typed in the real TUI is a PROMPT run through agentUrl, ending as a snapshot", async () => {
  const s = await newBranch();
  expect(s.mainBranch.agentUrl).toBe(`${h.server.url}/agent/${s.mainBranch.id}`);
  const tui = startTui(s.mainBranch.agentUrl, await apiKey());
  try {
    await tui.waitFor("Ask anything", 90_000);
    tui.type("please write it, from the tui");
    await Bun.sleep(300);
    tui.enter();
    await tui.waitFor("Done from the cloud branch.", 120_000);

    let runs = await runsOf(s.mainBranch.id);
    for (let i = 0; i < 200 && runs[0]?.status !== "SUCCEEDED"; i++) {
      await Bun.sleep(100);
      runs = await runsOf(s.mainBranch.id);
    }
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({
      kind: "PROMPT",
      input: "please write it, from the tui",
      status: "SUCCEEDED",
    });
    expect(runs[0]!.modelRequests).toBeGreaterThan(0);
    expect(runs[0]!.snapshot!.file!.content).toBe("written from the TUI\n");
    // The branch's head moved to that snapshot: the turn is in the tree like any other.
    const head = (await h.gql(`query($b: ID!) { branch(id: $b) { head { id } } }`, { b: s.mainBranch.id }))
      .branch.head.id;
    expect(head).toBe(runs[0]!.snapshot!.id);
  } finally {
    tui.close();
  }
}, 300_000);

skip.unlessAgent("two clients attached to one branch see each other's turns live; the turn streams on runOutput", async () => {
  const s = await newBranch();
  const url = s.mainBranch.agentUrl;
  // A second person, an editor of the session, watching opencode's own event stream.
  const other = await h.server.signUp();
  await h.gql(
    `mutation($s: ID!, $e: String!) { shareSession(sessionId: $s, email: $e, role: EDITOR) { role } }`,
    {
      s: s.id,
      e: other.email,
    },
  );
  const watcher = new AbortController();
  const stream = await fetch(`${url}/global/event`, {
    headers: { authorization: `Bearer ${other.token}` },
    signal: watcher.signal,
  });
  expect(stream.status).toBe(200);
  const seen: string[] = [];
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of stream.body!) seen.push(decoder.decode(chunk, { stream: true }));
  })().catch(() => {});

  const mine = basic(await apiKey());
  const session = await (
    await fetch(`${url}/session`, {
      method: "POST",
      headers: { ...mine, "content-type": "application/json" },
      body: "{}",
    })
  ).json();
  // The platform's own stream of the branch carries the proxied turn too.
  const client = wsClient(h.server.wsUrl, h.token);
  const branchEvents = collect(
    client,
    `subscription($b: ID!) { agentEvents(branchId: $b) { __typename ... on AgentTextDelta { text } } }`,
    { b: s.mainBranch.id },
  );
  await Bun.sleep(200);
  const answer = await fetch(`${url}/session/${session.id}/prompt_async`, {
    method: "POST",
    headers: { ...mine, "content-type": "application/json" },
    body: JSON.stringify({ parts: [{ type: "text", text: "hello from the first client" }] }),
  });
  expect(answer.status).toBe(204);
  const runId = answer.headers.get("x-opencode-cloud-run")!;
  expect(runId).toMatch(/^run_/);
  await branchEvents.until((r) => r.data?.agentEvents.__typename === "AgentDone", 120_000);
  expect(
    branchEvents.results
      .filter((r) => r.data.agentEvents.__typename === "AgentTextDelta")
      .map((r) => r.data.agentEvents.text)
      .join(""),
  ).toBe("a plain answer");
  const run = (await h.gql(`query($r: ID!) { run(id: $r) { kind input } }`, { r: runId })).run;
  expect(run).toEqual({ kind: "PROMPT", input: "hello from the first client" });
  // The other client saw the turn on opencode's own stream: the prompt and the answer.
  for (let i = 0; i < 100 && !seen.join("").includes("a plain answer"); i++) await Bun.sleep(100);
  const text = seen.join("");
  expect(text).toContain(session.id);
  expect(text).toContain("hello from the first client");
  expect(text).toContain("a plain answer");
  watcher.abort();
  branchEvents.dispose();
  await client.dispose();
  expect(fake.requests.length).toBeGreaterThan(0);
}, 300_000);
