// Runs and sessions beyond the happy path: abort, queueing per branch, parallel branches, late
// subscribers, the tree picture, deleting a session, pagination.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startTestServer, type TestServer } from "../utils/server.ts";
import { collect, wsClient } from "../utils/ws.ts";

let server: TestServer;
let token: string;
beforeAll(async () => {
  server = await startTestServer({ RUNS_MAX_PARALLEL: "4" });
  token = (await server.signUp()).token;
});
afterAll(() => server.close());

async function gql(query: string, variables: Record<string, unknown> = {}, as = token) {
  const res = await server.gql(query, variables, as);
  if (res.errors) throw new Error(JSON.stringify(res.errors));
  return res.data!;
}

async function newSession(files: Record<string, string> = {}) {
  return (
    await gql(
      `mutation($f: JSON) { createSession(input: { title: "runs", files: $f }) { id mainBranch { id head { id } } } }`,
      { f: files },
    )
  ).createSession;
}

async function finished(runId: string) {
  for (let i = 0; i < 600; i++) {
    const run = (
      await gql(
        `query($r: ID!) { run(id: $r) { status exitCode output startedAt finishedAt killedBy snapshot { id } } }`,
        { r: runId },
      )
    ).run;
    if (!["QUEUED", "RUNNING"].includes(run.status)) return run;
    await Bun.sleep(25);
  }
  throw new Error("run did not finish");
}

const exec = async (branchId: string, command: string) =>
  (
    await gql(`mutation($b: ID!, $c: String!) { exec(branchId: $b, command: $c) { id status } }`, {
      b: branchId,
      c: command,
    })
  ).exec;

test("abortRun stops a long run within a second; it ends ABORTED with a snapshot", async () => {
  const s = await newSession();
  const run = await exec(s.mainBranch.id, "echo begin; sleep 60");
  for (let i = 0; i < 200 && !(await outputOf(run.id)).includes("begin"); i++) await Bun.sleep(20);
  const t = performance.now();
  const aborted = (await gql(`mutation($r: ID!) { abortRun(id: $r) { status killedBy } }`, { r: run.id }))
    .abortRun;
  expect(performance.now() - t).toBeLessThan(5_000);
  expect(aborted).toEqual({ status: "ABORTED", killedBy: "abort" });
  const done = await finished(run.id);
  expect(done.output).toBe("begin\n");
  expect(done.snapshot).not.toBeNull();
  // A queued run can be aborted before it starts.
  const blocker = await exec(s.mainBranch.id, "sleep 60");
  const queued = await exec(s.mainBranch.id, "echo never");
  expect(
    (await gql(`mutation($r: ID!) { abortRun(id: $r) { status } }`, { r: queued.id })).abortRun.status,
  ).toBe("ABORTED");
  await gql(`mutation($r: ID!) { abortRun(id: $r) { status } }`, { r: blocker.id });
  expect((await finished(queued.id)).output).toBe("");
});

async function outputOf(runId: string): Promise<string> {
  return (await gql(`query($r: ID!) { run(id: $r) { output } }`, { r: runId })).run.output;
}

test("runs on one branch queue in order; runs on different branches run in parallel", async () => {
  const s = await newSession();
  const a = await exec(s.mainBranch.id, "sleep 0.6; echo 1 >> order.txt");
  const b = await exec(s.mainBranch.id, "echo 2 >> order.txt");
  const [ra, rb] = [await finished(a.id), await finished(b.id)];
  expect(new Date(rb.startedAt).getTime()).toBeGreaterThanOrEqual(new Date(ra.finishedAt).getTime());
  expect(
    (
      await gql(`query($b: ID!) { branch(id: $b) { file(path: "order.txt") { content } } }`, {
        b: s.mainBranch.id,
      })
    ).branch.file.content,
  ).toBe("1\n2\n");

  const forks = await Promise.all(
    [1, 2, 3].map(
      async (i) =>
        (
          await gql(`mutation($s: ID!) { fork(snapshotId: $s, name: "p${i}") { id } }`, {
            s: s.mainBranch.head.id,
          })
        ).fork.id,
    ),
  );
  const t = performance.now();
  const parallel = await Promise.all(forks.map((f) => exec(f, "sleep 1")));
  const done = await Promise.all(parallel.map((r) => finished(r.id)));
  const wall = performance.now() - t;
  expect(done.every((r) => r.status === "SUCCEEDED")).toBe(true);
  // Three 1 s runs in parallel take about 1 s, not 3 (generous bound for a loaded machine).
  expect(wall).toBeLessThan(2_800);
});

test("a late runOutput subscriber gets everything printed so far, then the rest, once and in order", async () => {
  const s = await newSession();
  const run = await exec(s.mainBranch.id, "for i in 1 2 3; do echo line$i; sleep 0.3; done");
  await Bun.sleep(450);
  const client = wsClient(server.wsUrl, token);
  const c = collect(
    client,
    `subscription($r: ID!) { runOutput(runId: $r) { __typename ... on RunOutputChunk { seq text } ... on RunFinished { status } } }`,
    { r: run.id },
  );
  await c.until((r) => r.data.runOutput.__typename === "RunFinished");
  const chunks = c.results
    .filter((r) => r.data.runOutput.__typename === "RunOutputChunk")
    .map((r) => r.data.runOutput);
  expect(chunks.map((ch) => ch.text).join("")).toBe("line1\nline2\nline3\n");
  expect(chunks.map((ch) => ch.seq)).toEqual(chunks.map((_, i) => i + 1));
  // After the end, a new subscriber gets the stored output and the end at once.
  const late = collect(
    client,
    `subscription($r: ID!) { runOutput(runId: $r) { __typename ... on RunOutputChunk { text } } }`,
    { r: run.id },
  );
  await late.completed;
  expect(late.results.map((r) => r.data.runOutput.__typename)).toContain("RunFinished");
  await client.dispose();
});

test("tree.svg draws the tree for members only: heads labelled, main highlighted, failed runs marked", async () => {
  const s = await newSession({ "a.txt": "a" });
  const failed = await exec(s.mainBranch.id, "exit 3");
  expect((await finished(failed.id)).status).toBe("FAILED");
  const fork = (
    await gql(`mutation($s: ID!) { fork(snapshotId: $s, name: "experiment") { id } }`, {
      s: s.mainBranch.head.id,
    })
  ).fork;
  await gql(`mutation($b: ID!) { checkpoint(branchId: $b, label: "on <fork>") { id } }`, { b: fork.id });

  const res = await fetch(`${server.url}/sessions/${s.id}/tree.svg`, {
    headers: { authorization: `Bearer ${token}` },
  });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("image/svg+xml");
  const svg = await res.text();
  const nodes = (await gql(`query($s: ID!) { session(id: $s) { snapshots { nodes { id } } } }`, { s: s.id }))
    .session.snapshots.nodes;
  for (const n of nodes) expect(svg).toContain(`data-id="${n.id}"`);
  expect(svg).toContain('class="branch main"');
  expect(svg).toContain(">experiment<");
  expect(svg).toContain("#dc2626"); // the failed run's snapshot
  expect(svg).toContain("on &lt;fork&gt;"); // labels are escaped
  expect(svg).not.toContain("on <fork>");
  // The same with ?token= (for <img>), and refused to strangers and anonymous callers.
  expect((await fetch(`${server.url}/sessions/${s.id}/tree.svg?token=${token}`)).status).toBe(200);
  const stranger = (await server.signUp()).token;
  const denied = await fetch(`${server.url}/sessions/${s.id}/tree.svg`, {
    headers: { authorization: `Bearer ${stranger}` },
  });
  expect(denied.status).toBe(404);
  expect((await denied.json()).errors[0].extensions.code).toBe("NOT_FOUND");
  expect((await fetch(`${server.url}/sessions/${s.id}/tree.svg`)).status).toBe(401);
});

test("deleteSession tears down its sandboxes, frees its storage and ends its subscriptions", async () => {
  const s = await newSession();
  const run = await exec(s.mainBranch.id, "head -c 300000 /dev/urandom > big.bin");
  await finished(run.id);
  const client = wsClient(server.wsUrl, token);
  const events = collect(client, `subscription($s: ID!) { sessionEvents(sessionId: $s) { kind } }`, {
    s: s.id,
  });
  await Bun.sleep(100);
  expect((await gql(`mutation($s: ID!) { deleteSession(id: $s) }`, { s: s.id })).deleteSession).toBe(true);
  await events.until((r) => r.data.sessionEvents.kind === "SESSION_DELETED");
  await events.completed;
  const gone = await server.gql(`query($s: ID!) { session(id: $s) { id } }`, { s: s.id }, token);
  expect(gone.errors![0]!.extensions!.code).toBe("NOT_FOUND");
  const runGone = await server.gql(`query($r: ID!) { run(id: $r) { id } }`, { r: run.id }, token);
  expect(runGone.errors![0]!.extensions!.code).toBe("NOT_FOUND");
  await client.dispose();
});

test("sessions is a cursor-paginated connection, newest first", async () => {
  const user = await server.signUp();
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) {
    ids.push(
      (
        await gql(
          `mutation($t: String!) { createSession(input: { title: $t }) { id } }`,
          { t: `s${i}` },
          user.token,
        )
      ).createSession.id,
    );
  }
  const seen: string[] = [];
  let after: string | null = null;
  for (;;) {
    const page: any = (
      await gql(
        `query($a: String) { sessions(first: 2, after: $a) { nodes { id } pageInfo { hasNextPage endCursor } } }`,
        { a: after },
        user.token,
      )
    ).sessions;
    seen.push(...page.nodes.map((n: { id: string }) => n.id));
    if (!page.pageInfo.hasNextPage) break;
    after = page.pageInfo.endCursor;
  }
  expect(seen).toEqual([...ids].reverse());
  const bad = await server.gql(`{ sessions(first: 1000) { nodes { id } } }`, {}, user.token);
  expect(bad.errors![0]!.extensions!.code).toBe("BAD_USER_INPUT");
});
