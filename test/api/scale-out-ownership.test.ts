// Any instance serves any branch: real server processes sharing one libSQL file, one JWT secret, one
// snapshot store (SANDBOX_STORE_DIR) and one Redis (REDIS_URL, and again through the fake Upstash).
// A branch's live sandbox belongs to the instance that holds its lease; work sent to another instance
// is forwarded to the owner (runs, writes, live reads, aborts, the agent proxy), and when the owner
// is killed the next instance that needs the branch takes it over from its head snapshot.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { clusterKey, createPeerAuth } from "../../cluster/peer-auth.ts";
import { LocalProvider } from "../../sandbox/local/provider.ts";
import { startFakeModel } from "../../scripts/fake-model.ts";
import { type ServerProcess, startServerProcess } from "../../scripts/lib/server-process.ts";
import { postGraphql } from "../utils/graphql-http.ts";
import { agentUnavailable } from "../utils/isolation.ts";
import { sharedEnv, useSharedBackends } from "../utils/shared-state.ts";
import { collect, wsClient } from "../utils/ws.ts";

let redis: Redis | undefined;
const shared = useSharedBackends(() => void redis?.disconnect());
const { skip } = shared;
const LEASE_MS = 2000;

const gql = (server: { url: string }, query: string, variables = {}, token?: string) =>
  postGraphql(server.url, query, variables, token);

async function ok(server: { url: string }, query: string, variables = {}, token?: string) {
  const reply = await gql(server, query, variables, token);
  if (reply.errors) throw new Error(`${query.slice(0, 60)}: ${JSON.stringify(reply.errors)}`);
  return reply.data;
}

const wsUrl = (server: { url: string }) => `${server.url.replace(/^http/, "ws")}/graphql`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function signUp(server: { url: string }) {
  const email = `own-${crypto.randomUUID().slice(0, 8)}@example.com`;
  const data = await ok(
    server,
    `mutation($e: String!) { register(email: $e, password: "password123") { token user { id } } }`,
    { e: email },
  );
  return { token: data.register.token as string };
}

async function newSession(server: { url: string }, token: string) {
  return (
    await ok(
      server,
      `mutation { createSession(input: { title: "own", files: { a_txt: "a" } }) { id mainBranch { id agentUrl } } }`,
      {},
      token,
    )
  ).createSession as { id: string; mainBranch: { id: string; agentUrl: string | null } };
}

const exec = async (server: { url: string }, token: string, branchId: string, command: string) =>
  (
    await ok(
      server,
      `mutation($b: ID!, $c: String!) { exec(branchId: $b, command: $c) { id status } }`,
      { b: branchId, c: command },
      token,
    )
  ).exec as { id: string; status: string };

const runOf = async (server: { url: string }, token: string, runId: string) =>
  (await ok(server, `query($r: ID!) { run(id: $r) { id status error } }`, { r: runId }, token)).run as {
    status: string;
    error: string | null;
  };

/** A run's output through one instance, to its end: the text and the final status. */
async function outputOf(server: { url: string }, token: string, runId: string, timeoutMs = 30_000) {
  const sub = collect(
    wsClient(wsUrl(server), token),
    `subscription($r: ID!) { runOutput(runId: $r) { __typename ... on RunOutputChunk { seq text } ... on RunFinished { seq status } } }`,
    { r: runId },
  );
  try {
    const end = await sub.until((r) => r.data?.runOutput.__typename === "RunFinished", timeoutMs);
    const text = sub.results.map((r) => r.data?.runOutput.text ?? "").join("");
    return { text, status: end.data.runOutput.status as string };
  } finally {
    sub.dispose();
  }
}

async function until<T>(
  what: string,
  probe: () => Promise<T | null | undefined | false>,
  timeoutMs = 20_000,
) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

const fileOf = async (server: { url: string }, token: string, branchId: string, path: string) =>
  (
    await ok(
      server,
      `query($b: ID!, $p: String!) { branch(id: $b) { file(path: $p) { content } } }`,
      { b: branchId, p: path },
      token,
    )
  ).branch.file?.content as string | undefined;

const snapshotIds = async (server: { url: string }, token: string, sessionId: string) =>
  (
    await ok(
      server,
      `query($s: ID!) { session(id: $s) { snapshots(first: 100) { edges { node { id } } } } }`,
      { s: sessionId },
      token,
    )
  ).session.snapshots.edges.map((e: { node: { id: string } }) => e.node.id) as string[];

// Two instances' local providers on one machine, one shared store (SANDBOX_STORE_DIR): what the
// takeovers above rely on, checked in process (no Redis needed).
describe("a snapshot store shared by instances on one machine", () => {
  const root = mkdtempSync(join(tmpdir(), "occ-shared-store-"));
  const open = (name: string) =>
    new LocalProvider({ dir: join(root, name), storeDir: join(root, "store"), workspaces: "copy" }).init();
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  test("one instance's snapshot opens on another; a start-up or GC elsewhere spares its workspaces and fresh objects", async () => {
    const a = await open("a");
    const sandbox = await a.create({ kind: "files", files: { "x.txt": "from a" } });
    const snap = await a.snapshot(sandbox);
    await a.writeFile(sandbox, "y.txt", "not yet snapshotted");
    // B starts (its start-up clears its own workspaces and dead processes' temp files only) and
    // collects with no roots at all: A's snapshot and objects are young, so they stay.
    const b = await open("b");
    await b.gc([]);
    expect(new TextDecoder().decode((await a.readFile({ sandbox }, "y.txt"))!)).toBe("not yet snapshotted");
    const onB = await b.fork(snap.id);
    expect(new TextDecoder().decode((await b.readFile({ sandbox: onB }, "x.txt"))!)).toBe("from a");
    expect(await a.snapshot(sandbox)).toMatchObject({ parentId: snap.id });
    expect(await b.fsck()).toEqual([]);
    await b.close();
    await a.close();
  });
});

for (const kind of ["redis", "upstash"] as const) {
  describe.skipIf(skip)(`instances sharing ${kind} serve any branch`, () => {
    const dir = mkdtempSync(join(tmpdir(), `occ-own-${kind}-`));
    const fake = startFakeModel({
      apiKey: "sk-platform",
      scenarios: [
        {
          match: "approve",
          steps: [
            { tool: "bash", args: { command: "echo approved > approved.txt", description: "write" } },
            { text: "It ran." },
          ],
        },
        { steps: [{ text: "hello" }] },
      ],
    });
    const secret = `ownership-secret-${crypto.randomUUID()}`;
    let env: Record<string, string>;
    let a: ServerProcess;
    let b: ServerProcess;
    const spawned: ServerProcess[] = [];
    const spawn = async () => {
      const server = await startServerProcess(env);
      spawned.push(server);
      return server;
    };

    beforeAll(async () => {
      env = {
        NODE_ENV: "test",
        DATABASE_URL: `file:${join(dir, "shared.db")}`,
        SANDBOX_STORE_DIR: join(dir, "store"),
        JWT_SECRET: secret,
        REDIS_KEY_PREFIX: `own-${kind}:`,
        CLUSTER_LEASE_MS: String(LEASE_MS),
        ...sharedEnv(kind, shared.redis, shared.upstash),
        AGENT_MODEL_BASE_URL: fake.baseURL,
        AGENT_MODEL_API_KEY: "sk-platform",
        AGENT_MODEL: "fake-model",
        OUTBOUND_ALLOW_HOSTS: "127.0.0.1",
      };
      a = await spawn();
      b = await spawn();
    });
    afterAll(async () => {
      for (const server of spawned) await server.stop().catch(() => {});
      await fake.close();
      rmSync(dir, { recursive: true, force: true });
    });

    /** The URLs of the instances holding branch leases now (the shared store's own record). */
    async function leaseHolders(): Promise<string[]> {
      redis ??= new Redis(shared.redis.url);
      const prefix = `own-${kind}:cluster:`;
      const holders: string[] = [];
      for (const key of await redis.keys(`${prefix}lease:*`)) {
        const holder = await redis.get(key);
        if (holder) holders.push((await redis.get(`${prefix}instance:${holder}`)) ?? "(gone)");
      }
      return holders;
    }

    test("exec sent to B on a branch A owns runs on A and succeeds; both see its output", async () => {
      const me = await signUp(a);
      const session = await newSession(a, me.token);
      const run = await exec(
        b,
        me.token,
        session.mainBranch.id,
        "cat a_txt; echo; echo from-b > b.txt; echo done",
      );
      const [onA, onB] = await Promise.all([outputOf(a, me.token, run.id), outputOf(b, me.token, run.id)]);
      expect(onB).toEqual({ text: "a\ndone\n", status: "SUCCEEDED" });
      expect(onA).toEqual(onB);
      expect(await fileOf(a, me.token, session.mainBranch.id, "b.txt")).toBe("from-b\n");
      // The owner executed it: B took no branch.
      expect(await leaseHolders()).toContain(a.url);
      expect(await leaseHolders()).not.toContain(b.url);
    });

    test("writeFile through B lands in A's live sandbox; A and B read it, and A's next run sees it", async () => {
      const me = await signUp(a);
      const session = await newSession(a, me.token);
      const branch = session.mainBranch.id;
      await ok(
        b,
        `mutation($b: ID!) { writeFile(branchId: $b, path: "w.txt", content: "written via B") { id } }`,
        { b: branch },
        me.token,
      );
      expect(await fileOf(a, me.token, branch, "w.txt")).toBe("written via B");
      expect(await fileOf(b, me.token, branch, "w.txt")).toBe("written via B");
      const run = await exec(a, me.token, branch, "cat w.txt");
      expect(await outputOf(a, me.token, run.id)).toEqual({ text: "written via B", status: "SUCCEEDED" });
      expect(await leaseHolders()).not.toContain(b.url);
    });

    test("B reads the live workspace of a run in progress on A", async () => {
      const me = await signUp(a);
      const session = await newSession(a, me.token);
      const branch = session.mainBranch.id;
      const run = await exec(a, me.token, branch, "echo partial > p.txt; sleep 3; echo final > p.txt");
      // Through B, while the run goes on: its work in progress, not the head snapshot (which has no p.txt).
      expect(await until("the live file through B", () => fileOf(b, me.token, branch, "p.txt"))).toBe(
        "partial\n",
      );
      expect((await runOf(b, me.token, run.id)).status).toBe("RUNNING");
      expect((await outputOf(b, me.token, run.id)).status).toBe("SUCCEEDED");
      expect(await fileOf(b, me.token, branch, "p.txt")).toBe("final\n");
    });

    test("Branch.status from any instance: B says running while A executes the run, idle after", async () => {
      const me = await signUp(a);
      const session = await newSession(a, me.token);
      const branch = session.mainBranch.id;
      const statusOn = async (server: { url: string }) =>
        (await ok(server, `query($b: ID!) { branch(id: $b) { status } }`, { b: branch }, me.token)).branch
          .status as string;
      const run = await exec(a, me.token, branch, "sleep 3");
      await until("the run to start", async () => (await runOf(b, me.token, run.id)).status === "RUNNING");
      // B executes nothing of it and holds no lease: the runs table says what runs where.
      expect(await statusOn(b)).toBe("running");
      expect(await statusOn(a)).toBe("running");
      // As part of a listing too (the session's branches, batched).
      const listed = await ok(
        b,
        `query($s: ID!) { session(id: $s) { branches { id status } } }`,
        { s: session.id },
        me.token,
      );
      expect(listed.session.branches).toEqual([{ id: branch, status: "running" }]);
      expect((await outputOf(b, me.token, run.id)).status).toBe("SUCCEEDED");
      // Ended: the workspace stays live on A, which B knows of.
      expect(await statusOn(b)).toBe("idle");
      expect(await statusOn(a)).toBe("idle");
      expect(await leaseHolders()).not.toContain(b.url);
    });

    test("abortRun through B stops a run executing on A", async () => {
      const me = await signUp(a);
      const session = await newSession(a, me.token);
      const run = await exec(a, me.token, session.mainBranch.id, "echo started; sleep 30");
      await until("the run to start", async () => (await runOf(b, me.token, run.id)).status === "RUNNING");
      const aborted = (
        await ok(b, `mutation($r: ID!) { abortRun(id: $r) { id status } }`, { r: run.id }, me.token)
      ).abortRun;
      expect(aborted.id).toBe(run.id);
      expect((await outputOf(b, me.token, run.id, 10_000)).status).toBe("ABORTED");
    });

    test.skipIf(agentUnavailable !== null)(
      "the agent proxy through B reaches the live agent on A",
      async () => {
        const me = await signUp(a);
        const session = await newSession(a, me.token);
        const onB = session.mainBranch.agentUrl!.replace(a.url, b.url);
        const res = await fetch(`${onB}/session`, { headers: { authorization: `Bearer ${me.token}` } });
        expect(res.status).toBe(200);
        expect(Array.isArray(await res.json())).toBe(true);
        // An event stream through B: the owner's hello arrives, streamed through both hops.
        const events = await fetch(`${onB}/global/event`, {
          headers: { authorization: `Bearer ${me.token}` },
        });
        expect(events.status).toBe(200);
        expect(events.headers.get("content-type")).toContain("text/event-stream");
        const reader = events.body!.getReader();
        expect(new TextDecoder().decode((await reader.read()).value)).toContain("data:");
        await reader.cancel();
        // A stranger is refused by B before anything is passed on, as by A.
        const stranger = await signUp(b);
        const refused = await fetch(`${onB}/session`, {
          headers: { authorization: `Bearer ${stranger.token}` },
        });
        expect(refused.status).toBe(404);
      },
    );

    test.skipIf(agentUnavailable !== null)(
      "a prompt through B runs on A; its permission ask is answered through B",
      async () => {
        const me = await signUp(a);
        const session = await newSession(a, me.token);
        await ok(
          a,
          `mutation($s: ID!) { setAgentPermissions(sessionId: $s, mode: ASK) { agentPermissions } }`,
          { s: session.id },
          me.token,
        );
        const run = (
          await ok(
            b,
            `mutation($b: ID!) { prompt(branchId: $b, text: "approve this") { id } }`,
            { b: session.mainBranch.id },
            me.token,
          )
        ).prompt;
        const out = collect(
          wsClient(wsUrl(b), me.token),
          `subscription($r: ID!) { runOutput(runId: $r) { __typename ... on AgentPermissionAsked { id } ... on AgentPermissionReplied { reply user { id } } ... on RunFinished { status snapshot { file(path: "approved.txt") { content } } } } }`,
          { r: run.id },
        );
        try {
          const asked = (
            await out.until((r) => r.data?.runOutput.__typename === "AgentPermissionAsked", 120_000)
          ).data.runOutput;
          await ok(
            b,
            `mutation($r: ID!, $p: String!) { answerPermission(runId: $r, permissionId: $p, reply: ONCE) { id } }`,
            { r: run.id, p: asked.id },
            me.token,
          );
          const end = (await out.until((r) => r.data?.runOutput.__typename === "RunFinished", 120_000)).data
            .runOutput;
          expect(end).toEqual({
            __typename: "RunFinished",
            status: "SUCCEEDED",
            snapshot: { file: { content: "approved\n" } },
          });
          expect(out.results.some((r) => r.data?.runOutput.reply === "ONCE")).toBe(true);
        } finally {
          out.dispose();
        }
        expect(await leaseHolders()).not.toContain(b.url);
      },
      180_000,
    );

    test("internal routes refuse unsigned, badly signed, replayed and user-token calls", async () => {
      const me = await signUp(a);
      const url = `${b.url}/internal/cluster/op/run.abort`;
      const body = JSON.stringify({ runId: "run_x" });
      const post = (headers: Record<string, string>) =>
        fetch(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });
      expect((await post({})).status).toBe(403);
      expect((await post({ authorization: `Bearer ${me.token}` })).status).toBe(403);
      const wrong = createPeerAuth(clusterKey("not-the-secret-not-the-secret-not-the"));
      expect(
        (await post(wrong.sign("POST", "/internal/cluster/op/run.abort", new TextEncoder().encode(body))))
          .status,
      ).toBe(403);
      // The right key (derived from the shared JWT secret) works once; the same signature again does not.
      const right = createPeerAuth(clusterKey(secret));
      const headers = right.sign("POST", "/internal/cluster/op/run.abort", new TextEncoder().encode(body));
      const first = await post(headers);
      expect(first.status).toBe(200);
      expect(await first.json()).toEqual({ result: false });
      expect((await post(headers)).status).toBe(403);
      // Signed for another body: refused.
      const other = right.sign("POST", "/internal/cluster/op/run.abort", new TextEncoder().encode("{}"));
      expect((await post(other)).status).toBe(403);
      // An unsigned call is refused from its headers, before its body is read: a 20 MB body streamed
      // slowly gets its 403 while most of it has not been sent.
      let sent = 0;
      const chunk = new Uint8Array(1024 * 1024);
      const slow = new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (sent >= 20) return controller.close();
          sent++;
          await Bun.sleep(50);
          controller.enqueue(chunk);
        },
      });
      const early = await fetch(url, { method: "POST", body: slow, duplex: "half" } as RequestInit);
      expect(early.status).toBe(403);
      expect(sent).toBeLessThan(20);
      // A timestamp outside the window is refused whatever the signature.
      const stale = {
        "x-occ-cluster-time": String(Date.now() - 120_000),
        "x-occ-cluster-signature": "a".repeat(64),
      };
      expect((await post(stale)).status).toBe(403);
    });

    test("a restarted instance leaves the runs of a live instance alone", async () => {
      const me = await signUp(a);
      const session = await newSession(a, me.token);
      const run = await exec(a, me.token, session.mainBranch.id, "sleep 2; echo survived");
      await until("the run to start", async () => (await runOf(a, me.token, run.id)).status === "RUNNING");
      const late = await spawn(); // starts while A's run is in progress
      expect((await runOf(late, me.token, run.id)).status).toBe("RUNNING");
      expect(await outputOf(late, me.token, run.id)).toEqual({ text: "survived\n", status: "SUCCEEDED" });
    });

    test("kill -9 of the owner mid-run: the run ends INTERRUPTED, B takes the branch over from its head", async () => {
      const victim = await spawn();
      const me = await signUp(victim);
      const session = await newSession(victim, me.token);
      const branch = session.mainBranch.id;
      await ok(
        b,
        `mutation($b: ID!) { writeFile(branchId: $b, path: "kept.txt", content: "before the crash") { id } }`,
        { b: branch },
        me.token,
      );
      const snapshotsBefore = await snapshotIds(b, me.token, session.id);
      const doomed = await exec(b, me.token, branch, "echo started; sleep 60");
      const watching = outputOf(b, me.token, doomed.id, 30_000);
      await until(
        "the run to start on the victim",
        async () => (await runOf(b, me.token, doomed.id)).status === "RUNNING",
      );
      await victim.kill();
      expect(await leaseHolders()).toContain(victim.url); // until its lease expires
      // Meanwhile work sent to the dead owner does not hang: a typed error the client can retry.
      const early = await gql(
        b,
        `mutation($b: ID!) { writeFile(branchId: $b, path: "early.txt", content: "x") { id } }`,
        { b: branch },
        me.token,
      );
      // (Usually refused: the owner's key outlives it by up to a lease; on a slow machine B may
      // already have taken over, and then the write simply succeeds.)
      if (early.errors) expect(early.errors[0]!.extensions?.code).toBe("UNAVAILABLE");
      // Not stuck RUNNING: whoever notices the owner is gone ends it, and its readers hear the end.
      expect((await watching).status).toBe("INTERRUPTED");
      expect((await runOf(a, me.token, doomed.id)).error).toContain("instance is gone");
      // The next exec through B takes the branch over from its head snapshot (in the shared store).
      const next = await exec(b, me.token, branch, "cat kept.txt; echo; cat a_txt");
      expect(await outputOf(a, me.token, next.id)).toEqual({
        text: "before the crash\na",
        status: "SUCCEEDED",
      });
      expect(await leaseHolders()).not.toContain(victim.url);
      expect(await leaseHolders()).toContain(b.url);
      // Nothing stored before the crash is lost: every snapshot is still there, plus the new run's.
      const after = await snapshotIds(a, me.token, session.id);
      expect(after.length).toBe(snapshotsBefore.length + 1);
      expect(after).toEqual(expect.arrayContaining(snapshotsBefore));
      const runs = (
        await ok(
          a,
          `query($b: ID!) { branch(id: $b) { runs { edges { node { id status } } } } }`,
          { b: branch },
          me.token,
        )
      ).branch.runs.edges.map((e: any) => e.node);
      expect(runs).toContainEqual({ id: doomed.id, status: "INTERRUPTED" });
      expect(runs).toContainEqual({ id: next.id, status: "SUCCEEDED" });
    });

    test("an owner stopped gracefully gives its branches up at once; the next instance takes them over", async () => {
      const leaving = await spawn();
      const me = await signUp(leaving);
      const session = await newSession(leaving, me.token);
      await ok(
        leaving,
        `mutation($b: ID!) { writeFile(branchId: $b, path: "kept.txt", content: "kept") { id } }`,
        { b: session.mainBranch.id },
        me.token,
      );
      expect(await leaseHolders()).toContain(leaving.url);
      await leaving.stop();
      // Released, not left to expire.
      expect(await leaseHolders()).not.toContain(leaving.url);
      const run = await exec(b, me.token, session.mainBranch.id, "cat kept.txt");
      expect(await outputOf(b, me.token, run.id)).toEqual({ text: "kept", status: "SUCCEEDED" });
    });

    test("a paused owner that lost its lease cannot move the head under the new owner (fencing)", async () => {
      const paused = await spawn();
      const me = await signUp(paused);
      const session = await newSession(paused, me.token);
      const branch = session.mainBranch.id;
      const stale = await exec(paused, me.token, branch, "echo stale > stale.txt; sleep 1");
      await until("the run to start", async () => (await runOf(b, me.token, stale.id)).status === "RUNNING");
      process.kill(paused.pid, "SIGSTOP");
      try {
        // Gone to the others: its run is interrupted, and B takes the branch over and moves its head.
        expect((await outputOf(b, me.token, stale.id, 30_000)).status).toBe("INTERRUPTED");
        const fresh = await exec(b, me.token, branch, "echo fresh > fresh.txt");
        expect((await outputOf(b, me.token, fresh.id)).status).toBe("SUCCEEDED");
      } finally {
        process.kill(paused.pid, "SIGCONT");
      }
      // Awake again, its command ends: it finds the lease gone and records nothing.
      await sleep(LEASE_MS + 1500);
      expect((await runOf(a, me.token, stale.id)).status).toBe("INTERRUPTED");
      expect(await fileOf(a, me.token, branch, "fresh.txt")).toBe("fresh\n");
      expect(await fileOf(a, me.token, branch, "stale.txt")).toBeUndefined();
      // And it is a working instance again: a new branch's work runs there.
      const other = await newSession(paused, me.token);
      const run = await exec(paused, me.token, other.mainBranch.id, "cat a_txt");
      expect(await outputOf(paused, me.token, run.id)).toEqual({ text: "a", status: "SUCCEEDED" });
    });
  });
}
