// Explorations count in the run quotas like exec and prompt: refused with QUOTA_EXCEEDED before
// anything is forked when the quotas cannot start one; with one run allowed at once, its candidates
// queue for the slot (never two runs of the user at once) instead of failing; when the day's
// run-seconds run out mid-way it stops cleanly (FAILED with the reason, no further fork, the running
// candidate recorded unscored). Real server, real opencode agent turns on the scripted fake model.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { type AgentHarness, startAgentHarness } from "../utils/agent.ts";
import { skip } from "../utils/isolation.ts";
import { collect, wsClient } from "../utils/ws.ts";

const SCENARIOS = [{ steps: [{ text: "Done." }] }];
const EXPLORE = `mutation($s: ID!, $p: [String!]!, $n: Int) {
  explore(input: { snapshotId: $s, prompts: $p, scoreCommand: "echo 1", parallelism: $n }) { id status } }`;
const STATE = `query($s: ID!) { session(id: $s) { branches { id } explorations { id } } }`;

async function newSession(h: AgentHarness) {
  return (
    await h.gql(
      `mutation { createSession(input: { title: "explore-quota" }) { id mainBranch { id head { id } } } }`,
    )
  ).createSession as { id: string; mainBranch: { id: string; head: { id: string } } };
}

/** explore as the harness's user: the whole response (errors included). */
const explore = (h: AgentHarness, snapshotId: string, prompts: string[], parallelism: number) =>
  h.server.gql(EXPLORE, { s: snapshotId, p: prompts, n: parallelism }, h.token);

async function finished(h: AgentHarness, explorationId: string) {
  const client = wsClient(h.server.wsUrl, h.token);
  try {
    await collect(client, `subscription($id: ID!) { exploration(id: $id) { kind } }`, {
      id: explorationId,
    }).until((r) => r.data?.exploration?.kind === "FINISHED", 150_000);
  } finally {
    await client.dispose();
  }
  return (
    await h.gql(
      `query($id: ID!) { exploration(id: $id) { status error best { branch { id } }
        candidates { prompt passed run { status startedAt finishedAt } scoreRun { status startedAt finishedAt } } } }`,
      { id: explorationId },
    )
  ).exploration;
}

skip.describeUnlessAgent("one run at once (QUOTA_USER_CONCURRENT_RUNS=1)", () => {
  let h: AgentHarness;
  beforeAll(async () => {
    h = await startAgentHarness(SCENARIOS, { QUOTA_USER_CONCURRENT_RUNS: "1" });
  });
  afterAll(() => h.close());

  test("an exploration is refused before anything is forked while the user's run holds the slot", async () => {
    const s = await newSession(h);
    const busy = (
      await h.gql(`mutation($b: ID!) { exec(branchId: $b, command: "sleep 30") { id } }`, {
        b: s.mainBranch.id,
      })
    ).exec;
    const refused = await explore(h, s.mainBranch.head.id, ["a", "b"], 2);
    expect(refused.errors?.[0]?.extensions).toMatchObject({
      code: "QUOTA_EXCEEDED",
      scope: "concurrentRuns",
      limit: 1,
    });
    expect(refused.errors![0]!.extensions!.retryAfterSeconds).toBeGreaterThan(0);
    const state = (await h.gql(STATE, { s: s.id })).session;
    expect(state.branches).toHaveLength(1); // main only: nothing forked
    expect(state.explorations).toEqual([]); // nothing recorded
    await h.gql(`mutation($r: ID!) { abortRun(id: $r) { status } }`, { r: busy.id });
  }, 60_000);

  test("its candidates queue for the one slot: every run of the exploration after the one before", async () => {
    const s = await newSession(h);
    // The slot of the aborted run above comes back as it ends.
    let started = await explore(h, s.mainBranch.head.id, ["first", "second"], 2);
    for (let i = 0; i < 50 && started.errors?.[0]?.extensions?.scope === "concurrentRuns"; i++) {
      await Bun.sleep(100);
      started = await explore(h, s.mainBranch.head.id, ["first", "second"], 2);
    }
    expect(started.errors).toBeUndefined();
    const done = await finished(h, started.data!.explore.id);
    expect({ status: done.status, error: done.error }).toEqual({ status: "SUCCEEDED", error: null });
    expect(done.candidates).toHaveLength(2);
    const runs = done.candidates
      .flatMap((c: any) => [c.run, c.scoreRun])
      .map((r: any) => ({ status: r.status, start: Date.parse(r.startedAt), end: Date.parse(r.finishedAt) }))
      .sort((a: any, b: any) => a.start - b.start);
    expect(runs).toHaveLength(4);
    for (const run of runs) expect(run.status).toBe("SUCCEEDED");
    // parallelism 2, but one run at once: each starts after the previous ended.
    for (let i = 1; i < runs.length; i++) expect(runs[i]!.start).toBeGreaterThanOrEqual(runs[i - 1]!.end);
    for (const c of done.candidates) expect(c.passed).toBe(true);
  }, 180_000);
});

skip.describeUnlessAgent("one run-second a day (QUOTA_USER_RUN_SECONDS_PER_DAY=1)", () => {
  let h: AgentHarness;
  beforeAll(async () => {
    h = await startAgentHarness(SCENARIOS, { QUOTA_USER_RUN_SECONDS_PER_DAY: "1" });
  });
  afterAll(() => h.close());

  test("the day runs out mid-way: the exploration stops cleanly, then the next is refused up front", async () => {
    const s = await newSession(h);
    // The first turn may last the one second left; its score run then finds the day used up.
    const started = await explore(h, s.mainBranch.head.id, ["first", "second"], 1);
    expect(started.errors).toBeUndefined();
    const done = await finished(h, started.data!.explore.id);
    expect(done.status).toBe("FAILED");
    expect(done.error).toContain("run-seconds");
    expect(done.best).toBeNull();
    // The first candidate ran its turn and stays, unscored; the second was never forked.
    expect(done.candidates).toHaveLength(1);
    expect(done.candidates[0].run).not.toBeNull();
    expect(done.candidates[0].scoreRun).toBeNull();
    expect(done.candidates[0].passed).toBeNull();
    expect((await h.gql(STATE, { s: s.id })).session.branches).toHaveLength(2);

    const refused = await explore(h, s.mainBranch.head.id, ["again"], 1);
    expect(refused.errors?.[0]?.extensions).toMatchObject({
      code: "QUOTA_EXCEEDED",
      scope: "runSeconds",
      limit: 1,
    });
    expect(refused.errors![0]!.extensions!.retryAfterSeconds).toBeGreaterThan(0);
    const state = (await h.gql(STATE, { s: s.id })).session;
    expect(state.branches).toHaveLength(2);
    expect(state.explorations).toHaveLength(1);
  }, 180_000);
});
