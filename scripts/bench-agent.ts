// Agent latencies through the public API of a real server, with the scripted fake model (so the
// model itself costs nothing): prompt mutation -> first streamed agent event, cold (first turn of a
// fresh session) and warm (a later turn, opencode state in place), plus whole-turn time and the peak
// memory of the sandbox's processes during a turn.
//
//   bun scripts/bench-agent.ts [--reps 5]
import { parseArgs } from "node:util";
import { createClient } from "graphql-ws";
import { startFakeModel } from "./fake-model.ts";
import { startServerProcess } from "./lib/server-process.ts";

const { values } = parseArgs({ options: { reps: { type: "string", default: "5" } } });
const REPS = Number(values.reps);
const STRATEGIES = ["alpha", "beta", "gamma", "delta"];
const fake = startFakeModel({
  scenarios: [
    ...STRATEGIES.map((name) => ({
      match: `strategy ${name}`,
      steps: [
        { tool: "write", args: { filePath: "/workspace/solution.txt", content: name } },
        { text: `Tried ${name}.` },
      ],
    })),
    {
      steps: [
        { tool: "bash", args: { command: "echo hi", description: "say hi" } },
        { text: "A short answer from the fake model." },
      ],
    },
  ],
});
const server = await startServerProcess(
  {
    AGENT_MODEL_BASE_URL: fake.baseURL,
    AGENT_MODEL: "fake",
    RUNS_MAX_PARALLEL: "4",
  },
  { echoStderr: true },
);
const url = server.url;
const gql = server.gql;

const token = (
  await gql(`mutation { register(email: "agent@example.com", password: "password123") { token } }`)
).register.token;
const client = createClient({
  url: `${url!.replace("http", "ws")}/graphql`,
  connectionParams: { token },
  lazy: false,
});

/** Peak RSS (MB) of all processes whose command line mentions opencode, sampled every 100 ms. */
function sampleMemory() {
  let peak = 0;
  const timer = setInterval(async () => {
    const ps = await Bun.$`ps -eo rss=,args=`.text();
    const rss = ps
      .split("\n")
      .filter((l) => /\/opt\/occ\/(opencode|driver|forwarder)/.test(l))
      .reduce((sum, l) => sum + Number(l.trim().split(/\s+/)[0]), 0);
    peak = Math.max(peak, rss / 1024);
  }, 100);
  return () => {
    clearInterval(timer);
    return peak;
  };
}

async function turn(branchId: string): Promise<{ first: number; total: number; peakMb: number }> {
  const stop = sampleMemory();
  const t0 = performance.now();
  const run = (
    await gql(`mutation($b: ID!) { prompt(branchId: $b, text: "go") { id } }`, { b: branchId }, token)
  ).prompt;
  return new Promise((resolvePromise, reject) => {
    let first: number | undefined;
    const dispose = client.subscribe(
      {
        query: `subscription($r: ID!) { runOutput(runId: $r) { __typename ... on RunFinished { status } } }`,
        variables: { r: run.id },
      },
      {
        next: (result) => {
          const e = (result.data as { runOutput: { __typename: string; status?: string } }).runOutput;
          if (first === undefined && e.__typename.startsWith("Agent")) first = performance.now() - t0;
          if (e.__typename === "RunFinished") {
            dispose();
            if (e.status !== "SUCCEEDED") reject(new Error(`turn ${e.status}`));
            resolvePromise({ first: first ?? Number.NaN, total: performance.now() - t0, peakMb: stop() });
          }
        },
        error: reject,
        complete: () => {},
      },
    );
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
const cold: { first: number; total: number; peakMb: number }[] = [];
const warm: { first: number; total: number; peakMb: number }[] = [];
for (let i = 0; i < REPS; i++) {
  const s = (
    await gql(`mutation { createSession(input: { title: "bench" }) { mainBranch { id } } }`, {}, token)
  ).createSession;
  cold.push(await turn(s.mainBranch.id));
  warm.push(await turn(s.mainBranch.id));
}
const fmt = (xs: number[]) =>
  `median ${median(xs).toFixed(0)} ms (${xs.map((x) => x.toFixed(0)).join(", ")})`;
console.log(`prompt -> first agent event, cold (new session): ${fmt(cold.map((c) => c.first))}`);
console.log(`prompt -> first agent event, warm (later turn):  ${fmt(warm.map((c) => c.first))}`);
console.log(
  `whole 2-step turn, cold: ${fmt(cold.map((c) => c.total))}; warm: ${fmt(warm.map((c) => c.total))}`,
);
console.log(
  `peak memory of one live agent (opencode serve + driver + forwarder): median ${median([...cold, ...warm].map((c) => c.peakMb)).toFixed(0)} MB`,
);

/** Wall time of an exploration of the 4 strategies (scored by `grep -q gamma solution.txt`). */
async function exploration(parallelism: number): Promise<number> {
  const s = (
    await gql(
      `mutation { createSession(input: { title: "explore" }) { mainBranch { head { id } } } }`,
      {},
      token,
    )
  ).createSession;
  const t0 = performance.now();
  const e = (
    await gql(
      `mutation($s: ID!, $p: [String!]!, $n: Int) { explore(input: { snapshotId: $s, prompts: $p, scoreCommand: "grep -q gamma solution.txt", parallelism: $n }) { id } }`,
      { s: s.mainBranch.head.id, p: STRATEGIES.map((n) => `strategy ${n}`), n: parallelism },
      token,
    )
  ).explore;
  for (;;) {
    const status = (await gql(`query($id: ID!) { exploration(id: $id) { status } }`, { id: e.id }, token))
      .exploration.status;
    if (status !== "RUNNING") break;
    await Bun.sleep(50);
  }
  return performance.now() - t0;
}
const parallel = await exploration(4);
const sequential = await exploration(1);
console.log(
  `exploration of 4 branches (agent turn + score run each): parallel ${(parallel / 1000).toFixed(1)} s, ` +
    `one after another ${(sequential / 1000).toFixed(1)} s (x${(sequential / parallel).toFixed(2)})`,
);

await client.dispose();
await server.stop();
await fake.close();
