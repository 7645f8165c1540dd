// SSRF through user-supplied URLs (issue 12, defect #5), against the real server: users' model
// endpoints (setModelKey, then the gateway at every request) and repository URLs (createSession).
// A loopback "internal admin" service counts every hit and answers with a secret; it must never be
// hit, and the secret must never appear in anything a client receives.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../../api/config.ts";
import { bunRuntime } from "../../api/runtime/bun.ts";
import { type StartedServer, startServer } from "../../api/start.ts";
import { LocalProvider } from "../../sandbox/local/provider.ts";
import { OutboundPolicy } from "../../sandbox/outbound-policy.ts";
import { FETCH_FAILED } from "../../sandbox/repo-url.ts";
import { type FakeModel, startFakeModel } from "../../scripts/fake-model.ts";
import { skip } from "../utils/isolation.ts";
import { collect, wsClient } from "../utils/ws.ts";

const SECRET = `admin-secret-${crypto.randomUUID()}`;
const JWT_SECRET = "ssrf-test-jwt-secret-0123456789abcdef";

/** The internal service nobody may reach through the platform. */
let admin: ReturnType<typeof Bun.serve>;
const adminHits: string[] = [];
/** An upstream the operator allows: it leaks the secret in errors, redirects, and serves a repo. */
let allowed: ReturnType<typeof Bun.serve>;
/** Accepts TCP connections and resets them at once. */
let resetter: Server;
let fake: FakeModel;
let repoDir: string;
const dataDirs: string[] = [];
/** Every response body a client received, from every server in this file. */
const seen: string[] = [];

interface Running {
  server: StartedServer;
  /** The server's log lines (parsed), warnings and errors only. */
  logs: Record<string, any>[];
  wsUrl: string;
  gql(query: string, variables?: Record<string, unknown>, token?: string): Promise<any>;
}

async function start(dataDir: string, env: Record<string, string>): Promise<Running> {
  const config = loadConfig({
    NODE_ENV: "production",
    JWT_SECRET,
    PORT: "0",
    DATA_DIR: dataDir,
    LOG_LEVEL: "warn",
    SANDBOX_REQUIRE_ISOLATION: "false", // this file is about URLs, not isolation
    AGENT_MODEL_BASE_URL: fake.baseURL, // the operator's own model: trusted, on loopback
    AGENT_MODEL_API_KEY: "sk-platform",
    AGENT_MODEL: "fake-model",
    ...env,
  });
  const logs: Record<string, any>[] = [];
  const server = await startServer(config, bunRuntime, { logSink: (line) => logs.push(JSON.parse(line)) });
  return {
    server,
    logs,
    wsUrl: `${server.url.replace(/^http/, "ws")}/graphql`,
    async gql(query, variables = {}, token) {
      const res = await fetch(`${server.url}/graphql`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          ...(token ? { authorization: `Bearer ${token}` } : {}),
        },
        body: JSON.stringify({ query, variables }),
      });
      const text = await res.text();
      seen.push(text);
      return JSON.parse(text);
    },
  };
}

const freshDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "occ-ssrf-"));
  dataDirs.push(dir);
  return dir;
};

async function signUp(s: Running): Promise<string> {
  const email = `u-${crypto.randomUUID().slice(0, 8)}@example.com`;
  const res = await s.gql(
    `mutation($e: String!) { register(email: $e, password: "password123") { token } }`,
    { e: email },
  );
  return res.data.register.token;
}

const SET_KEY = `mutation($u: String!) { setModelKey(baseURL: $u, apiKey: "sk-user", model: "m") { baseURL } }`;

let prod: Running;
let token: string;

beforeAll(async () => {
  admin = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      adminHits.push(new URL(req.url).pathname);
      return Response.json({ admin: true, secret: SECRET });
    },
  });
  // A bare repository over git's dumb HTTP protocol, under /repo.git on the allowed host.
  repoDir = mkdtempSync(join(tmpdir(), "occ-ssrf-repo-"));
  const git = (...args: string[]) =>
    execFileSync("git", ["-c", "user.email=t@example.com", "-c", "user.name=t", ...args], {
      cwd: repoDir,
      stdio: "pipe",
    });
  git("init", "-q", "-b", "main");
  Bun.write(join(repoDir, "README.md"), "hello\n");
  await Bun.sleep(10);
  git("add", "-A");
  git("commit", "-qm", "init");
  git("clone", "-q", "--bare", repoDir, join(repoDir, "served.git"));
  execFileSync("git", ["update-server-info"], { cwd: join(repoDir, "served.git") });
  allowed = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const path = new URL(req.url).pathname;
      if (path.startsWith("/redirect/"))
        return Response.redirect(`http://127.0.0.1:${admin.port}${path.slice("/redirect".length)}`, 307);
      if (path.startsWith("/auth.git/"))
        return new Response("login first", { status: 401, headers: { "www-authenticate": "Basic" } });
      if (path.startsWith("/repo.git/")) {
        const rel = decodeURIComponent(path.slice("/repo.git".length));
        if (rel.includes("..")) return new Response("no", { status: 400 });
        const file = Bun.file(join(repoDir, "served.git", rel));
        return file.size > 0 ? new Response(file) : new Response("not found", { status: 404 });
      }
      // A model endpoint whose errors carry an internal secret (the original defect's body).
      return new Response(`{"error":{"message":"bad request; internal token ${SECRET}"}}`, {
        status: 400,
        headers: { "content-type": "application/json" },
      });
    },
  });
  resetter = createServer((socket) => socket.resetAndDestroy());
  await new Promise<void>((r) => resetter.listen(0, "127.0.0.1", r));
  fake = startFakeModel({ apiKey: "sk-platform", scenarios: [{ steps: [{ text: "platform model" }] }] });
  // Production-like: only the "allowed" host's port is an operator exception.
  prod = await start(freshDir(), { OUTBOUND_ALLOW_HOSTS: `127.0.0.1:${allowed.port}` });
  token = await signUp(prod);
});

afterAll(async () => {
  await prod?.server.stop();
  admin?.stop(true);
  allowed?.stop(true);
  resetter?.close();
  await fake?.close();
  for (const dir of [...dataDirs, repoDir]) rmSync(dir, { recursive: true, force: true });
});

/** A name /etc/hosts maps to a non-public address (e.g. "vm" -> 127.0.0.1), other than localhost. */
function hostsFileName(): string | null {
  try {
    for (const line of readFileSync("/etc/hosts", "utf8").split("\n")) {
      const [ip, ...names] = line.replace(/#.*/, "").trim().split(/\s+/);
      if (!ip || !/^(127\.|10\.|192\.168\.|::1$)/.test(ip)) continue;
      const name = names.find((n) => n && !/localhost/i.test(n));
      if (name) return name;
    }
  } catch {}
  return null;
}

test("setModelKey refuses loopback, private, metadata and odd spellings of them, with one message", async () => {
  const p = admin.port;
  const urls = [
    `http://127.0.0.1:${p}/admin`,
    `http://[::1]:${p}/admin`,
    `http://[::ffff:127.0.0.1]:${p}/admin`,
    `http://2130706433:${p}/admin`, // decimal
    `http://0177.0.0.1:${p}/admin`, // octal
    `http://127.1:${p}/admin`, // short
    `http://0x7f.0.0.1:${p}/admin`,
    `http://localhost:${p}/admin`,
    `http://localhost.:${p}/admin`,
    "http://10.0.0.5/v1",
    "http://172.16.3.4/v1",
    "http://192.168.0.10/v1",
    "http://100.64.0.1/v1",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://0.0.0.0/v1",
    "http://no-such-host.invalid/v1", // unresolvable: the same answer as private
  ];
  const name = hostsFileName();
  if (name)
    urls.push(`http://${name}:${p}/admin`); // resolves (through /etc/hosts) to loopback
  else console.warn("no non-localhost name in /etc/hosts: the DNS-name case is covered by unit tests only");
  const messages = new Set<string>();
  for (const u of urls) {
    const res = await prod.gql(SET_KEY, { u }, token);
    expect({ u, data: res.data?.setModelKey ?? null, ext: res.errors?.[0]?.extensions }).toEqual({
      u,
      data: null,
      ext: { code: "BAD_USER_INPUT", field: "baseURL", reason: "NOT_PUBLIC" },
    });
    messages.add(res.errors[0].message);
  }
  expect(messages.size).toBe(1);
  for (const [u, reason] of [
    ["file:///etc/passwd", "UNSUPPORTED_SCHEME"],
    ["gopher://127.0.0.1:6379/_INFO", "UNSUPPORTED_SCHEME"],
    ["not a url", "INVALID_URL"],
  ]) {
    const res = await prod.gql(SET_KEY, { u }, token);
    expect(res.errors?.[0]?.extensions).toMatchObject({ code: "BAD_USER_INPUT", reason });
  }
  expect(adminHits).toEqual([]);
});

test("setModelKey accepts a public address (validation only, no connection) and an operator-allowed one", async () => {
  const pub = await prod.gql(SET_KEY, { u: "https://93.184.215.14/v1" }, token);
  expect(pub.data.setModelKey.baseURL).toBe("https://93.184.215.14/v1");
  // Stored normalised: what was checked is what the gateway parses.
  const odd = await prod.gql(SET_KEY, { u: "HTTPS://93.184.215.14:443/v1" }, token);
  expect(odd.data.setModelKey.baseURL).toBe("https://93.184.215.14/v1");
  const ok = await prod.gql(SET_KEY, { u: `http://127.0.0.1:${allowed.port}/v1` }, token);
  expect(ok.data.setModelKey.baseURL).toBe(`http://127.0.0.1:${allowed.port}/v1`);
  // The allowance is for that port only.
  const other = await prod.gql(SET_KEY, { u: `http://127.0.0.1:${admin.port}/v1` }, token);
  expect(other.errors[0].extensions.reason).toBe("NOT_PUBLIC");
  await prod.gql("mutation { deleteModelKey }", {}, token);
});

const RUN_OUTPUT = `subscription($r: ID!) { runOutput(runId: $r) {
  __typename
  ... on AgentError { seq message }
  ... on AgentTextDelta { seq text }
  ... on RunOutputChunk { seq text }
  ... on RunFinished { seq status }
} }`;

async function waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(50);
  }
}

/**
 * Prompts on a fresh session; once the gateway has logged `gatewayLog` (it went, or refused to go,
 * upstream) the run is aborted rather than waiting out the agent's retries. Returns every event the
 * run streamed (recorded in `seen` too) and the run as GraphQL shows it.
 */
async function promptOnce(
  s: Running,
  userToken: string,
  gatewayLog: (line: Record<string, any>) => boolean,
): Promise<{ events: any[]; run: any }> {
  const created = await s.gql(
    `mutation { createSession(input: { title: "ssrf" }) { mainBranch { id } } }`,
    {},
    userToken,
  );
  const started = await s.gql(
    `mutation($b: ID!) { prompt(branchId: $b, text: "hi") { id } }`,
    { b: created.data.createSession.mainBranch.id },
    userToken,
  );
  if (!started.data?.prompt) throw new Error(`prompt failed: ${JSON.stringify(started.errors)}`);
  const runId = started.data.prompt.id;
  const client = wsClient(s.wsUrl, userToken);
  const out = collect(client, RUN_OUTPUT, { r: runId });
  try {
    await waitFor(() => s.logs.some(gatewayLog), 120_000, "the gateway to act");
    const finished = (r: any) => r.data?.runOutput?.__typename === "RunFinished";
    // Give the agent a moment to report what the gateway answered, then stop its retries.
    await out.until(finished, 3000).catch(async () => {
      await s.gql(`mutation($r: ID!) { abortRun(id: $r) { status } }`, { r: runId }, userToken);
    });
    await out.until(finished, 60_000);
    const run = (
      await s.gql(
        `query($r: ID!) { run(id: $r) { status output error modelRequests } }`,
        { r: runId },
        userToken,
      )
    ).data.run;
    seen.push(JSON.stringify(out.results), JSON.stringify(out.errors));
    return { events: out.results.map((r) => r.data?.runOutput), run };
  } finally {
    out.dispose();
    await client.dispose();
  }
}

skip.unlessAgent("the gateway re-checks at use time: a key that became disallowed never reaches its target", async () => {
  // The key is set while the operator allows the admin port ...
  const dir = freshDir();
  const before = await start(dir, { OUTBOUND_ALLOW_HOSTS: `127.0.0.1:${admin.port}` });
  const userToken = await signUp(before);
  const set = await before.gql(SET_KEY, { u: `http://127.0.0.1:${admin.port}/admin/v1` }, userToken);
  expect(set.data.setModelKey).not.toBeNull();
  await before.server.stop();
  // ... then the server restarts without that allowance (as if DNS now pointed somewhere internal).
  const after = await start(dir, {});
  try {
    const { events } = await promptOnce(after, userToken, (l) => l.message === "gateway request failed");
    expect(adminHits).toEqual([]);
    // The refusal is logged for the operator with its reason; the agent saw only "could not be reached".
    expect(JSON.stringify(after.logs)).toContain("NOT_PUBLIC");
    const errors = events.filter((e) => e?.__typename === "AgentError").map((e) => e.message);
    for (const message of errors) expect(message).not.toContain(String(admin.port));
  } finally {
    await after.server.stop();
  }
}, 180_000);

skip.unlessAgent("an allowed upstream's error body (with a secret) is not reflected; its redirect to loopback is not followed", async () => {
  const userToken = await signUp(prod);
  for (const [path, status] of [
    ["/v1", 400],
    ["/redirect/v1", 307],
  ] as const) {
    const set = await prod.gql(SET_KEY, { u: `http://127.0.0.1:${allowed.port}${path}` }, userToken);
    expect(set.data.setModelKey).not.toBeNull();
    const answered = (l: Record<string, any>) =>
      l.message === "model provider answered with an error" && l.status === status;
    const { events, run } = await promptOnce(prod, userToken, answered);
    expect(run.modelRequests).toBeGreaterThan(0); // the gateway did go upstream
    // The operator's log has the upstream's body; the user's events only the status.
    if (status === 400) expect(JSON.stringify(prod.logs.filter(answered))).toContain(SECRET);
    // A 400 is final and the agent reports it at once (the 502 for a redirect is retried, and the
    // run is aborted before the agent gives up).
    const errors = events.filter((e) => e?.__typename === "AgentError").map((e) => e.message);
    if (status === 400) expect(errors.join("\n")).toContain("HTTP 400");
    expect(JSON.stringify(events)).not.toContain(SECRET);
  }
  expect(adminHits).toEqual([]);
}, 240_000);

test("createSession refuses repository URLs to internal addresses, every one with the same answer", async () => {
  const p = admin.port;
  const urls = [
    `http://127.0.0.1:${p}/x.git`,
    `http://[::1]:${p}/x.git`,
    `http://[::ffff:7f00:1]:${p}/x.git`,
    `http://2130706433:${p}/x.git`,
    `http://127.1:${p}/x.git`,
    `http://localhost:${p}/x.git`,
    "http://10.1.2.3/x.git",
    "http://169.254.169.254/latest/meta-data/",
    "https://[fe80::1]/x.git",
    "http://127.0.0.1:9/x.git", // nothing listens there
    "http://no-such-host.invalid/x.git",
  ];
  const answers = new Set<string>();
  for (const url of urls) {
    const res = await prod.gql(
      `mutation($u: String!) { createSession(input: { title: "r", repoUrl: $u }) { id } }`,
      { u: url },
      token,
    );
    expect({ url, code: res.errors?.[0]?.extensions?.code }).toEqual({ url, code: "BAD_USER_INPUT" });
    answers.add(JSON.stringify({ message: res.errors[0].message, extensions: res.errors[0].extensions }));
  }
  expect(answers.size).toBe(1);
  // Other transports and local paths are refused on a production server.
  for (const url of [
    "ssh://git@127.0.0.1/x.git",
    "git@127.0.0.1:x.git",
    "git://127.0.0.1/x.git",
    "file:///etc",
    "/etc",
  ]) {
    const res = await prod.gql(
      `mutation($u: String!) { createSession(input: { title: "r", repoUrl: $u }) { id } }`,
      { u: url },
      token,
    );
    expect({ url, code: res.errors?.[0]?.extensions?.code }).toEqual({ url, code: "BAD_USER_INPUT" });
  }
  expect(adminHits).toEqual([]);
});

test("clone failures on reachable hosts all read the same (refused, reset, not found, auth, redirect)", async () => {
  // A server that allows loopback at all (as a developer might): the failures still look alike.
  const dev = await start(freshDir(), { OUTBOUND_ALLOW_HOSTS: "127.0.0.1" });
  try {
    const devToken = await signUp(dev);
    const create = (u: string, ref?: string) =>
      dev.gql(
        `mutation($u: String!, $r: String) { createSession(input: { title: "r", repoUrl: $u, ref: $r }) { id } }`,
        { u, r: ref ?? null },
        devToken,
      );
    const ok = await create(`http://127.0.0.1:${allowed.port}/repo.git`);
    expect(ok.data?.createSession?.id).toBeString(); // the setup works: this repository clones
    const messages = new Set<string>();
    for (const u of [
      "http://127.0.0.1:9/x.git", // refused
      `http://127.0.0.1:${(resetter.address() as { port: number }).port}/x.git`, // reset
      `http://127.0.0.1:${allowed.port}/missing.git`, // 404
      `http://127.0.0.1:${allowed.port}/auth.git`, // 401
      `http://127.0.0.1:${allowed.port}/redirect/x.git`, // 307 to the admin service: not followed
    ]) {
      const res = await create(u);
      expect({ u, code: res.errors?.[0]?.extensions?.code }).toEqual({ u, code: "BAD_USER_INPUT" });
      messages.add(res.errors[0].message);
    }
    expect([...messages]).toEqual([FETCH_FAILED]);
    expect(adminHits).toEqual([]); // the redirect was not followed
    // A ref the repository lacks is the user's to fix, and says so.
    const badRef = await create(`http://127.0.0.1:${allowed.port}/repo.git`, "no-such-branch");
    expect(badRef.errors[0].message).toContain("no-such-branch");
  } finally {
    await dev.server.stop();
  }
}, 120_000);

test("git connects to the address the policy checked (http.curloptResolve), not to a fresh DNS answer", async () => {
  // repo.example exists only in the policy's resolver: git can only reach it through the pin.
  const policy = new OutboundPolicy(
    { allowPrivate: false, allowHosts: [`127.0.0.1:${allowed.port}`] },
    async (name) => (name === "repo.example" ? [{ address: "127.0.0.1", family: 4 }] : []),
  );
  const dir = freshDir();
  const provider = await new LocalProvider({ dir, outbound: policy }).init();
  try {
    const id = await provider.create({ kind: "git", url: `http://repo.example:${allowed.port}/repo.git` });
    expect(await provider.readFile({ sandbox: id }, "README.md")).not.toBeNull();
    await provider.destroy(id);
    // The same name on a port the operator did not allow is refused before git runs.
    await expect(
      provider.create({ kind: "git", url: `http://repo.example:${admin.port}/repo.git` }),
    ).rejects.toMatchObject({ code: "BAD_BASE" });
  } finally {
    await provider.close();
  }
});

test("configuration: nothing non-public is allowed by default, in development too; bad allowances stop start-up", () => {
  for (const env of ["development", "test", "production"]) {
    const config = loadConfig({ NODE_ENV: env, JWT_SECRET, DATA_DIR: tmpdir() });
    expect(config.outbound).toEqual({ allowPrivate: false, allowHosts: [] });
  }
  expect(
    loadConfig({
      OUTBOUND_ALLOW_HOSTS: "127.0.0.1:4010, 10.0.0.0/8",
      ALLOW_PRIVATE_URLS: "true",
      DATA_DIR: tmpdir(),
    }).outbound,
  ).toEqual({ allowPrivate: true, allowHosts: ["127.0.0.1:4010", "10.0.0.0/8"] });
  expect(() => loadConfig({ OUTBOUND_ALLOW_HOSTS: "127.1", DATA_DIR: tmpdir() })).toThrow(
    /^OUTBOUND_ALLOW_HOSTS: /,
  );
});

test("the secret never appeared in any response", () => {
  expect(seen.length).toBeGreaterThan(20);
  for (const text of seen) expect(text).not.toContain(SECRET);
});
