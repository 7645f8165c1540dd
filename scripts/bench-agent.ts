// The agent through the platform against a bare `opencode serve`, side by side in one run: the same
// opencode binary, the same scripted fake model (so the model costs nothing), the same machine.
//
//   bare:     opencode serve started here, on loopback, with a fresh state directory; turns are
//             prompt_async followed on GET /event (the first normalised agent event is the mark).
//   platform: the real server as a child process (npm start's composition): prompt mutation ->
//             first agent event on runOutput (graphql-ws), the agent live in the branch's sandbox.
//
// Figures: warm turn -> first agent event (a branch that already had a turn; target <= 1.5x bare);
// cold (new session, first prompt, server start included) against bare's own start + first turn
// (target <= 1.3x); fork -> first agent event on the child; resident memory per idle live agent and
// per instance with AGENT_MAX_LIVE agents live. Bare and platform samples alternate, so a noisy
// machine weighs on both alike; medians are compared.
//
//   bun scripts/bench-agent.ts [--reps 5] [--cap 4]
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createClient } from "graphql-ws";
import { TurnEvents } from "../agent/live/turn-events.ts";
import { offlineEnv, opencodeBinary, projectConfig } from "../agent/opencode-binary.ts";
import { startFakeModel } from "./fake-model.ts";
import { startServerProcess } from "./lib/server-process.ts";

const { values } = parseArgs({
  options: { reps: { type: "string", default: "5" }, cap: { type: "string", default: "4" } },
});
const REPS = Number(values.reps);
const CAP = Number(values.cap);
const bin = opencodeBinary();
if (!bin) throw new Error("the opencode binary is not installed (npm package opencode-linux-x64)");

const fake = startFakeModel({
  scenarios: [
    {
      steps: [
        { tool: "bash", args: { command: "echo hi", description: "say hi" } },
        { text: "A short answer from the fake model." },
      ],
    },
  ],
});
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
const ms = (x: number) => `${x.toFixed(0)} ms`;
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MB`;

/**
 * Resident memory (bytes) of `root` and its descendants whose command line matches `pattern`, and how
 * many of them are opencode servers (other programs on the machine, other tests' agents, are not counted).
 */
async function rssUnder(root: number, pattern: RegExp): Promise<{ bytes: number; servers: number }> {
  const ps = await Bun.$`ps -eo pid=,ppid=,rss=,args=`.quiet().text();
  const rows = ps
    .split("\n")
    .map((line) => /^\s*(\d+)\s+(\d+)\s+(\d+)\s+(.*)$/.exec(line))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ pid: Number(m[1]), ppid: Number(m[2]), rss: Number(m[3]) * 1024, args: m[4]! }));
  const children = new Map<number, typeof rows>();
  for (const row of rows) children.set(row.ppid, [...(children.get(row.ppid) ?? []), row]);
  let bytes = 0;
  let servers = 0;
  const queue = rows.filter((r) => r.pid === root);
  while (queue.length > 0) {
    const row = queue.pop()!;
    if (pattern.test(row.args)) {
      bytes += row.rss;
      if (/opencode serve/.test(row.args)) servers++;
    }
    queue.push(...(children.get(row.pid) ?? []));
  }
  return { bytes, servers };
}

// ---- bare opencode serve ---------------------------------------------------------------------------

interface Bare {
  base: string;
  auth: string;
  pid: number;
  stop(): void;
}

async function startBare(root: string): Promise<Bare> {
  const project = join(root, "project");
  mkdirSync(project, { recursive: true });
  const password = "bench";
  const child = spawn(bin!, ["serve", "--port", "0", "--hostname", "127.0.0.1"], {
    cwd: project,
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      ...offlineEnv(join(root, "state")),
      OPENCODE_CONFIG_CONTENT: projectConfig(fake.baseURL, "sk-bench"),
      OPENCODE_SERVER_PASSWORD: password,
    },
    stdio: ["ignore", "pipe", "ignore"],
  });
  const base = await new Promise<string>((resolve, reject) => {
    let seen = "";
    child.stdout!.on("data", (data) => {
      seen += data;
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(seen);
      if (m) resolve(m[1]!);
    });
    child.on("exit", (code) => reject(new Error(`bare opencode serve exited (${code})`)));
  });
  return {
    base,
    auth: `Basic ${Buffer.from(`opencode:${password}`).toString("base64")}`,
    pid: child.pid!,
    stop: () => child.kill("SIGKILL"),
  };
}

/** One turn on the bare server: prompt_async -> first agent event, and -> session.idle. */
async function bareTurn(bare: Bare, sessionId: string): Promise<{ first: number; total: number }> {
  const headers = { authorization: bare.auth, "content-type": "application/json" };
  const controller = new AbortController();
  const events = await fetch(`${bare.base}/event`, { headers, signal: controller.signal });
  const reader = events.body!.getReader();
  const turn = new TurnEvents(sessionId);
  const decoder = new TextDecoder();
  let buffer = "";
  // Wait for server.connected, so the prompt's events cannot be missed.
  for (;;) {
    const { value } = await reader.read();
    buffer += decoder.decode(value, { stream: true });
    if (buffer.includes("\n\n")) break;
  }
  buffer = "";
  const t0 = performance.now();
  const sent = await fetch(`${bare.base}/session/${sessionId}/prompt_async`, {
    method: "POST",
    headers,
    body: JSON.stringify({ parts: [{ type: "text", text: "go" }] }),
  });
  if (!sent.ok) throw new Error(`bare prompt_async: ${sent.status}`);
  let first: number | undefined;
  while (!turn.idle) {
    const { value, done } = await reader.read();
    if (done) throw new Error("bare event stream ended");
    buffer += decoder.decode(value, { stream: true });
    for (let at = buffer.indexOf("\n\n"); at >= 0; at = buffer.indexOf("\n\n")) {
      const data = buffer
        .slice(0, at)
        .split("\n")
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trim())
        .join("");
      buffer = buffer.slice(at + 2);
      if (!data) continue;
      const produced = turn.push(JSON.parse(data));
      if (produced.length > 0 && first === undefined) first = performance.now() - t0;
    }
  }
  controller.abort();
  return { first: first ?? Number.NaN, total: performance.now() - t0 };
}

async function bareSession(bare: Bare): Promise<string> {
  const res = await fetch(`${bare.base}/session`, {
    method: "POST",
    headers: { authorization: bare.auth, "content-type": "application/json" },
    body: JSON.stringify({ title: "bench" }),
  });
  return ((await res.json()) as { id: string }).id;
}

/** One bare sample: start + first turn to its first event, then a warm turn's first event. */
async function bareSample(measureMemory: boolean) {
  const root = mkdtempSync(join(tmpdir(), "occ-bench-bare-"));
  const t0 = performance.now();
  const bare = await startBare(root);
  try {
    const session = await bareSession(bare);
    const cold = await bareTurn(bare, session);
    const coldFirst = performance.now() - t0 - cold.total + cold.first;
    const warm = (await bareTurn(bare, session)).first;
    let rss = 0;
    if (measureMemory) {
      await Bun.sleep(1000);
      rss = (await rssUnder(bare.pid, /opencode serve/)).bytes;
    }
    return { cold: coldFirst, warm, rss };
  } finally {
    bare.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

// ---- the platform ------------------------------------------------------------------------------------

const server = await startServerProcess(
  {
    AGENT_MODEL_BASE_URL: fake.baseURL,
    AGENT_MODEL: "fake",
    AGENT_MAX_LIVE: String(CAP),
    RUNS_MAX_PARALLEL: "4",
  },
  { echoStderr: true },
);
const { gql } = server;
const token = (
  await gql(`mutation { register(email: "agent@example.com", password: "password123") { token } }`)
).register.token;
const client = createClient({
  url: `${server.url.replace("http", "ws")}/graphql`,
  connectionParams: { token },
  lazy: false,
});

/** prompt -> first agent event on runOutput, and -> the run's end (with its snapshot). */
async function turn(branchId: string, t0 = performance.now()) {
  const run = (
    await gql(`mutation($b: ID!) { prompt(branchId: $b, text: "go") { id } }`, { b: branchId }, token)
  ).prompt;
  return new Promise<{ first: number; total: number; snapshotId: string }>((resolve, reject) => {
    let first: number | undefined;
    const dispose = client.subscribe(
      {
        query: `subscription($r: ID!) { runOutput(runId: $r) { __typename ... on RunFinished { status snapshot { id } } } }`,
        variables: { r: run.id },
      },
      {
        next: (result) => {
          const e = (
            result.data as { runOutput: { __typename: string; status?: string; snapshot?: { id: string } } }
          ).runOutput;
          if (first === undefined && e.__typename.startsWith("Agent")) first = performance.now() - t0;
          if (e.__typename === "RunFinished") {
            dispose();
            if (e.status !== "SUCCEEDED") reject(new Error(`turn ${e.status}`));
            resolve({
              first: first ?? Number.NaN,
              total: performance.now() - t0,
              snapshotId: e.snapshot!.id,
            });
          }
        },
        error: reject,
        complete: () => {},
      },
    );
  });
}

const newSession = async () =>
  (await gql(`mutation { createSession(input: { title: "bench" }) { mainBranch { id } } }`, {}, token))
    .createSession.mainBranch.id as string;

// Bare and platform samples alternate, so both see the same load on a shared machine.
const bareCold: number[] = [];
const bareWarm: number[] = [];
let bareIdleRss = 0;
const cold: number[] = [];
const warm: number[] = [];
const forks: number[] = [];
for (let i = 0; i < REPS; i++) {
  const bare = await bareSample(i === 0);
  bareCold.push(bare.cold);
  bareWarm.push(bare.warm);
  if (i === 0) bareIdleRss = bare.rss;

  const t0 = performance.now();
  const branch = await newSession();
  cold.push((await turn(branch, t0)).first);
  const second = await turn(branch);
  warm.push(second.first);
  const f0 = performance.now();
  const child = (
    await gql(`mutation($s: ID!) { fork(snapshotId: $s) { id } }`, { s: second.snapshotId }, token)
  ).fork.id;
  forks.push((await turn(child, f0)).first);
}

// Memory: every live agent now idle; the pool holds CAP of them (more branches than CAP were used).
await Bun.sleep(2000);
const agents = await rssUnder(
  server.pid,
  /\/opt\/occ\/(opencode serve|sandbox-agent\.mjs)|bwrap .*\/opt\/occ\/sandbox-agent/,
);
const serverRss = (await rssUnder(server.pid, /api\/main\.ts/)).bytes;

const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
const list = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(", ");
console.log(`\nopencode ${bin}\nreps: ${REPS}; AGENT_MAX_LIVE for this run: ${CAP}\n`);
console.log(
  `warm turn -> first agent event:   platform ${ms(median(warm))} (${list(warm)}), bare opencode serve ${ms(median(bareWarm))} (${list(bareWarm)}): ${ratio(median(warm), median(bareWarm))} (target <= 1.5x)`,
);
console.log(
  `cold (new session, first prompt): platform ${ms(median(cold))} (${list(cold)}), bare start + first turn ${ms(median(bareCold))} (${list(bareCold)}): ${ratio(median(cold), median(bareCold))} (target <= 1.3x)`,
);
console.log(
  `fork -> first agent event on the child (server started ahead by the fork): ${ms(median(forks))} (${list(forks)}); ${ratio(median(forks), median(bareWarm))} of bare warm, ${ratio(median(forks), median(bareCold))} of bare cold`,
);
const perAgent = agents.servers > 0 ? agents.bytes / agents.servers : 0;
console.log(
  `memory per idle live agent (opencode serve + supervisor + bwrap): ${mb(perAgent)}; bare opencode serve after two turns: ${mb(bareIdleRss)} (${ratio(perAgent, bareIdleRss)})`,
);
console.log(
  `memory per instance at the cap (${agents.servers} live agents + the platform process): ${mb(agents.bytes + serverRss)}; at the default cap of 12: ~${((12 * perAgent + serverRss) / 1024 ** 3).toFixed(1)} GB`,
);

await client.dispose();
await server.stop();
await fake.close();
