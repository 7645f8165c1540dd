// The branching workflow end to end, through the public GraphQL/WebSocket API of a real server:
// import a git repo, run its tests, checkpoint, fork twice, edit each fork differently, diff, roll
// back, promote; the tree and the event stream are checked at every step. One suite, run on every
// sandbox provider: `local`, and `contree` against the fake ConTree service.
//
// The repository is served over git's "dumb" HTTP protocol (static files), so both providers clone
// the same http:// URL: local on the host, contree inside its (fake) microVM.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type FakeContree, startFakeContree } from "../../scripts/fake-contree/index.ts";
import { skip } from "../utils/isolation.ts";
import { startTestServer, type TestServer } from "../utils/server.ts";
import { collect, wsClient } from "../utils/ws.ts";

let server: TestServer;
let fake: FakeContree;
let repo: string;
let repoUrl: string;
let gitServer: ReturnType<typeof Bun.serve>;

beforeAll(async () => {
  fake = await startFakeContree({ delays: { pendingMs: 5, assignedMs: 5 } });
  server = await startTestServer({
    CONTREE_URL: fake.url,
    CONTREE_API_KEY: fake.token,
    CONTREE_PROJECT: fake.project ?? "",
    OUTBOUND_ALLOW_HOSTS: "127.0.0.1", // the repository is served on loopback (refused by default)
  });
  repo = mkdtempSync(join(tmpdir(), "occ-e2e-repo-"));
  mkdirSync(join(repo, "src"));
  writeFileSync(
    join(repo, "package.json"),
    JSON.stringify({ name: "demo", scripts: { test: "node test.js" } }),
  );
  writeFileSync(
    join(repo, "test.js"),
    "const v = require('fs').readFileSync('src/value.txt', 'utf8').trim();\nconsole.log('value is ' + v);\nprocess.exit(v === 'ok' ? 0 : 1);\n",
  );
  writeFileSync(join(repo, "src/value.txt"), "ok\n");
  const git = (...args: string[]) =>
    execFileSync("git", ["-c", "user.email=t@example.com", "-c", "user.name=t", ...args], {
      cwd: repo,
      stdio: "pipe",
    });
  git("init", "-q", "-b", "main");
  git("add", "-A");
  git("commit", "-qm", "init");
  git("clone", "-q", "--bare", repo, join(repo, "served.git"));
  execFileSync("git", ["update-server-info"], { cwd: join(repo, "served.git") });
  const root = join(repo, "served.git");
  gitServer = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(request) {
      const path = decodeURIComponent(new URL(request.url).pathname).replace(/^\/served\.git/, "");
      if (path.includes("..")) return new Response("no", { status: 400 });
      const file = Bun.file(join(root, path));
      return file.size > 0 || path.endsWith("HEAD")
        ? new Response(file)
        : new Response("not found", { status: 404 });
    },
  });
  repoUrl = `http://127.0.0.1:${gitServer.port}/served.git`;
});

afterAll(async () => {
  gitServer.stop(true);
  await server.close();
  await fake.close();
  rmSync(repo, { recursive: true, force: true });
});

const RUN_OUTPUT = `subscription($id: ID!) { runOutput(runId: $id) {
  __typename ... on RunOutputChunk { seq stream text } ... on RunFinished { seq status exitCode snapshot { id parentId } } } }`;

for (const provider of ["local", "contree"]) {
  // The contree run needs processes in the fake ConTree's VMs: without bubblewrap it is skipped, with why.
  const it = provider === "contree" ? skip.unlessFakeContreeProcesses : test;
  it(`${provider}: import a repo, test, checkpoint, fork twice, diff, roll back, promote`, async () => {
    const { token } = await server.signUp();
    const gql = async (query: string, variables: Record<string, unknown> = {}) => {
      const res = await server.gql(query, variables, token);
      if (res.errors) throw new Error(JSON.stringify(res.errors));
      return res.data!;
    };
    const client = wsClient(server.wsUrl, token);

    // 1. A session from a git repository, with the event cursor read in the same reply.
    const created = (
      await gql(
        `mutation($url: String!, $p: String) { createSession(input: { title: "e2e", repoUrl: $url, provider: $p }) {
        id eventCursor provider viewerRole mainBranch { id name head { id parentId origin } } rootSnapshot { id } } }`,
        { url: repoUrl, p: provider },
      )
    ).createSession;
    expect(created.provider).toBe(provider);
    expect(created.viewerRole).toBe("OWNER");
    expect(created.mainBranch.name).toBe("main");
    expect(created.mainBranch.head).toEqual({
      id: created.rootSnapshot.id,
      parentId: null,
      origin: "IMPORT",
    });
    const sessionId = created.id;
    const main = created.mainBranch.id;
    const root = created.rootSnapshot.id;
    const events = collect(
      client,
      "subscription($s: ID!, $after: String) { sessionEvents(sessionId: $s, after: $after) { cursor kind branch { id } snapshot { id } run { id status } } }",
      {
        s: sessionId,
        after: created.eventCursor,
      },
    );
    const kinds = () => events.results.map((r) => r.data.sessionEvents.kind);

    // 2. npm test on main: output streams, the run ends SUCCEEDED with a snapshot whose parent is the root.
    const run1 = (
      await gql(`mutation($b: ID!) { exec(branchId: $b, command: "npm test --silent") { id status } }`, {
        b: main,
      })
    ).exec;
    expect(["QUEUED", "RUNNING"]).toContain(run1.status);
    const out1 = collect(client, RUN_OUTPUT, { id: run1.id });
    const end1 = (await out1.until((r) => r.data.runOutput.__typename === "RunFinished")).data.runOutput;
    const text1 = out1.results
      .filter((r) => r.data.runOutput.__typename === "RunOutputChunk")
      .map((r) => r.data.runOutput.text)
      .join("");
    expect(text1).toContain("value is ok");
    expect(end1.status).toBe("SUCCEEDED");
    expect(end1.exitCode).toBe(0);
    expect(end1.snapshot.parentId).toBe(root);
    const seqs = out1.results.map((r) => r.data.runOutput.seq);
    expect(seqs).toEqual(seqs.map((_, i) => i + 1));
    const afterTests = end1.snapshot.id;

    // 3. Checkpoint with a label.
    const checkpoint = (
      await gql(
        `mutation($b: ID!) { checkpoint(branchId: $b, label: "baseline") { id parentId label origin } }`,
        { b: main },
      )
    ).checkpoint;
    expect(checkpoint).toMatchObject({ parentId: afterTests, label: "baseline", origin: "CHECKPOINT" });

    // 4. Two forks of the checkpoint, edited differently.
    const forkA = (
      await gql(`mutation($s: ID!) { fork(snapshotId: $s, name: "try-a") { id name head { id } } }`, {
        s: checkpoint.id,
      })
    ).fork;
    const forkB = (
      await gql(`mutation($s: ID!) { fork(snapshotId: $s, name: "try-b") { id head { id } } }`, {
        s: checkpoint.id,
      })
    ).fork;
    expect(forkA.head.id).toBe(checkpoint.id);
    const dup = await server.gql(
      `mutation($s: ID!) { fork(snapshotId: $s, name: "try-a") { id } }`,
      { s: checkpoint.id },
      token,
    );
    expect(dup.errors![0]!.extensions!.code).toBe("CONFLICT");

    const writeA = (
      await gql(
        `mutation($b: ID!) { writeFile(branchId: $b, path: "src/value.txt", content: "A\\n") { id parentId origin } }`,
        { b: forkA.id },
      )
    ).writeFile;
    expect(writeA).toMatchObject({ parentId: checkpoint.id, origin: "WRITE" });
    const runB = (
      await gql(
        `mutation($b: ID!) { exec(branchId: $b, command: "echo B > src/value.txt && echo extra > b.txt") { id } }`,
        { b: forkB.id },
      )
    ).exec;
    const endB = (
      await collect(client, RUN_OUTPUT, { id: runB.id }).until(
        (r) => r.data.runOutput.__typename === "RunFinished",
      )
    ).data.runOutput;
    expect(endB.status).toBe("SUCCEEDED");

    // The forks are independent, and main is untouched.
    const files = await gql(
      `query($a: ID!, $b: ID!, $m: ID!) {
        a: branch(id: $a) { file(path: "src/value.txt") { content } extra: file(path: "b.txt") { content } }
        b: branch(id: $b) { file(path: "src/value.txt") { content } extra: file(path: "b.txt") { content } }
        m: branch(id: $m) { file(path: "src/value.txt") { content } } }`,
      { a: forkA.id, b: forkB.id, m: main },
    );
    expect(files.a.file.content).toBe("A\n");
    expect(files.a.extra).toBeNull();
    expect(files.b.file.content).toBe("B\n");
    expect(files.b.extra.content).toBe("extra\n");
    expect(files.m.file.content).toBe("ok\n");

    // 5. Diffs show exactly the edits.
    const diffA = (
      await gql(`query($f: ID!, $t: ID!) { diff(from: $f, to: $t) { files { path change patch binary } } }`, {
        f: checkpoint.id,
        t: writeA.id,
      })
    ).diff;
    expect(diffA.files).toEqual([
      {
        path: "src/value.txt",
        change: "modified",
        binary: false,
        patch: expect.stringContaining("-ok\n+A\n"),
      },
    ]);
    const diffB = (
      await gql(`query($f: ID!, $t: ID!) { diff(from: $f, to: $t) { files { path change } } }`, {
        f: checkpoint.id,
        t: endB.snapshot.id,
      })
    ).diff;
    expect(diffB.files).toEqual([
      { path: "b.txt", change: "added" },
      { path: "src/value.txt", change: "modified" },
    ]);

    // 6. Roll fork B back to the checkpoint: its files follow.
    const rolled = (
      await gql(
        `mutation($b: ID!, $s: ID!) { rollback(branchId: $b, snapshotId: $s) { head { id } file(path: "b.txt") { content } } }`,
        { b: forkB.id, s: checkpoint.id },
      )
    ).rollback;
    expect(rolled.head.id).toBe(checkpoint.id);
    expect(rolled.file).toBeNull();
    const rerun = (
      await gql(`mutation($b: ID!) { exec(branchId: $b, command: "cat src/value.txt; ls") { id } }`, {
        b: forkB.id,
      })
    ).exec;
    const rerunOut = collect(client, RUN_OUTPUT, { id: rerun.id });
    const rerunEnd = (await rerunOut.until((r) => r.data.runOutput.__typename === "RunFinished")).data
      .runOutput;
    expect(rerunEnd.snapshot.parentId).toBe(checkpoint.id);
    const rerunText = rerunOut.results
      .filter((r) => r.data.runOutput.text)
      .map((r) => r.data.runOutput.text)
      .join("");
    expect(rerunText).toContain("ok\n");
    expect(rerunText).not.toContain("b.txt");

    // 7. Promote fork A: it becomes main.
    const promoted = (
      await gql(`mutation($b: ID!) { promote(branchId: $b) { mainBranch { id name } } }`, { b: forkA.id })
    ).promote;
    expect(promoted.mainBranch).toEqual({ id: forkA.id, name: "try-a" });

    // The tree: every snapshot with its parent, in an order where parents come first.
    const tree = (
      await gql(
        `query($s: ID!) { session(id: $s) { snapshots(first: 100) { nodes { id parentId origin } } branches { name head { id } } } }`,
        { s: sessionId },
      )
    ).session;
    const nodes = tree.snapshots.nodes as { id: string; parentId: string | null; origin: string }[];
    const seen = new Set<string>();
    for (const node of nodes) {
      if (node.parentId) expect(seen.has(node.parentId)).toBe(true);
      seen.add(node.id);
    }
    const parentOf = Object.fromEntries(nodes.map((n) => [n.id, n.parentId]));
    expect(parentOf[afterTests]).toBe(root);
    expect(parentOf[checkpoint.id]).toBe(afterTests);
    expect(parentOf[writeA.id]).toBe(checkpoint.id);
    expect(parentOf[endB.snapshot.id]).toBe(checkpoint.id);
    expect(nodes.length).toBe(6); // root, tests, checkpoint, write A, run B, re-run on B
    expect(
      Object.fromEntries(
        tree.branches.map((b: { name: string; head: { id: string } }) => [b.name, b.head.id]),
      ),
    ).toEqual({
      main: checkpoint.id,
      "try-a": writeA.id,
      "try-b": rerunEnd.snapshot.id,
    });

    // Events: everything after the cursor, in order, none missed.
    await events.until((r) => r.data.sessionEvents.kind === "MAIN_CHANGED");
    const expected = [
      "RUN_QUEUED",
      "RUN_STARTED",
      "SNAPSHOT_ADDED",
      "HEAD_MOVED",
      "RUN_FINISHED", // npm test
      "SNAPSHOT_ADDED",
      "HEAD_MOVED", // checkpoint
      "BRANCH_CREATED",
      "BRANCH_CREATED",
      "SNAPSHOT_ADDED",
      "HEAD_MOVED", // write on A
      "RUN_QUEUED",
      "RUN_STARTED",
      "SNAPSHOT_ADDED",
      "HEAD_MOVED",
      "RUN_FINISHED", // run on B
      "HEAD_MOVED", // rollback
      "RUN_QUEUED",
      "RUN_STARTED",
      "SNAPSHOT_ADDED",
      "HEAD_MOVED",
      "RUN_FINISHED", // re-run on B
      "MAIN_CHANGED",
    ];
    expect(kinds()).toEqual(expected);
    const cursors = events.results.map((r) => BigInt(r.data.sessionEvents.cursor));
    expect(cursors.every((c, i) => i === 0 || c > cursors[i - 1]!)).toBe(true);
    await client.dispose();
  }, 120_000);
}
