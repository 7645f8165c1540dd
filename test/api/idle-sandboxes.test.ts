// Idle live sandboxes are dropped (BRANCH_IDLE_MS) and capped per instance (MAX_LIVE_SANDBOXES), on
// the real server: the workspace directory goes from SANDBOX_DIR, the lease from Redis, and the next
// work re-creates the sandbox from the head with everything intact (a writeFile, a file-room edit
// that was only ever flushed to the workspace). With Redis, a second instance takes the branch next.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { IDLE_CHECKPOINT_LABEL } from "../../resolvers/idle-drop.ts";
import { type ServerProcess, startServerProcess } from "../../scripts/lib/server-process.ts";
import { startAgentHarness } from "../utils/agent.ts";
import { connectRoom, eventually, type RoomClient } from "../utils/collab.ts";
import { skip } from "../utils/isolation.ts";
import { startTestServer, type TestServer } from "../utils/server.ts";
import { sharedEnv, useSharedBackends } from "../utils/shared-state.ts";

type Gql = (query: string, variables?: Record<string, unknown>, token?: string) => Promise<any>;

/** The live workspaces of a server's local provider (SANDBOX_DIR/live). */
const liveDirs = (dataDir: string) => {
  const dir = join(dataDir, "sandbox", "live");
  return existsSync(dir) ? readdirSync(dir).filter((name) => name.startsWith("sbx-")) : [];
};

function helpers(gql: Gql, token: () => string) {
  const ok = async (query: string, variables: Record<string, unknown> = {}) => {
    const res = await gql(query, variables, token());
    if (res.errors) throw new Error(`${query.slice(0, 60)}: ${JSON.stringify(res.errors)}`);
    return res.data;
  };
  return {
    ok,
    async newSession(files: Record<string, string>) {
      const data = await ok(
        `mutation($f: JSON) { createSession(input: { title: "idle", files: $f }) { id mainBranch { id } } }`,
        { f: files },
      );
      return {
        sessionId: data.createSession.id as string,
        branchId: data.createSession.mainBranch.id as string,
      };
    },
    status: async (branchId: string) =>
      (await ok(`query($b: ID!) { branch(id: $b) { status } }`, { b: branchId })).branch.status as string,
    writeFile: (branchId: string, path: string, content: string) =>
      gql(
        `mutation($b: ID!, $p: String!, $c: String!) { writeFile(branchId: $b, path: $p, content: $c) { id } }`,
        { b: branchId, p: path, c: content },
        token(),
      ),
    async run(branchId: string, command: string, wait = true) {
      const { id } = (
        await ok(`mutation($b: ID!, $c: String!) { exec(branchId: $b, command: $c) { id } }`, {
          b: branchId,
          c: command,
        })
      ).exec;
      for (let i = 0; wait && i < 1200; i++) {
        const r = (await ok(`query($r: ID!) { run(id: $r) { status output error } }`, { r: id })).run;
        if (!["QUEUED", "RUNNING"].includes(r.status)) return r as { status: string; output: string };
        await Bun.sleep(25);
      }
      if (wait) throw new Error("run did not finish");
      return { id } as unknown as { status: string; output: string };
    },
  };
}

describe("one instance", () => {
  let server: TestServer;
  let token = "";
  const clients: RoomClient[] = [];
  const api = helpers(
    (q, v, t) => server.gql(q, v, t),
    () => token,
  );

  beforeAll(async () => {
    server = await startTestServer({
      BRANCH_IDLE_MS: "1500",
      COLLAB_FILE_FLUSH_MS: "100",
      COLLAB_UNLOAD_GRACE_MS: "100",
    });
    token = (await server.signUp()).token;
  });
  afterAll(async () => {
    for (const c of clients) c.provider.destroy();
    await server.close();
  });

  test("an idle branch's sandbox is destroyed; its next exec starts from the head with a write and a file-room edit intact", async () => {
    const { branchId } = await api.newSession({ "notes.md": "# Notes\n" });
    expect((await api.writeFile(branchId, "w.txt", "written")).errors).toBeUndefined();
    // A file-room edit, flushed into the live workspace only (no snapshot has it: it is in the log).
    const room = connectRoom(server.url, `branches/${branchId}/files/notes.md`, token);
    clients.push(room);
    await room.synced;
    await eventually(() => room.text.toString() === "# Notes\n");
    room.text.insert(room.text.length, "typed live\n");
    await eventually(async () => {
      const file = (
        await api.ok(`query($b: ID!) { branch(id: $b) { file(path: "notes.md") { content } } }`, {
          b: branchId,
        })
      ).branch.file;
      return file?.content === "# Notes\ntyped live\n";
    });
    room.provider.destroy();
    expect(liveDirs(server.dataDir).length).toBe(1);
    // Left alone: the workspace directory goes, and the branch shows no live workspace.
    await eventually(() => liveDirs(server.dataDir).length === 0, 15_000);
    expect(await api.status(branchId)).toBe("stopped");
    const run = await api.run(branchId, "cat w.txt; echo; cat notes.md");
    expect(run).toMatchObject({ status: "SUCCEEDED", output: "written\n# Notes\ntyped live\n" });
    expect(liveDirs(server.dataDir).length).toBe(1);
  });

  test("a branch with work going on is not dropped", async () => {
    const { branchId } = await api.newSession({ "a.txt": "a" });
    const long = await api.run(branchId, "sleep 4; echo done", false);
    await Bun.sleep(3000);
    expect(await api.status(branchId)).toBe("running");
    expect(liveDirs(server.dataDir).length).toBeGreaterThanOrEqual(1);
    await eventually(async () => {
      const r = (await api.ok(`query($r: ID!) { run(id: $r) { status } }`, { r: (long as any).id })).run;
      return r.status === "SUCCEEDED";
    }, 10_000);
    // Then idle: dropped like any other.
    await eventually(() => liveDirs(server.dataDir).length === 0, 15_000);
  });
});

describe("the per-instance cap", () => {
  let server: TestServer;
  let token = "";
  const api = helpers(
    (q, v, t) => server.gql(q, v, t),
    () => token,
  );

  beforeAll(async () => {
    server = await startTestServer({ BRANCH_IDLE_MS: "0", MAX_LIVE_SANDBOXES: "2" });
    token = (await server.signUp()).token;
  });
  afterAll(() => server.close());

  test("one more live sandbox evicts the least recently used idle one", async () => {
    const a = await api.newSession({ "f.txt": "a" });
    const b = await api.newSession({ "f.txt": "b" });
    expect(liveDirs(server.dataDir).length).toBe(2);
    const c = await api.newSession({ "f.txt": "c" });
    await eventually(() => liveDirs(server.dataDir).length === 2);
    expect([
      await api.status(a.branchId),
      await api.status(b.branchId),
      await api.status(c.branchId),
    ]).toEqual(["stopped", "idle", "idle"]);
    // A comes back (from its head); B is now the least recently used.
    expect(await api.run(a.branchId, "cat f.txt")).toMatchObject({ status: "SUCCEEDED", output: "a" });
    expect(liveDirs(server.dataDir).length).toBe(2);
    expect([
      await api.status(a.branchId),
      await api.status(b.branchId),
      await api.status(c.branchId),
    ]).toEqual(["idle", "stopped", "idle"]);
  });
});

describe("the cap with every sandbox in use", () => {
  let server: TestServer;
  let token = "";
  const api = helpers(
    (q, v, t) => server.gql(q, v, t),
    () => token,
  );

  beforeAll(async () => {
    server = await startTestServer({ BRANCH_IDLE_MS: "0", MAX_LIVE_SANDBOXES: "1" });
    token = (await server.signUp()).token;
  });
  afterAll(() => server.close());

  test("work that needs one more fails with a retryable UNAVAILABLE, and succeeds once one is idle", async () => {
    const b = await api.newSession({ "f.txt": "b" });
    const a = await api.newSession({ "f.txt": "a" });
    await eventually(() => liveDirs(server.dataDir).length === 1);
    expect(await api.status(b.branchId)).toBe("stopped");
    const busy = (await api.run(a.branchId, "sleep 3", false)) as unknown as { id: string };
    await eventually(async () => (await api.status(a.branchId)) === "running");
    const refused = await api.writeFile(b.branchId, "x.txt", "x");
    expect(refused.errors?.[0]?.extensions).toMatchObject({ code: "UNAVAILABLE", retryable: true });
    expect(refused.errors?.[0]?.message).toContain("at most 1 live workspaces");
    await eventually(async () => {
      const r = (await api.ok(`query($r: ID!) { run(id: $r) { status } }`, { r: busy.id })).run;
      return r.status === "SUCCEEDED";
    }, 10_000);
    expect((await api.writeFile(b.branchId, "x.txt", "x")).errors).toBeUndefined();
    expect(await api.status(a.branchId)).toBe("stopped");
  });
});

const shared = useSharedBackends(() => void redis?.disconnect());
let redis: Redis | undefined;

describe.skipIf(shared.skip)("instances sharing Redis", () => {
  const dir = mkdtempSync(join(tmpdir(), "occ-idle-"));
  const prefix = "idle:";
  let env: Record<string, string>;
  let a: ServerProcess;
  let b: ServerProcess;
  let token = "";
  const on = (server: () => ServerProcess) =>
    helpers(
      async (q, v, t) => {
        const res = await fetch(`${server().url}/graphql`, {
          method: "POST",
          headers: { "content-type": "application/json", ...(t ? { authorization: `Bearer ${t}` } : {}) },
          body: JSON.stringify({ query: q, variables: v ?? {} }),
        });
        return res.json();
      },
      () => token,
    );
  const onA = on(() => a);
  const onB = on(() => b);

  beforeAll(async () => {
    env = {
      NODE_ENV: "test",
      DATABASE_URL: `file:${join(dir, "shared.db")}`,
      SANDBOX_STORE_DIR: join(dir, "store"),
      JWT_SECRET: `idle-secret-${crypto.randomUUID()}`,
      REDIS_KEY_PREFIX: prefix,
      CLUSTER_LEASE_MS: "2000",
      BRANCH_IDLE_MS: "1500",
      ...sharedEnv("redis", shared.redis),
    };
    a = await startServerProcess(env);
    b = await startServerProcess(env);
    redis = new Redis(shared.redis.url);
    const email = `idle-${crypto.randomUUID().slice(0, 8)}@example.com`;
    token = (
      await a.gql(`mutation($e: String!) { register(email: $e, password: "password123") { token } }`, {
        e: email,
      })
    ).register.token;
  });
  afterAll(async () => {
    await a?.stop().catch(() => {});
    await b?.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });

  const holderUrl = async (branchId: string) => {
    const holder = await redis!.get(`${prefix}cluster:lease:${branchId}`);
    return holder && (await redis!.get(`${prefix}cluster:instance:${holder}`));
  };

  test("after the drop the lease key is gone, and the other instance takes the branch with its files", async () => {
    const { branchId } = await onA.newSession({ "a.txt": "a" });
    expect((await onA.writeFile(branchId, "w.txt", "written on A")).errors).toBeUndefined();
    expect(await holderUrl(branchId)).toBe(a.url);
    expect(liveDirs(a.dataDir).length).toBe(1);
    await eventually(async () => (await redis!.exists(`${prefix}cluster:lease:${branchId}`)) === 0, 15_000);
    expect(liveDirs(a.dataDir).length).toBe(0);
    // B needs it next: B takes the lease (A is alive, but no longer holds the branch) and runs it there.
    expect(await onB.run(branchId, "cat w.txt")).toMatchObject({
      status: "SUCCEEDED",
      output: "written on A",
    });
    expect(await holderUrl(branchId)).toBe(b.url);
    expect(liveDirs(b.dataDir).length).toBe(1);
    expect(liveDirs(a.dataDir).length).toBe(0);
  });
});

skip.unlessAgent("a live agent is stopped before its sandbox goes, and what it changed outside turns is checkpointed", async () => {
  const h = await startAgentHarness([{ steps: [{ text: "ok" }] }], { BRANCH_IDLE_MS: "3000" });
  try {
    const s = (
      await h.gql(
        `mutation { createSession(input: { title: "idle agent" }) { id mainBranch { id agentUrl } } }`,
      )
    ).createSession;
    const branchId = s.mainBranch.id as string;
    const prompt = async (text: string) => {
      const id = (
        await h.gql(`mutation($b: ID!, $t: String!) { prompt(branchId: $b, text: $t) { id } }`, {
          b: branchId,
          t: text,
        })
      ).prompt.id;
      for (;;) {
        const r = (await h.gql(`query($r: ID!) { run(id: $r) { status } }`, { r: id })).run;
        if (r.status !== "QUEUED" && r.status !== "RUNNING") return r.status as string;
        await Bun.sleep(50);
      }
    };
    const agent = (path: string, init: RequestInit = {}) =>
      fetch(`${s.mainBranch.agentUrl}${path}`, {
        ...init,
        headers: { authorization: `Bearer ${h.token}`, "content-type": "application/json" },
      });
    expect(await prompt("before the drop")).toBe("SUCCEEDED");
    const [conversation] = (await (await agent("/session")).json()) as { id: string }[];
    // A write through the attach proxy that is not a turn: no run, no snapshot records it.
    const renamed = await agent(`/session/${conversation!.id}`, {
      method: "PATCH",
      body: JSON.stringify({ title: "renamed between turns" }),
    });
    expect(renamed.status).toBe(200);
    await eventually(() => liveDirs(h.server.dataDir).length === 0, 30_000);
    expect(h.server.agents!.size).toBe(0);
    const snapshots = (
      await h.gql(
        `query($s: ID!) { session(id: $s) { snapshots(first: 100) { edges { node { origin label } } } } }`,
        {
          s: s.id,
        },
      )
    ).session.snapshots.edges.map((e: { node: unknown }) => e.node);
    expect(snapshots).toContainEqual({ origin: "CHECKPOINT", label: IDLE_CHECKPOINT_LABEL });
    // The next turn starts the agent again from the head: the rename and the conversation are there.
    expect(await prompt("after the drop")).toBe("SUCCEEDED");
    expect(((await (await agent(`/session/${conversation!.id}`)).json()) as { title: string }).title).toBe(
      "renamed between turns",
    );
    expect(
      h.fake.requests
        .filter((r) => (r.body.tools?.length ?? 0) > 0)
        .at(-1)!
        .body.messages!.filter((m) => m.role === "user")
        .map((m) => (typeof m.content === "string" ? m.content : JSON.stringify(m.content))),
    ).toEqual(["before the drop", "after the drop"]);
  } finally {
    await h.close();
  }
}, 300_000);
