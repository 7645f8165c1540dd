// PROFILE=serverless, end to end, on Deno (what serverless hosts run) and on Bun: the real server
// process with ConTree (the fake), Upstash (the fake, in front of a real redis-server) and libSQL. It
// registers, creates a session, runs a command on ConTree and reads its output over HTTP (SSE), and
// throughout it has no child process, listens on nothing but its HTTP port (no gateway socket) and
// writes nothing to its data directory. What it does not serve is refused with a reason.
//
// libSQL: no libSQL server can be had here from npm or Debian without a binary download at install
// time (tursodb 0.6.0's `--sync-server`, from npm, answers /v2/pipeline but only `execute` and `batch`:
// @libsql/client's `close` and `store_sql` requests fail), so the database is a `file:` URL in the
// temp dir, which the profile allows outside production (and says so in health).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { opencodeBinary } from "../../agent/opencode-binary.ts";
import { loadConfig } from "../../api/config.ts";
import { checkProfile } from "../../api/profile.ts";
import { type FakeContree, startFakeContree } from "../../scripts/fake-contree/index.ts";
import {
  denoBinary,
  type ServerProcess,
  type ServerRuntime,
  startServerProcess,
} from "../../scripts/lib/server-process.ts";
import { postGraphql } from "../utils/graphql-http.ts";
import { fakeContreeProcessesUnavailable, testUnless } from "../utils/isolation.ts";
import { sharedEnv, useSharedBackends } from "../utils/shared-state.ts";

const backends = useSharedBackends();
const runtimes: ServerRuntime[] = denoBinary() ? ["deno", "bun"] : ["bun"];
if (!denoBinary()) console.warn("skipped: the Deno half of the serverless tests (deno is not installed)");

let dir: string;
let fake: FakeContree;
let env: Record<string, string>;
const servers = new Map<ServerRuntime, ServerProcess>();
const dataDirs = new Map<ServerRuntime, string>();

beforeAll(async () => {
  if (backends.skip) return;
  dir = mkdtempSync(join(tmpdir(), "occ-serverless-"));
  fake = await startFakeContree({ delays: { pendingMs: 5, assignedMs: 5 } });
  env = {
    NODE_ENV: "test",
    PROFILE: "serverless",
    SANDBOX_PROVIDER: "contree",
    CONTREE_URL: fake.url,
    CONTREE_API_KEY: fake.token,
    CONTREE_PROJECT: fake.project ?? "",
    ...sharedEnv("upstash", backends.redis, backends.upstash),
    // A key of this run: the two servers are two instances of one deployment.
    REDIS_KEY_PREFIX: `serverless-${crypto.randomUUID().slice(0, 8)}:`,
    JWT_SECRET: `serverless-${crypto.randomUUID()}`,
    DATABASE_URL: `file:${join(dir, "platform.db")}`,
  };
  for (const runtime of runtimes) {
    const dataDir = join(dir, `${runtime}-data`);
    mkdirSync(dataDir);
    dataDirs.set(runtime, dataDir);
    servers.set(runtime, await startServerProcess({ ...env, DATA_DIR: dataDir }, { runtime, dataDir }));
  }
}, 60_000);

afterAll(async () => {
  for (const server of servers.values()) if (server.proc.exitCode === null) await server.stop();
  await fake?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** GraphQL over HTTP; the whole body. */
const gql = postGraphql;

/** A subscription over server-sent events (GraphQL over SSE, one request), until `last` says stop. */
async function overSse(
  base: string,
  query: string,
  variables: Record<string, unknown>,
  token: string,
  last: (data: any) => boolean,
) {
  const res = await fetch(`${base}/graphql`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "text/event-stream",
      authorization: `Bearer ${token}`,
    },
    body: JSON.stringify({ query, variables }),
  });
  expect(res.headers.get("content-type")).toContain("text/event-stream");
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  const results: any[] = [];
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return results;
      buffer += value;
      let end = buffer.indexOf("\n\n");
      while (end >= 0) {
        const data = buffer
          .slice(0, end)
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).trim())
          .join("");
        buffer = buffer.slice(end + 2);
        end = buffer.indexOf("\n\n");
        if (!data) continue;
        const result = JSON.parse(data);
        results.push(result);
        if (result.errors || last(result.data)) return results;
      }
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}

/** The processes `pid` started (children of any of its threads). */
function childrenOf(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`).flatMap((tid) =>
    readFileSync(`/proc/${pid}/task/${tid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number),
  );
}

/** What `pid` listens on: TCP ports, and unix socket paths. */
function listenersOf(pid: number): { tcp: number[]; unix: string[] } {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {} // closed meanwhile
  }
  const tcp = ["tcp", "tcp6"].flatMap((file) =>
    readFileSync(`/proc/${pid}/net/${file}`, "utf8")
      .split("\n")
      .slice(1)
      .map((line) => line.trim().split(/\s+/))
      // local_address, st (0A: LISTEN), inode
      .filter((f) => f[3] === "0A" && inodes.has(f[9]!))
      .map((f) => Number.parseInt(f[1]!.split(":")[1]!, 16)),
  );
  const unix = readFileSync(`/proc/${pid}/net/unix`, "utf8")
    .split("\n")
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    // Flags 00010000: accepting connections (listening)
    .filter((f) => f[3] === "00010000" && inodes.has(f[6]!))
    .map((f) => f[7] ?? "(unnamed)");
  return { tcp, unix };
}

const RUN_OUTPUT = `subscription($r: ID!) { runOutput(runId: $r) {
  __typename ... on RunOutputChunk { seq stream text } ... on RunFinished { status exitCode } } }`;

describe.skipIf(backends.skip)("PROFILE=serverless", () => {
  for (const runtime of runtimes) {
    const server = () => servers.get(runtime)!;

    test(`${runtime}: health says serverless, ConTree only, and what is served elsewhere`, async () => {
      const health = await (await fetch(`${server().url}/healthz`)).json();
      expect(health).toMatchObject({ ok: true, database: true, profile: "serverless", provider: "contree" });
      expect(health.runtime).toStartWith(`${runtime} `);
      expect(health.sharedStore).toEqual({ kind: "upstash", ok: true });
      expect(health.providers.map((p: { name: string }) => p.name)).toEqual(["contree"]);
      const warnings = health.warnings.join("\n");
      expect(warnings).toContain("/collab");
      expect(warnings).toContain("file: database");
      // The same over GraphQL.
      const { data } = await gql(server().url, "{ health { warnings providers { name } } }");
      expect(data.health.warnings).toEqual(health.warnings);
    });

    testUnless(fakeContreeProcessesUnavailable)(
      `${runtime}: register, create a session, exec on ConTree, read the output over SSE: no child process, no other listener, nothing on disk`,
      async () => {
        const email = `sl-${runtime}-${crypto.randomUUID().slice(0, 8)}@example.com`;
        const registered = await gql(
          server().url,
          `mutation($e: String!) { register(email: $e, password: "password123") { token } }`,
          { e: email },
        );
        const token = registered.data.register.token;
        const session = (
          await gql(
            server().url,
            `mutation($f: JSON) { createSession(input: { title: "serverless", files: $f }) { id provider mainBranch { id } } }`,
            { f: { "hello.txt": `hello from ${runtime}\n` } },
            token,
          )
        ).data.createSession;
        expect(session.provider).toBe("contree");
        const run = (
          await gql(
            server().url,
            `mutation($b: ID!) { exec(branchId: $b, command: "cat hello.txt; echo done") { id } }`,
            { b: session.mainBranch.id },
            token,
          )
        ).data.exec;
        const events = await overSse(
          server().url,
          RUN_OUTPUT,
          { r: run.id },
          token,
          (data) => data?.runOutput?.__typename === "RunFinished",
        );
        const output = events
          .map((e) => e.data.runOutput)
          .filter((e) => e.__typename === "RunOutputChunk")
          .map((e) => e.text)
          .join("");
        expect(output).toBe(`hello from ${runtime}\ndone\n`);
        expect(events.at(-1).data.runOutput).toEqual({
          __typename: "RunFinished",
          status: "SUCCEEDED",
          exitCode: 0,
        });

        const { pid } = server();
        expect(childrenOf(pid)).toEqual([]);
        const listeners = listenersOf(pid);
        expect(listeners.tcp).toEqual([Number(new URL(server().url).port)]);
        expect(listeners.unix).toEqual([]);
        expect(readdirSync(dataDirs.get(runtime)!)).toEqual([]);
      },
      60_000,
    );

    test(`${runtime}: /collab and agent turns are refused with the reason`, async () => {
      const collab = await fetch(`${server().url}/collab/sessions/x/chat`);
      expect(collab.status).toBe(501);
      const body = await collab.json();
      expect(body.errors[0].extensions.code).toBe("NOT_SUPPORTED");
      expect(body.errors[0].message).toContain("long-lived instance");

      const token = (
        await gql(
          server().url,
          `mutation($e: String!) { register(email: $e, password: "password123") { token } }`,
          { e: `sl-agent-${crypto.randomUUID().slice(0, 8)}@example.com` },
        )
      ).data.register.token;
      const branch = (
        await gql(
          server().url,
          `mutation { createSession(input: { title: "agent" }) { mainBranch { id } } }`,
          {},
          token,
        )
      ).data.createSession.mainBranch.id;
      const prompt = await gql(
        server().url,
        `mutation($b: ID!) { prompt(branchId: $b, text: "hi") { id } }`,
        { b: branch },
        token,
      );
      expect(prompt.errors?.[0]?.extensions?.code).toBe("UNAVAILABLE");
      expect(prompt.errors?.[0]?.message).toContain("PROFILE=serverless");
    });
  }

  test.skipIf(runtimes.length < 2)(
    "two instances on two runtimes: an account made on one signs in on the other",
    async () => {
      const email = `sl-both-${crypto.randomUUID().slice(0, 8)}@example.com`;
      const login = `mutation($e: String!) { login(email: $e, password: "password123") { user { id } } }`;
      const made = await gql(
        servers.get("deno")!.url,
        `mutation($e: String!) { register(email: $e, password: "password123") { user { id } } }`,
        { e: email },
      );
      const signedIn = await gql(servers.get("bun")!.url, login, { e: email });
      expect(signedIn.data.login.user.id).toBe(made.data.register.user.id);
    },
  );

  testUnless(runtimes.length < 2 ? "the Deno half (deno is not installed)" : fakeContreeProcessesUnavailable)(
    "two instances: a session made on Deno runs a command sent to Bun; its output streams from Deno",
    async () => {
      const [deno, bun] = [servers.get("deno")!.url, servers.get("bun")!.url];
      const token = (
        await gql(deno, `mutation($e: String!) { register(email: $e, password: "password123") { token } }`, {
          e: `sl-two-${crypto.randomUUID().slice(0, 8)}@example.com`,
        })
      ).data.register.token;
      const branch = (
        await gql(
          deno,
          `mutation($f: JSON) { createSession(input: { title: "two", files: $f }) { mainBranch { id } } }`,
          { f: { "a.txt": "made on deno\n" } },
          token,
        )
      ).data.createSession.mainBranch.id;
      const run = (
        await gql(
          bun,
          `mutation($b: ID!) { exec(branchId: $b, command: "cat a.txt") { id } }`,
          { b: branch },
          token,
        )
      ).data.exec;
      const events = await overSse(
        deno,
        RUN_OUTPUT,
        { r: run.id },
        token,
        (data) => data?.runOutput?.__typename === "RunFinished",
      );
      expect(events.map((e) => e.data.runOutput.text ?? "").join("")).toBe("made on deno\n");
      expect(events.at(-1).data.runOutput.status).toBe("SUCCEEDED");
    },
    60_000,
  );

  testUnless(runtimes.length < 2 ? "the Deno half (deno is not installed)" : fakeContreeProcessesUnavailable)(
    "two instances: abortRun sent to Bun stops a run executing on Deno (no call between them: the request is recorded)",
    async () => {
      const [deno, bun] = [servers.get("deno")!.url, servers.get("bun")!.url];
      const token = (
        await gql(deno, `mutation($e: String!) { register(email: $e, password: "password123") { token } }`, {
          e: `sl-abort-${crypto.randomUUID().slice(0, 8)}@example.com`,
        })
      ).data.register.token;
      const branch = (
        await gql(
          deno,
          `mutation { createSession(input: { title: "abort" }) { mainBranch { id } } }`,
          {},
          token,
        )
      ).data.createSession.mainBranch.id;
      const run = (
        await gql(
          deno,
          `mutation($b: ID!) { exec(branchId: $b, command: "echo started; sleep 30") { id } }`,
          { b: branch },
          token,
        )
      ).data.exec;
      const statusOf = async (base: string) =>
        (await gql(base, `query($r: ID!) { run(id: $r) { status killedBy } }`, { r: run.id }, token)).data
          .run as { status: string; killedBy: string | null };
      for (let i = 0; (await statusOf(bun)).status !== "RUNNING"; i++) {
        if (i > 300) throw new Error("the run did not start");
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const sentAt = Date.now();
      const aborted = await gql(bun, `mutation($r: ID!) { abortRun(id: $r) { id } }`, { r: run.id }, token);
      expect(aborted.errors).toBeUndefined();
      expect(aborted.data.abortRun.id).toBe(run.id);
      // Its output through Bun ends ABORTED, long before the 30 s the command sleeps.
      const events = await overSse(
        bun,
        RUN_OUTPUT,
        { r: run.id },
        token,
        (data) => data?.runOutput?.__typename === "RunFinished",
      );
      expect(events.at(-1).data.runOutput.status).toBe("ABORTED");
      expect(Date.now() - sentAt).toBeLessThan(15_000);
      // As a local abort ends it.
      expect(await statusOf(deno)).toEqual({ status: "ABORTED", killedBy: "abort" });
      // A finished run: aborting it again, from either instance, answers its final state.
      const again = await gql(bun, `mutation($r: ID!) { abortRun(id: $r) { status } }`, { r: run.id }, token);
      expect(again.errors).toBeUndefined();
      expect(again.data).toEqual({ abortRun: { status: "ABORTED" } });
    },
    60_000,
  );

  test("the same checks see what a standard server keeps: the gateway's unix socket, files in its data directory", async () => {
    const dataDir = join(dir, "standard-data");
    const { PROFILE: _, SANDBOX_PROVIDER: __, ...standardEnv } = env;
    const standard = await startServerProcess({ ...standardEnv, DATA_DIR: dataDir }, { dataDir });
    try {
      if (opencodeBinary()) expect(listenersOf(standard.pid).unix).toEqual([join(dataDir, "gateway.sock")]);
      expect(readdirSync(dataDir).length).toBeGreaterThan(0);
    } finally {
      await standard.stop();
    }
  });

  test("a setting the profile cannot run with stops the process (exit 78) with the variable named", async () => {
    const runtime = runtimes[0]!;
    const failed = await startServerProcess(
      { ...env, DATA_DIR: join(dir, "refused"), SANDBOX_PROVIDER: "local" },
      { runtime },
    ).then(
      () => "started",
      (error: Error) => error.message,
    );
    expect(failed).toContain("exited with 78");
    expect(failed).toContain(
      "invalid configuration: SANDBOX_PROVIDER: PROFILE=serverless runs sandboxes on ConTree only",
    );
  });
});

describe("PROFILE=serverless start-up checks", () => {
  const ok = {
    NODE_ENV: "test",
    PROFILE: "serverless",
    SANDBOX_PROVIDER: "contree",
    CONTREE_API_KEY: "key",
    CONTREE_URL: "http://127.0.0.1:1",
    UPSTASH_REDIS_REST_URL: "http://127.0.0.1:2",
    UPSTASH_REDIS_REST_TOKEN: "token",
    JWT_SECRET: "x".repeat(32),
    DATABASE_URL: "libsql://db.example.com",
  };
  const refusal = (env: Record<string, string | undefined>) => {
    try {
      checkProfile(loadConfig(env));
      return null;
    } catch (error) {
      return (error as Error).message;
    }
  };

  test("a ConTree, Upstash, libSQL server and JWT secret configuration passes; DATA_DIR defaults to the temp dir", () => {
    expect(refusal(ok)).toBeNull();
    expect(loadConfig(ok).dataDir.startsWith(tmpdir())).toBe(true);
    expect(loadConfig(ok).sandbox.offerLocal).toBe(false);
    expect(loadConfig({ ...ok, PROFILE: undefined }).sandbox.offerLocal).toBe(true);
  });

  test("each missing piece is named", () => {
    expect(refusal({ ...ok, SANDBOX_PROVIDER: "local" })).toStartWith("SANDBOX_PROVIDER:");
    expect(
      refusal({ ...ok, UPSTASH_REDIS_REST_URL: undefined, UPSTASH_REDIS_REST_TOKEN: undefined }),
    ).toStartWith("UPSTASH_REDIS_REST_URL:");
    expect(
      refusal({
        ...ok,
        UPSTASH_REDIS_REST_URL: undefined,
        UPSTASH_REDIS_REST_TOKEN: undefined,
        REDIS_URL: "redis://x:6379",
      }),
    ).toStartWith("REDIS_URL:");
    expect(refusal({ ...ok, JWT_SECRET: undefined })).toStartWith("JWT_SECRET:");
    expect(refusal({ ...ok, METRICS_PORT: "9464" })).toStartWith("METRICS_PORT:");
    expect(refusal({ ...ok, DATA_DIR: "/var/lib/occ" })).toStartWith("DATA_DIR:");
    // A file: database: only outside production, and only in the temp dir.
    expect(refusal({ ...ok, DATABASE_URL: `file:${join(tmpdir(), "x.db")}` })).toBeNull();
    expect(refusal({ ...ok, DATABASE_URL: "file:/var/lib/occ/x.db" })).toStartWith("DATABASE_URL:");
    expect(
      refusal({ ...ok, NODE_ENV: "production", DATABASE_URL: `file:${join(tmpdir(), "x.db")}` }),
    ).toStartWith("DATABASE_URL:");
  });
});
