// A branch's live agent against what runs inside it (the agent's own tools, steered by the model):
// the socket the platform reaches the server through cannot be redirected from inside the sandbox
// (it is moved out of the directory the sandbox can write before it is ever used), and the server's
// gateway token is not in the agent's environment.
import { afterAll, beforeAll, expect } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type AgentHarness, startAgentHarness } from "../utils/agent.ts";
import { skip } from "../utils/isolation.ts";
import { collect, wsClient } from "../utils/ws.ts";

let h: AgentHarness;
let dir: string;
let canary: ReturnType<typeof Bun.serve>;
let canaryHits = 0;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "occ-canary-"));
  // A host service on a unix socket, standing for any socket the platform's user can reach.
  canary = Bun.serve({
    unix: join(dir, "host.sock"),
    fetch: () => {
      canaryHits++;
      return new Response("host service", { status: 200 });
    },
  });
  h = await startAgentHarness([
    {
      match: "redirect",
      steps: [
        {
          tool: "bash",
          args: {
            command: `ls -A /run/occ/agent; ln -sf ${join(dir, "host.sock")} /run/occ/agent/agent.sock; env | grep -c OCC_GATEWAY_TOKEN; echo checked`,
            description: "try to redirect the platform",
          },
        },
        { text: "tried" },
      ],
    },
    { steps: [{ text: "still here" }] },
  ]);
});
afterAll(async () => {
  await h?.close();
  canary?.stop(true);
  rmSync(dir, { recursive: true, force: true });
});

async function prompt(branchId: string, text: string) {
  const run = (
    await h.gql(`mutation($b: ID!, $t: String!) { prompt(branchId: $b, text: $t) { id } }`, {
      b: branchId,
      t: text,
    })
  ).prompt;
  for (;;) {
    const r = (await h.gql(`query($r: ID!) { run(id: $r) { status output } }`, { r: run.id })).run;
    if (r.status !== "QUEUED" && r.status !== "RUNNING") return { id: run.id as string, ...r };
    await Bun.sleep(50);
  }
}

skip.unlessAgent("the agent cannot redirect the platform's connection to its server, nor read the gateway token", async () => {
  const s = (
    await h.gql(`mutation { createSession(input: { title: "canary" }) { mainBranch { id agentUrl } } }`)
  ).createSession;
  const first = await prompt(s.mainBranch.id, "redirect the platform");
  expect(first.status).toBe("SUCCEEDED");
  // The run's stored stream: the bash call found the socket directory already empty (the socket was
  // moved out before the server was used) and no gateway token in its environment.
  const client = wsClient(h.server.wsUrl, h.token);
  const out = collect(
    client,
    `subscription($r: ID!) { runOutput(runId: $r) { __typename ... on AgentToolEvent { phase tool output } } }`,
    { r: first.id },
  );
  await out.until((r) => r.data?.runOutput.__typename === "RunFinished");
  const bash = out.results
    .map((r) => r.data.runOutput)
    .find((e) => e.phase === "FINISHED" && e.tool === "bash");
  expect(bash.output.trim().split("\n")).toEqual(["0", "checked"]);
  await client.dispose();
  // The platform keeps talking to its own server: a second turn and an attached client work ...
  expect((await prompt(s.mainBranch.id, "again")).status).toBe("SUCCEEDED");
  const key = (await h.gql(`mutation { createApiKey(name: "k", scopes: ["read"]) { secret } }`)).createApiKey
    .secret;
  const res = await fetch(`${s.mainBranch.agentUrl}/session`, {
    headers: { authorization: `Basic ${btoa(`x:${key}`)}` },
  });
  expect(res.status).toBe(200);
  expect(await res.text()).not.toContain("host service");
  // ... and never reached the host's socket.
  expect(canaryHits).toBe(0);
}, 240_000);
