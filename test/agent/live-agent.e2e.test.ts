// The agent as a live service (agent/live): one kept-alive `opencode serve` per branch in use, with
// the real binary in the branch's sandbox and the scripted fake model. A warm turn reuses the
// server; the least recently used is evicted at the cap and an idle server stops, and the next turn
// starts it again on the same conversation; a fork continues in a server of its own; a rollback
// restarts on the rolled-back state; an abort ends the turn, not the server; snapshots taken while
// the server runs hold a consistent conversation, fork after fork; and the platform's model key
// never enters the sandbox (the agent reaches the model through the gateway with a token).
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { FakeModel } from "../../scripts/fake-model.ts";
import { type AgentHarness, startAgentHarness } from "../utils/agent.ts";
import { skip } from "../utils/isolation.ts";
import type { TestServer } from "../utils/server.ts";

let h: AgentHarness;
let fake: FakeModel;
let server: TestServer;
let gql: AgentHarness["gql"];

// Long enough that nothing here stops for idleness on a slow machine; the idle test has its own server.
const IDLE_MS = 10 * 60_000;

beforeAll(async () => {
  h = await startAgentHarness(
    [
      {
        match: "write",
        steps: [
          { tool: "write", args: { filePath: "/workspace/hello.txt", content: "hello\n" } },
          { text: "Wrote it." },
        ],
      },
      {
        // What every process of the sandbox has in its environment: the agent server, its tools.
        match: "environment",
        steps: [
          {
            tool: "bash",
            args: {
              command:
                'for f in /proc/[0-9]*/environ; do tr "\\0" "\\n" < "$f"; echo; done 2>/dev/null > /tmp/envs; env >> /tmp/envs; echo "$(grep -c sk-platform /tmp/envs) $(grep -c ^XDG_DATA_HOME= /tmp/envs)" > key-check.txt',
              description: "check",
            },
          },
          { text: "Checked." },
        ],
      },
      {
        match: "slow",
        chunkDelayMs: 300,
        steps: [{ text: "one two three four five six seven eight nine ten" }],
      },
      { steps: [{ text: "ok" }] },
    ],
    { AGENT_IDLE_MS: String(IDLE_MS), AGENT_MAX_LIVE: "2" },
  );
  ({ fake, server, gql } = h);
});
afterAll(() => h?.close());

const pool = () => server.agents!;
const pidOf = (branchId: string) => pool().running(branchId)?.pid ?? null;

/** The user messages the model saw in its latest request (the conversation it was given). */
const lastUserMessages = () =>
  fake.requests
    .filter((r) => (r.body.tools?.length ?? 0) > 0)
    .at(-1)!
    .body.messages!.filter((m) => m.role === "user")
    .map((m) => (typeof m.content === "string" ? m.content : JSON.stringify(m.content)));

async function waitRun(runId: string): Promise<{ status: string; snapshot: { id: string } | null }> {
  for (;;) {
    const run = (await gql(`query($r: ID!) { run(id: $r) { status snapshot { id } } }`, { r: runId })).run;
    if (run.status !== "QUEUED" && run.status !== "RUNNING") return run;
    await Bun.sleep(50);
  }
}

async function prompt(branchId: string, text: string) {
  const run = (
    await gql(`mutation($b: ID!, $t: String!) { prompt(branchId: $b, text: $t) { id } }`, {
      b: branchId,
      t: text,
    })
  ).prompt;
  return { id: run.id as string, ...(await waitRun(run.id)) };
}

const newSession = async (title: string) =>
  (
    await gql(
      `mutation($t: String!) { createSession(input: { title: $t }) { id mainBranch { id } rootSnapshot { id } } }`,
      {
        t: title,
      },
    )
  ).createSession;

const fork = async (snapshotId: string) =>
  (await gql(`mutation($s: ID!) { fork(snapshotId: $s) { id } }`, { s: snapshotId })).fork.id as string;

test("health says how each provider runs the agent", async () => {
  const health = (await server.gql("{ health { providers { name agentMode } } }")).data!.health;
  expect(health.providers).toContainEqual({ name: "local", agentMode: "live" });
});

skip.unlessAgent("a warm turn reuses the branch's live server; the conversation goes on", async () => {
  const s = await newSession("warm");
  const starts = pool().starts;
  const first = await prompt(s.mainBranch.id, "please write hello");
  expect(first.status).toBe("SUCCEEDED");
  const pid = pidOf(s.mainBranch.id);
  expect(pid).not.toBeNull();
  expect(pool().starts).toBe(starts + 1);

  const second = await prompt(s.mainBranch.id, "and again");
  expect(second.status).toBe("SUCCEEDED");
  expect(pidOf(s.mainBranch.id)).toBe(pid); // the same server, no new start
  expect(pool().starts).toBe(starts + 1);
  expect(lastUserMessages()).toEqual(["please write hello", "and again"]);
  // Each turn still ends as a snapshot with the files.
  const file = (
    await gql(`query($s: ID!) { snapshot(id: $s) { file(path: "hello.txt") { content } } }`, {
      s: second.snapshot!.id,
    })
  ).snapshot.file;
  expect(file.content).toBe("hello\n");
}, 180_000);

skip.unlessAgent("the platform's model key is in no environment of the sandbox: the agent server's nor its tools'", async () => {
  const s = await newSession("key");
  const run = await prompt(s.mainBranch.id, "check the environment");
  expect(run.status).toBe("SUCCEEDED");
  const file = (
    await gql(`query($s: ID!) { snapshot(id: $s) { file(path: "key-check.txt") { content } } }`, {
      s: run.snapshot!.id,
    })
  ).snapshot.file;
  const [keys, seen] = file.content.trim().split(" ").map(Number);
  // Environments were read (the tool's own and at least the agent server's), and none holds the key.
  expect(seen).toBeGreaterThanOrEqual(2);
  expect(keys).toBe(0);
  // The model was reached all the same: the gateway adds the key (the fake refuses requests without it).
  expect(fake.requests.some((r) => JSON.stringify(r.body).includes("check the environment"))).toBe(true);
}, 180_000);

skip.unlessAgent("abort stops the turn, not the server", async () => {
  const s = await newSession("abort");
  expect((await prompt(s.mainBranch.id, "hi")).status).toBe("SUCCEEDED");
  const pid = pidOf(s.mainBranch.id);
  const run = (
    await gql(`mutation($b: ID!) { prompt(branchId: $b, text: "slow please") { id } }`, {
      b: s.mainBranch.id,
    })
  ).prompt;
  // Wait until the model is answering, then abort.
  for (let i = 0; i < 400 && !fake.requests.some((r) => JSON.stringify(r.body).includes("slow please")); i++)
    await Bun.sleep(25);
  await Bun.sleep(300);
  await gql(`mutation($r: ID!) { abortRun(id: $r) { status } }`, { r: run.id });
  expect((await waitRun(run.id)).status).toBe("ABORTED");
  expect(pidOf(s.mainBranch.id)).toBe(pid);
  expect((await prompt(s.mainBranch.id, "after the abort")).status).toBe("SUCCEEDED");
  expect(pidOf(s.mainBranch.id)).toBe(pid);
  expect(lastUserMessages().at(-1)).toBe("after the abort");
}, 180_000);

skip.unlessAgent("a fork continues the conversation in its own server; a rollback restarts on the rolled-back state", async () => {
  const s = await newSession("fork");
  const first = await prompt(s.mainBranch.id, "first words");
  const second = await prompt(s.mainBranch.id, "second words");
  expect(second.status).toBe("SUCCEEDED");
  const mainPid = pidOf(s.mainBranch.id);

  const child = await fork(first.snapshot!.id);
  expect((await prompt(child, "child words")).status).toBe("SUCCEEDED");
  const childPid = pidOf(child);
  expect(childPid).not.toBeNull();
  expect(childPid).not.toBe(mainPid);
  expect(lastUserMessages()).toEqual(["first words", "child words"]);

  await gql(`mutation($b: ID!, $s: ID!) { rollback(branchId: $b, snapshotId: $s) { id } }`, {
    b: s.mainBranch.id,
    s: first.snapshot!.id,
  });
  expect((await prompt(s.mainBranch.id, "after rollback")).status).toBe("SUCCEEDED");
  expect(pidOf(s.mainBranch.id)).not.toBe(mainPid); // restarted on the rolled-back files
  expect(lastUserMessages()).toEqual(["first words", "after rollback"]);
}, 240_000);

skip.unlessAgent("fork -> continue, many times: every snapshot taken under a running server holds a consistent conversation", async () => {
  const s = await newSession("cycles");
  let turn = await prompt(s.mainBranch.id, "cycle 0");
  expect(turn.status).toBe("SUCCEEDED");
  const said = ["cycle 0"];
  for (let i = 1; i <= 6; i++) {
    const branch = await fork(turn.snapshot!.id);
    turn = await prompt(branch, `cycle ${i}`);
    expect(turn.status).toBe("SUCCEEDED");
    said.push(`cycle ${i}`);
    // The child's server read the parent's conversation from the snapshot, whole.
    expect(lastUserMessages()).toEqual(said);
  }
  // The cap held throughout: never more than AGENT_MAX_LIVE servers at once (plus one starting).
  expect(pool().size).toBeLessThanOrEqual(2);
}, 600_000);

skip.unlessAgent("the least recently used is evicted at the cap; the next turn restarts it transparently", async () => {
  const a = await newSession("lru-a");
  const b = await newSession("lru-b");
  const c = await newSession("lru-c");
  expect((await prompt(a.mainBranch.id, "a one")).status).toBe("SUCCEEDED");
  expect((await prompt(b.mainBranch.id, "b one")).status).toBe("SUCCEEDED");
  expect(pidOf(a.mainBranch.id)).not.toBeNull();
  expect((await prompt(c.mainBranch.id, "c one")).status).toBe("SUCCEEDED");
  // Three branches, a cap of two: a (least recently used) was evicted.
  expect(pidOf(a.mainBranch.id)).toBeNull();
  expect(pidOf(b.mainBranch.id)).not.toBeNull();
  expect(pool().size).toBeLessThanOrEqual(2);
  const starts = pool().starts;
  expect((await prompt(a.mainBranch.id, "a two")).status).toBe("SUCCEEDED");
  expect(pool().starts).toBe(starts + 1);
  expect(lastUserMessages()).toEqual(["a one", "a two"]);
}, 300_000);

skip.unlessAgent("an idle server stops after AGENT_IDLE_MS; the next turn restarts it on the same conversation", async () => {
  const idle = await startAgentHarness([{ steps: [{ text: "ok" }] }], { AGENT_IDLE_MS: "2000" });
  try {
    const agents = idle.server.agents!;
    const s = (await idle.gql(`mutation { createSession(input: { title: "idle" }) { mainBranch { id } } }`))
      .createSession;
    const run = async (text: string) => {
      const id = (
        await idle.gql(`mutation($b: ID!, $t: String!) { prompt(branchId: $b, text: $t) { id } }`, {
          b: s.mainBranch.id,
          t: text,
        })
      ).prompt.id;
      for (;;) {
        const r = (await idle.gql(`query($r: ID!) { run(id: $r) { status } }`, { r: id })).run;
        if (r.status !== "QUEUED" && r.status !== "RUNNING") return r.status;
        await Bun.sleep(50);
      }
    };
    expect(await run("before the pause")).toBe("SUCCEEDED");
    expect(agents.running(s.mainBranch.id)).toBeDefined();
    const deadline = Date.now() + 30_000;
    while (agents.size > 0 && Date.now() < deadline) await Bun.sleep(100);
    expect(agents.size).toBe(0);
    expect(await run("after the pause")).toBe("SUCCEEDED");
    expect(agents.starts).toBe(2);
    expect(
      idle.fake.requests
        .filter((r) => (r.body.tools?.length ?? 0) > 0)
        .at(-1)!
        .body.messages!.filter((m) => m.role === "user")
        .map((m) => (typeof m.content === "string" ? m.content : JSON.stringify(m.content))),
    ).toEqual(["before the pause", "after the pause"]);
  } finally {
    await idle.close();
  }
}, 300_000);

skip.unlessAgent("copy workspaces (no overlay rights) too: snapshots under the running server, forks and a rollback", async () => {
  const copy = await startAgentHarness([{ steps: [{ text: "ok" }] }], { SANDBOX_WORKSPACES: "copy" });
  try {
    const health = (await copy.server.gql("{ health { workspaces } }")).data!.health;
    expect(health.workspaces).toBe("copy");
    const said = (fakeModel: FakeModel) =>
      fakeModel.requests
        .filter((r) => (r.body.tools?.length ?? 0) > 0)
        .at(-1)!
        .body.messages!.filter((m) => m.role === "user")
        .map((m) => (typeof m.content === "string" ? m.content : JSON.stringify(m.content)));
    const run = async (branchId: string, text: string) => {
      const id = (
        await copy.gql(`mutation($b: ID!, $t: String!) { prompt(branchId: $b, text: $t) { id } }`, {
          b: branchId,
          t: text,
        })
      ).prompt.id;
      for (;;) {
        const r = (await copy.gql(`query($r: ID!) { run(id: $r) { status snapshot { id } } }`, { r: id }))
          .run;
        if (r.status !== "QUEUED" && r.status !== "RUNNING") return r;
        await Bun.sleep(50);
      }
    };
    const s = (await copy.gql(`mutation { createSession(input: { title: "copy" }) { mainBranch { id } } }`))
      .createSession;
    const one = await run(s.mainBranch.id, "one");
    const two = await run(s.mainBranch.id, "two");
    expect(two.status).toBe("SUCCEEDED");
    expect(said(copy.fake)).toEqual(["one", "two"]);
    const child = (
      await copy.gql(`mutation($s: ID!) { fork(snapshotId: $s) { id } }`, { s: two.snapshot.id })
    ).fork.id;
    expect((await run(child, "three")).status).toBe("SUCCEEDED");
    expect(said(copy.fake)).toEqual(["one", "two", "three"]);
    await copy.gql(`mutation($b: ID!, $s: ID!) { rollback(branchId: $b, snapshotId: $s) { id } }`, {
      b: s.mainBranch.id,
      s: one.snapshot.id,
    });
    expect((await run(s.mainBranch.id, "after")).status).toBe("SUCCEEDED");
    expect(said(copy.fake)).toEqual(["one", "after"]);
  } finally {
    await copy.close();
  }
}, 300_000);
