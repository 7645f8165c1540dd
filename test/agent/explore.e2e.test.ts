// An exploration with 4 branches: the fake model writes a different solution per branch, the score
// command is a real test, the branches run concurrently, and the passing one is picked (and promoted).
import { afterAll, beforeAll, expect } from "bun:test";
import { type AgentHarness, startAgentHarness } from "../utils/agent.ts";
import { skip } from "../utils/isolation.ts";
import type { TestServer } from "../utils/server.ts";
import { collect, wsClient } from "../utils/ws.ts";

const SOLUTIONS: Record<string, string> = {
  alpha: "module.exports = (a, b) => a - b;\n",
  beta: "module.exports = (a, b) => a * b;\n",
  gamma: "module.exports = (a, b) => a + b;\n",
  delta: "module.exports = () => 0;\n",
};

let h: AgentHarness;
let server: TestServer;
let token: string;
let gql: AgentHarness["gql"];

beforeAll(async () => {
  h = await startAgentHarness(
    Object.entries(SOLUTIONS).map(([name, code]) => ({
      match: `strategy ${name}`,
      steps: [
        { tool: "write", args: { filePath: "/workspace/solution.js", content: code } },
        { text: `Tried ${name}.` },
      ],
    })),
    { RUNS_MAX_PARALLEL: "4" },
  );
  ({ server, token, gql } = h);
});
afterAll(() => h.close());

skip.unlessAgent("4 strategies explored concurrently; the one that passes the test wins and is promoted", async () => {
  const test =
    "const add = require('./solution.js');\nconst ok = add(2, 3) === 5 && add(-1, 1) === 0;\nconsole.log(ok ? 100 : 0);\nprocess.exit(ok ? 0 : 1);\n";
  const s = (
    await gql(
      `mutation($f: JSON) { createSession(input: { title: "explore", files: $f }) { id mainBranch { id head { id } } } }`,
      { f: { "test.js": test } },
    )
  ).createSession;
  const client = wsClient(server.wsUrl, token);
  const t0 = performance.now();
  const exploration = (
    await gql(
      `mutation($s: ID!, $p: [String!]!) { explore(input: { snapshotId: $s, prompts: $p, scoreCommand: "node test.js", parallelism: 4, promote: true }) { id status } }`,
      { s: s.mainBranch.head.id, p: Object.keys(SOLUTIONS).map((n) => `use strategy ${n}`) },
    )
  ).explore;
  expect(exploration.status).toBe("RUNNING");
  const progress = collect(
    client,
    `subscription($id: ID!) { exploration(id: $id) { kind level passed score branch { id } } }`,
    { id: exploration.id },
  );
  await progress.until((r) => r.data.exploration.kind === "FINISHED", 150_000);
  const wallMs = performance.now() - t0;

  const done = await gql(
    `query($id: ID!, $s: ID!) {
        exploration(id: $id) { status best { prompt score passed branch { id } }
          candidates { prompt passed score branch { id name head { file(path: "solution.js") { content } } } run { status startedAt finishedAt } } }
        session(id: $s) { mainBranch { id } snapshots(first: 100) { nodes { id } } } }`,
    { id: exploration.id, s: s.id },
  );
  const e = done.exploration;
  expect(e.status).toBe("SUCCEEDED");
  expect(e.candidates.length).toBe(4);
  for (const c of e.candidates) {
    const name = /strategy (\w+)/.exec(c.prompt)![1]!;
    expect(c.branch.head.file.content).toBe(SOLUTIONS[name]!); // each branch holds its own solution
    expect(c.passed).toBe(name === "gamma");
    expect(c.score).toBe(name === "gamma" ? 100 : 0);
  }
  expect(e.best.prompt).toContain("gamma");
  expect(done.session.mainBranch.id).toBe(e.best.branch.id);

  // Concurrent: every agent turn started before any of them finished.
  const starts = e.candidates.map((c: any) => new Date(c.run.startedAt).getTime());
  const ends = e.candidates.map((c: any) => new Date(c.run.finishedAt).getTime());
  expect(Math.max(...starts)).toBeLessThan(Math.min(...ends));

  const kinds = progress.results.map((r) => r.data.exploration.kind);
  expect(kinds.filter((k) => k === "BRANCH_STARTED").length).toBe(4);
  expect(kinds.filter((k) => k === "BRANCH_SCORED").length).toBe(4);
  console.log(`exploration of 4 branches: ${(wallMs / 1000).toFixed(1)} s wall`);
  await client.dispose();
}, 180_000);

skip.unlessAgent("depth 2: the second round expands the first round's best branch (a tree search)", async () => {
  const score =
    "node -e \"const v = require('fs').existsSync('solution.js') ? require('./solution.js')(2, 3) : 0; console.log(v)\"";
  const s = (await gql(`mutation { createSession(input: { title: "deep" }) { mainBranch { head { id } } } }`))
    .createSession;
  const e = (
    await gql(
      `mutation($s: ID!, $p: [String!]!, $c: String!) { explore(input: { snapshotId: $s, prompts: $p, scoreCommand: $c, depth: 2, parallelism: 2 }) { id } }`,
      { s: s.mainBranch.head.id, p: ["use strategy beta", "use strategy gamma"], c: score },
    )
  ).explore;
  const client = wsClient(server.wsUrl, token);
  await collect(client, `subscription($id: ID!) { exploration(id: $id) { kind } }`, { id: e.id }).until(
    (r) => r.data.exploration.kind === "FINISHED",
    150_000,
  );
  await client.dispose();
  const done = (
    await gql(
      `query($id: ID!) { exploration(id: $id) { status best { level score }
        candidates { level prompt score branch { name head { parentId } } run { snapshot { parentId } } } } }`,
      { id: e.id },
    )
  ).exploration;
  expect(done.status).toBe("SUCCEEDED");
  const level1 = done.candidates.filter((c: any) => c.level === 1);
  const level2 = done.candidates.filter((c: any) => c.level === 2);
  expect(level1.length).toBe(2);
  expect(level2.length).toBe(2);
  // Round 1: beta scores 6 (2*3), gamma 5 (2+3); no exit-0 difference, so the higher score (beta) wins.
  const winner = level1.find((c: any) => c.score === 6);
  expect(winner.prompt).toContain("beta");
  // Round 2 starts from the winner's head: each level-2 agent turn's snapshot descends from it.
  const winnerHead = (
    await gql(
      `query($id: ID!) { exploration(id: $id) { candidates { level score branch { head { id } } } } }`,
      { id: e.id },
    )
  ).exploration.candidates.find((c: any) => c.level === 1 && c.score === 6).branch.head.id;
  for (const c of level2) expect(c.run.snapshot.parentId).toBe(winnerHead);
  expect(done.best.score).toBe(6);
}, 180_000);
