// The same platform on Deno (`npm run start:deno`), end to end: the Deno server runs as a child process
// beside a Bun server sharing its libSQL file and JWT secret, and real clients (fetch, graphql-ws,
// y-websocket) talk to it. Accounts, tokens and API keys cross runtimes in both directions.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import { printSchema } from "graphql";
import { bunRuntime } from "../../api/runtime/bun.ts";
import { schema } from "../../schema/index.ts";
import { type FakeModel, startFakeModel } from "../../scripts/fake-model.ts";
import { denoBinary, type ServerProcess, startServerProcess } from "../../scripts/lib/server-process.ts";
import { connectRoom, eventually } from "../utils/collab.ts";
import { postGraphql } from "../utils/graphql-http.ts";
import { agentUnavailable, isolationUnavailable } from "../utils/isolation.ts";
import { codeOf, startTestServer, type TestServer } from "../utils/server.ts";
import { collect, wsClient } from "../utils/ws.ts";

const noDeno = denoBinary() ? null : "deno is not installed (it is an npm dependency: run npm install)";
if (noDeno) console.warn(`skipped: ${noDeno}`);
const denoTest = test.skipIf(noDeno !== null);

let dir: string;
let dbUrl: string;
let bun: TestServer;
let deno: ServerProcess;
let fake: FakeModel;

beforeAll(async () => {
  if (noDeno) return;
  dir = mkdtempSync(join(tmpdir(), "occ-deno-"));
  dbUrl = `file:${join(dir, "shared.db")}`;
  const shared = { DATABASE_URL: dbUrl, JWT_SECRET: `deno-e2e-${crypto.randomUUID()}` };
  bun = await startTestServer(shared);
  fake = startFakeModel({
    apiKey: "sk-platform",
    scenarios: [
      {
        match: "write",
        steps: [
          { tool: "write", args: { filePath: "/workspace/hello.txt", content: "hello from deno\n" } },
          { text: "Written." },
        ],
      },
    ],
  });
  deno = await startServerProcess(
    {
      NODE_ENV: "test",
      LOG_LEVEL: "warn",
      AGENT_MODEL_BASE_URL: fake.baseURL,
      AGENT_MODEL_API_KEY: "sk-platform",
      AGENT_MODEL: "fake-model",
      OUTBOUND_ALLOW_HOSTS: "127.0.0.1",
      ...shared,
    },
    { runtime: "deno", dataDir: join(dir, "deno-data") },
  );
}, 60_000);

afterAll(async () => {
  if (noDeno) return;
  if (deno.proc.exitCode === null) await deno.stop();
  await bun?.close();
  await fake?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** GraphQL over HTTP to either server; returns the whole response body. */
const gql = postGraphql;

const REGISTER = `mutation($e: String!, $p: String!) { register(email: $e, password: $p) { token user { id } } }`;
const LOGIN = `mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token user { id } } }`;
const ME = "{ me { id email } }";
const email = (tag: string) => `${tag}-${crypto.randomUUID().slice(0, 8)}@example.com`;

denoTest("/healthz, GraphiQL and /schema.graphql are served by Deno", async () => {
  const health = await fetch(`${deno.url}/healthz`);
  expect(health.status).toBe(200);
  const body = await health.json();
  expect(body).toMatchObject({ ok: true, database: true, provider: "local" });
  expect(body.runtime).toMatch(/^deno 2\./);
  expect(["bubblewrap", "none"]).toContain(body.isolation);
  // The local provider finds on Deno what it finds on Bun on this machine (bubblewrap, overlay or
  // copy workspaces, writable cgroups): nothing is refused or degraded on Deno alone.
  const onBun = await (await fetch(`${bun.url}/healthz`)).json();
  expect(body.providers).toEqual(onBun.providers);
  expect(body.warnings).toEqual(onBun.warnings);

  const graphiql = await fetch(`${deno.url}/graphql`, { headers: { accept: "text/html" } });
  expect(graphiql.status).toBe(200);
  expect(await graphiql.text()).toContain("GraphiQL");

  const sdl = await fetch(`${deno.url}/schema.graphql`);
  expect(await sdl.text()).toBe(printSchema(schema));

  // graphql-armor's rejections keep their code: one `graphql` instance is loaded (a second one turns
  // them into "Unexpected error."), and a bad document is the client's error on Deno too.
  const aliases = Array.from({ length: 40 }, (_, i) => `a${i}: health { ok }`).join(" ");
  const rejected = await gql(deno.url, `{ ${aliases} }`);
  expect(codeOf(rejected)).toBe("BAD_USER_INPUT");
  expect(rejected.errors![0]!.message).not.toContain("Unexpected error");
  expect(codeOf(await gql(deno.url, "{ me { id "))).toBe("BAD_USER_INPUT");
});

denoTest("a user registered on Bun logs in on Deno, and the reverse; the hash format is shared", async () => {
  const onBun = email("bun");
  const registered = await gql(bun.url, REGISTER, { e: onBun, p: "bun password 1" });
  expect(registered.errors).toBeUndefined();
  const loggedIn = await gql(deno.url, LOGIN, { e: onBun, p: "bun password 1" });
  expect(loggedIn.errors).toBeUndefined();
  expect(loggedIn.data.login.user.id).toBe(registered.data.register.user.id);
  expect(codeOf(await gql(deno.url, LOGIN, { e: onBun, p: "bun password 2" }))).toBe("UNAUTHENTICATED");

  const onDeno = email("deno");
  const registeredOnDeno = await gql(deno.url, REGISTER, { e: onDeno, p: "deno password 1" });
  expect(registeredOnDeno.errors).toBeUndefined();
  const back = await gql(bun.url, LOGIN, { e: onDeno, p: "deno password 1" });
  expect(back.errors).toBeUndefined();
  expect(back.data.login.user.id).toBe(registeredOnDeno.data.register.user.id);
  expect(codeOf(await gql(bun.url, LOGIN, { e: onDeno, p: "deno password 2" }))).toBe("UNAUTHENTICATED");

  // Both write Bun.password's default: argon2id, 64 MiB, 2 passes, 1 lane, in PHC format.
  const db = createClient({ url: dbUrl });
  try {
    const rows = await db.execute({
      sql: "select email, password_hash from users where email in (?, ?)",
      args: [onBun, onDeno],
    });
    expect(rows.rows).toHaveLength(2);
    for (const row of rows.rows)
      expect(String(row.password_hash)).toStartWith("$argon2id$v=19$m=65536,t=2,p=1$");
  } finally {
    db.close();
  }
});

denoTest("a JWT and an API key work on Deno, whichever runtime issued them", async () => {
  const user = await bun.signUp(email("keys"));
  const me = await gql(deno.url, ME, {}, user.token);
  expect(me.data?.me).toEqual({ id: user.userId, email: user.email });
  expect(codeOf(await gql(deno.url, ME, {}, `${user.token}x`))).toBe("UNAUTHENTICATED");

  const created = await gql(
    deno.url,
    `mutation { createApiKey(name: "on-deno") { secret } }`,
    {},
    user.token,
  );
  expect(created.errors).toBeUndefined();
  const secret: string = created.data.createApiKey.secret;
  for (const base of [deno.url, bun.url])
    expect((await gql(base, ME, {}, secret)).data?.me.id).toBe(user.userId);

  const fromBun = await gql(bun.url, `mutation { createApiKey(name: "on-bun") { secret } }`, {}, user.token);
  expect((await gql(deno.url, ME, {}, fromBun.data.createApiKey.secret)).data?.me.id).toBe(user.userId);
});

denoTest(
  "a graphql-ws subscription on Deno receives events (the 4406 trap of use/deno avoided)",
  async () => {
    const user = await bun.signUp(email("ws"));
    const client = wsClient(`${deno.url.replace(/^http/, "ws")}/graphql`, user.token);
    try {
      const events = collect(client, "subscription { accountEvents { kind apiKey { name } } }");
      // The subscription is live once a key created after it shows up; retry until the socket is up.
      let n = 0;
      await eventually(async () => {
        await gql(
          deno.url,
          `mutation($n: String!) { createApiKey(name: $n) { secret } }`,
          { n: `k${++n}` },
          user.token,
        );
        return events.results.length > 0;
      }, 15_000);
      expect(events.errors).toEqual([]);
      expect(events.results[0].data.accountEvents.apiKey.name).toMatch(/^k\d+$/);
      events.dispose();
    } finally {
      await client.dispose();
    }
  },
);

denoTest("stock y-websocket clients sync a chat room on Deno; tree.svg is drawn", async () => {
  const owner = await bun.signUp(email("collab"));
  const created = await gql(
    deno.url,
    `mutation { createSession(input: { title: "deno" }) { id } }`,
    {},
    owner.token,
  );
  expect(created.errors).toBeUndefined();
  const sessionId: string = created.data.createSession.id;
  const room = `sessions/${sessionId}/chat`;
  const a = connectRoom(deno.url, room, owner.token);
  const b = connectRoom(deno.url, room, owner.token);
  try {
    await Promise.all([a.synced, b.synced]);
    a.text.insert(0, "hello ");
    b.text.insert(0, "deno ");
    await eventually(() => a.text.toString() === b.text.toString() && a.text.length === 11, 10_000);
    const late = connectRoom(deno.url, room, owner.token);
    try {
      await late.synced;
      await eventually(() => late.text.toString() === a.text.toString(), 10_000);
    } finally {
      late.provider.destroy();
    }
    // No token: the room refuses (auth happens on the socket, as on Bun).
    const anonymous = connectRoom(deno.url, room, undefined);
    try {
      expect((await anonymous.closed).code).toBeGreaterThanOrEqual(4400);
    } finally {
      anonymous.provider.destroy();
    }
  } finally {
    a.provider.destroy();
    b.provider.destroy();
  }

  const svg = await fetch(`${deno.url}/sessions/${sessionId}/tree.svg`, {
    headers: { authorization: `Bearer ${owner.token}` },
  });
  expect(svg.status).toBe(200);
  expect(svg.headers.get("content-type")).toContain("image/svg+xml");
  expect(await svg.text()).toContain("<svg");
});

denoTest(
  "limits hold on Deno: an oversized body is a 413 (declared or chunked), an oversized socket message 1009",
  async () => {
    const big = new TextEncoder().encode(
      JSON.stringify({ query: "{ __typename }", variables: { x: "a".repeat(2 * 1024 * 1024) } }),
    );
    const post = (body: BodyInit) =>
      fetch(`${deno.url}/graphql`, { method: "POST", headers: { "content-type": "application/json" }, body });
    const declared = await post(big);
    expect(declared.status).toBe(413);
    expect(codeOf(await declared.json())).toBe("PAYLOAD_TOO_LARGE");
    // Deno.serve has no transport cap: the app's own check stops reading a chunked body at its limit.
    const chunked = await post(
      new ReadableStream({
        start(controller) {
          for (let i = 0; i < big.length; i += 16_384) controller.enqueue(big.slice(i, i + 16_384));
          controller.close();
        },
      }),
    );
    expect(chunked.status).toBe(413);
    expect(codeOf(await chunked.json())).toBe("PAYLOAD_TOO_LARGE");

    // A message larger than any socket may take (largest room or body, plus framing) closes it.
    const socket = new WebSocket(`${deno.url.replace(/^http/, "ws")}/graphql`, "graphql-transport-ws");
    const closed = new Promise<number>((resolve) => {
      socket.onclose = (event) => resolve(event.code);
    });
    await new Promise((resolve) => {
      socket.onopen = resolve;
    });
    socket.send("x".repeat(8 * 1024 * 1024));
    expect(await closed).toBe(1009);
  },
);

/** A command in a fresh session on a Deno server: its output, its snapshot, its cgroup's CPU time. */
async function execOnDeno(base: string, token: string) {
  const session = await gql(
    base,
    `mutation($f: JSON) { createSession(input: { title: "run", files: $f }) { mainBranch { id } } }`,
    { f: { "a.txt": "from deno" } },
    token,
  );
  expect(session.errors).toBeUndefined();
  const run = await gql(
    base,
    `mutation($b: ID!) { exec(branchId: $b, command: "cat a.txt; echo; echo written > b.txt; test -e /work/main && echo seen || echo hidden") { id } }`,
    { b: session.data.createSession.mainBranch.id },
    token,
  );
  expect(run.errors).toBeUndefined();
  const client = wsClient(`${base.replace(/^http/, "ws")}/graphql`, token);
  try {
    const output = collect(
      client,
      `subscription($r: ID!) { runOutput(runId: $r) { ... on RunOutputChunk { text }
        ... on RunFinished { status exitCode snapshot { file(path: "b.txt") { content } } } } }`,
      { r: run.data.exec.id },
    );
    const done = await output.until((r) => r.data?.runOutput?.status !== undefined, 20_000);
    expect(done.data.runOutput).toEqual({
      status: "SUCCEEDED",
      exitCode: 0,
      snapshot: { file: { content: "written\n" } },
    });
    // The host's files (this checkout) are not in the sandbox (bubblewrap).
    expect(output.results.map((r) => r.data?.runOutput?.text ?? "").join("")).toBe("from deno\nhidden\n");
    // CPU time comes from the run's cgroup, where this machine lets the server create one.
    const health = await (await fetch(`${base}/healthz`)).json();
    const cgroups = !health.warnings.some((w: string) => w.includes("cgroups"));
    const measured = await gql(
      base,
      `query($r: ID!) { run(id: $r) { cpuMs } }`,
      { r: run.data.exec.id },
      token,
    );
    if (cgroups) expect(measured.data.run.cpuMs).toBeGreaterThanOrEqual(0);
    return health;
  } finally {
    await client.dispose();
  }
}

const isolatedDenoTest = test.skipIf(noDeno !== null || isolationUnavailable !== null);
const isolationSkipped = isolationUnavailable ? ` (skipped: ${isolationUnavailable})` : "";

isolatedDenoTest(
  `a command runs in a bubblewrap sandbox of the local provider on Deno${isolationSkipped}`,
  async () => {
    const owner = await bun.signUp(email("exec"));
    await execOnDeno(deno.url, owner.token);
  },
);

isolatedDenoTest(
  `copy workspaces work on Deno too (SANDBOX_WORKSPACES=copy)${isolationSkipped}`,
  async () => {
    const copy = await startServerProcess(
      { NODE_ENV: "test", LOG_LEVEL: "warn", SANDBOX_WORKSPACES: "copy" },
      { runtime: "deno", dataDir: join(dir, "deno-copy") },
    );
    try {
      const { register } = await copy.gql(REGISTER, { e: email("copy"), p: "copy password 1" });
      const health = await execOnDeno(copy.url, register.token);
      expect(health).toMatchObject({ isolation: "bubblewrap", workspaces: "copy" });
    } finally {
      await copy.stop();
    }
  },
);

test.skipIf(noDeno !== null || agentUnavailable !== null)(
  `a prompt runs the live agent on Deno (its opencode server over a unix socket)${agentUnavailable ? ` (skipped: ${agentUnavailable})` : ""}`,
  async () => {
    const owner = await bun.signUp(email("agent"));
    const session = await gql(
      deno.url,
      `mutation { createSession(input: { title: "agent" }) { mainBranch { id agentUrl } } }`,
      {},
      owner.token,
    );
    const run = await gql(
      deno.url,
      `mutation($b: ID!) { prompt(branchId: $b, text: "please write") { id } }`,
      { b: session.data.createSession.mainBranch.id },
      owner.token,
    );
    expect(run.errors).toBeUndefined();
    const client = wsClient(`${deno.url.replace(/^http/, "ws")}/graphql`, owner.token);
    try {
      const output = collect(
        client,
        `subscription($r: ID!) { runOutput(runId: $r) { __typename ... on AgentTextDelta { text }
          ... on RunFinished { status snapshot { file(path: "hello.txt") { content } } } } }`,
        { r: run.data.prompt.id },
      );
      const done = await output.until((r) => r.data?.runOutput?.__typename === "RunFinished", 50_000);
      expect(done.data.runOutput).toEqual({
        __typename: "RunFinished",
        status: "SUCCEEDED",
        snapshot: { file: { content: "hello from deno\n" } },
      });
      const kinds = output.results.map((r) => r.data?.runOutput?.__typename);
      expect(kinds).toContain("AgentTextDelta");
      // The agent proxy (opencode attach) reaches the same live server through Deno; bodies pass on as
      // sent whatever the client accepts.
      const { agentUrl } = session.data.createSession.mainBranch;
      expect(agentUrl).toStartWith(deno.url);
      for (const encoding of ["gzip, deflate, br", "identity"]) {
        const sessions = await fetch(`${agentUrl}/session`, {
          headers: { authorization: `Bearer ${owner.token}`, "accept-encoding": encoding },
        });
        expect(sessions.status).toBe(200);
        const listed = (await sessions.json()) as { id: string }[];
        expect(listed.length).toBeGreaterThan(0);
      }
    } finally {
      await client.dispose();
    }
  },
  60_000,
);

denoTest(
  "fetchUnix passes a compressed body on as sent, on Bun and on Deno (the agent proxy relies on it)",
  async () => {
    const socketPath = join(dir, "gzip.sock");
    const gzipped = Bun.gzipSync("hello over a unix socket");
    const upstream = Bun.serve({
      unix: socketPath,
      fetch: (request) =>
        new Response(gzipped, {
          headers: { "content-encoding": "gzip", "x-path": new URL(request.url).pathname },
        }),
    });
    try {
      const init = { headers: { "accept-encoding": "gzip, br" } };
      const onBun = await bunRuntime.fetchUnix(socketPath, "http://opencode/a/b?c=1", init);
      expect(onBun.headers.get("x-path")).toBe("/a/b");
      expect(new Uint8Array(await onBun.arrayBuffer())).toEqual(gzipped);

      const script = join(dir, "fetch-unix.ts");
      await Bun.write(
        script,
        `import { denoRuntime } from ${JSON.stringify(join(import.meta.dir, "../../api/runtime/deno.ts"))};
const res = await denoRuntime.fetchUnix(${JSON.stringify(socketPath)}, "http://opencode/a/b?c=1", ${JSON.stringify(init)});
console.log(JSON.stringify({ path: res.headers.get("x-path"), body: [...new Uint8Array(await res.arrayBuffer())] }));`,
      );
      const run = Bun.spawn(
        [denoBinary()!, "run", "-A", "--config", join(import.meta.dir, "../../deno.json"), script],
        {
          cwd: join(import.meta.dir, "../.."),
          stderr: "pipe",
        },
      );
      const [out, err] = await Promise.all([
        new Response(run.stdout).text(),
        new Response(run.stderr).text(),
      ]);
      expect({ code: await run.exited, err }).toEqual({ code: 0, err: "" });
      const onDeno = JSON.parse(out);
      expect(onDeno.path).toBe("/a/b");
      expect(new Uint8Array(onDeno.body)).toEqual(gzipped);
    } finally {
      upstream.stop(true);
    }
  },
);

denoTest("SIGTERM stops the Deno server gracefully, open sockets included", async () => {
  const user = await bun.signUp(email("stop"));
  const client = wsClient(`${deno.url.replace(/^http/, "ws")}/graphql`, user.token);
  const events = collect(client, "subscription { accountEvents { kind } }");
  await eventually(async () => {
    await gql(deno.url, `mutation { createApiKey(name: "before-stop") { secret } }`, {}, user.token);
    return events.results.length > 0 || events.errors.length > 0;
  }, 15_000);
  expect(events.errors).toEqual([]);
  deno.proc.kill("SIGTERM");
  const code = await Promise.race([deno.proc.exited, Bun.sleep(15_000).then(() => "still running")]);
  expect(code).toBe(0);
  expect(deno.output()).toContain("SIGTERM received, shutting down");
  // The subscription ended with the server (graphql-ws completes or errors it; it never hangs).
  await Promise.race([
    events.completed,
    Bun.sleep(5000).then(() => Promise.reject(new Error("socket kept open"))),
  ]);
  await client.dispose();
  // The Bun server on the same database is untouched.
  expect((await gql(bun.url, ME, {}, user.token)).data?.me.id).toBe(user.userId);
});
