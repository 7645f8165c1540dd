// /metrics against the real server: the Prometheus text parsed and its families checked to move with
// real work (an exec run followed over graphql-ws, GraphQL queries, a collaboration socket), and the
// access rules (bearer token, a listener of its own, off). Also the same families on Deno.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../../api/config.ts";
import { redisServerBinary, startRedisServer } from "../../scripts/lib/redis-server.ts";
import { denoBinary, startServerProcess } from "../../scripts/lib/server-process.ts";
import { connectRoom, eventually } from "../utils/collab.ts";
import { isolationUnavailable, testUnless } from "../utils/isolation.ts";
import { codeOf, inProcessOnly, startTestServer, type TestServer } from "../utils/server.ts";
import { collect, wsClient } from "../utils/ws.ts";

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The Prometheus text format's samples (comments skipped; label values unescaped). */
function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key, raw] of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g))
      labels[key!] = raw!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

/** The sum of the samples of `name` whose labels include `labels`; undefined when there are none. */
function sampleValue(
  samples: Sample[],
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const matching = samples.filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  return matching.length === 0 ? undefined : matching.reduce((sum, s) => sum + s.value, 0);
}

async function scrape(base: string, headers: Record<string, string> = {}): Promise<Sample[]> {
  const res = await fetch(`${base}/metrics`, { headers });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("text/plain; version=0.0.4");
  return parseMetrics(await res.text());
}

const RUNS_OK = { kind: "EXEC", status: "SUCCEEDED" };

let server: TestServer;
let token: string;
beforeAll(async () => {
  server = await startTestServer();
  token = (await server.signUp()).token;
});
afterAll(() => server.close());

async function gql(query: string, variables: Record<string, unknown> = {}) {
  const res = await server.gql(query, variables, token);
  if (res.errors) throw new Error(JSON.stringify(res.errors));
  return res.data!;
}

const newSession = async () =>
  (
    await gql(
      `mutation($f: JSON) { createSession(input: { title: "metrics", files: $f }) { id eventCursor mainBranch { id } } }`,
      { f: { "a.txt": "hello metrics\n" } },
    )
  ).createSession;

async function finished(runId: string) {
  for (let i = 0; i < 600; i++) {
    const { run } = await gql(`query($r: ID!) { run(id: $r) { status } }`, { r: runId });
    if (!["QUEUED", "RUNNING"].includes(run.status)) return run.status;
    await Bun.sleep(25);
  }
  throw new Error("run did not finish");
}

// Reads the server's SQL log (in process only).
testUnless(isolationUnavailable ?? inProcessOnly)(
  "an exec run moves the run, snapshot, bus and sandbox families; stored bytes are read once, not per scrape",
  async () => {
    const session = await newSession();
    const before = await scrape(server.url);
    // The session's import added bytes; the total was read at this first scrape.
    const stored = sampleValue(before, "opencode_cloud_snapshot_stored_bytes")!;
    expect(stored).toBeGreaterThan(0);
    expect(
      sampleValue(before, "opencode_cloud_sandboxes_live", { provider: "local" }),
    ).toBeGreaterThanOrEqual(1);
    expect(sampleValue(before, "opencode_cloud_runs_total", RUNS_OK)).toBe(0);

    // Session events followed live over graphql-ws: their deliveries are this instance's bus deliveries.
    const client = wsClient(server.wsUrl, token);
    const events = collect(
      client,
      `subscription($s: ID!, $a: String) { sessionEvents(sessionId: $s, after: $a) { kind } }`,
      { s: session.id, a: session.eventCursor },
    );
    const run = (
      await gql(`mutation($b: ID!) { exec(branchId: $b, command: "echo metrics") { id } }`, {
        b: session.mainBranch.id,
      })
    ).exec;
    expect(await finished(run.id)).toBe("SUCCEEDED");
    await events.until((e) => e.data?.sessionEvents?.kind === "RUN_FINISHED");
    events.dispose();
    await client.dispose();

    // The counters follow the published RUN_FINISHED (its row is read once, after the event).
    let after: typeof before = [];
    await eventually(async () => {
      after = await scrape(server.url);
      return sampleValue(after, "opencode_cloud_runs_total", RUNS_OK) === 1;
    });
    expect(sampleValue(after, "opencode_cloud_runs_started_total", { kind: "EXEC" })).toBe(1);
    expect(sampleValue(after, "opencode_cloud_run_duration_seconds_count", { kind: "EXEC" })).toBe(1);
    expect(sampleValue(after, "opencode_cloud_run_duration_seconds_sum", { kind: "EXEC" })).toBeGreaterThan(
      0,
    );
    expect(sampleValue(after, "opencode_cloud_runs_active")).toBe(0);
    expect(sampleValue(after, "opencode_cloud_snapshots_recorded_total")).toBe(
      sampleValue(before, "opencode_cloud_snapshots_recorded_total")! + 1,
    );
    // RUN_QUEUED, RUN_STARTED, SNAPSHOT_ADDED, HEAD_MOVED, RUN_FINISHED at least, each with its lag.
    expect(
      sampleValue(after, "opencode_cloud_bus_events_delivered_total", { topic: "session" }),
    ).toBeGreaterThanOrEqual(5);
    expect(
      sampleValue(after, "opencode_cloud_bus_delivery_lag_seconds_count", { topic: "session" }),
    ).toBeGreaterThanOrEqual(5);
    // Read at most once a minute (METRICS_STORAGE_REFRESH_MS): the run's snapshot is not in it yet, and
    // no scrape since the first one asked the database.
    expect(sampleValue(after, "opencode_cloud_snapshot_stored_bytes")).toBe(stored);
    expect(server.queries.filter((q) => /as "stored_bytes"/.test(q))).toHaveLength(1);
  },
);

testUnless(isolationUnavailable)("a running run counts as active until it ends", async () => {
  const session = await newSession();
  const run = (
    await gql(`mutation($b: ID!) { exec(branchId: $b, command: "echo started; sleep 30") { id } }`, {
      b: session.mainBranch.id,
    })
  ).exec;
  await eventually(
    async () =>
      sampleValue(await scrape(server.url), "opencode_cloud_runs_active", {
        kind: "EXEC",
        state: "running",
      }) === 1,
    10_000,
  );
  await gql(`mutation($r: ID!) { abortRun(id: $r) { id } }`, { r: run.id });
  expect(await finished(run.id)).toBe("ABORTED");
  await eventually(async () => {
    const samples = await scrape(server.url);
    return (
      sampleValue(samples, "opencode_cloud_runs_active") === 0 &&
      sampleValue(samples, "opencode_cloud_runs_total", { kind: "EXEC", status: "ABORTED" }) === 1
    );
  });
});

test("GraphQL phase histograms, requests and errors by code", async () => {
  await gql(`query { me { id } }`);
  expect(codeOf(await server.gql(`query { session(id: "ses_missing") { id } }`, {}, token))).toBe(
    "NOT_FOUND",
  );
  expect(codeOf(await server.gql(`query { nope }`, {}, token))).toBe("BAD_USER_INPUT");
  const samples = await scrape(server.url);
  for (const phase of ["parse", "validate", "context", "execute"])
    expect(
      sampleValue(samples, `graphql_envelop_phase_${phase}_count`, { operationType: "query" }),
    ).toBeGreaterThan(0);
  expect(sampleValue(samples, "graphql_envelop_request", { operationType: "query" })).toBeGreaterThan(0);
  expect(sampleValue(samples, "graphql_yoga_http_duration_count", { method: "POST" })).toBeGreaterThan(0);
  expect(
    sampleValue(samples, "graphql_envelop_error_result", { phase: "execute", code: "NOT_FOUND" }),
  ).toBeGreaterThanOrEqual(1);
  expect(
    sampleValue(samples, "graphql_envelop_error_result", { phase: "validate", code: "BAD_USER_INPUT" }),
  ).toBeGreaterThanOrEqual(1);
  // Names a client chooses never become labels (each distinct value would be a series kept forever).
  expect(samples.some((s) => "operationName" in s.labels || "path" in s.labels)).toBe(false);

  // The subscribe phase of a subscription is observed when it ends (the plugin times its whole life).
  const count = (of: Sample[], phase: string) =>
    sampleValue(of, `graphql_envelop_phase_${phase}_count`, { operationType: "subscription" }) ?? 0;
  const [contexts, subscribed] = [count(samples, "context"), count(samples, "subscribe")];
  const session = await newSession();
  const client = wsClient(server.wsUrl, token);
  const events = collect(client, `subscription($s: ID!) { sessionEvents(sessionId: $s) { kind } }`, {
    s: session.id,
  });
  // Started on the server (its context was built, subscribe follows at once), then ended by the client.
  await eventually(async () => count(await scrape(server.url), "context") > contexts);
  events.dispose();
  await eventually(async () => count(await scrape(server.url), "subscribe") > subscribed);
  await client.dispose();
});

test("a collaboration socket and its room are counted while open", async () => {
  const session = await newSession();
  const base = await scrape(server.url);
  const sockets = sampleValue(base, "opencode_cloud_collab_sockets_open")!;
  const room = connectRoom(server.url, `sessions/${session.id}/chat`, token);
  await room.synced;
  const open = await scrape(server.url);
  expect(sampleValue(open, "opencode_cloud_collab_sockets_open")).toBe(sockets + 1);
  expect(sampleValue(open, "opencode_cloud_collab_rooms_loaded")).toBeGreaterThanOrEqual(1);
  room.provider.destroy();
  await eventually(
    async () => sampleValue(await scrape(server.url), "opencode_cloud_collab_sockets_open") === sockets,
  );
});

testUnless(inProcessOnly)("process metrics that work on Bun, and none that only look real", async () => {
  const samples = await scrape(server.url);
  for (const name of [
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_start_time_seconds",
    "nodejs_heap_size_used_bytes",
  ])
    expect(sampleValue(samples, name)).toBeGreaterThan(0);
  // The event-loop delay percentiles restart at every scrape (0 when the loop was not sampled since).
  expect(sampleValue(samples, "nodejs_eventloop_lag_p99_seconds")).toBeNumber();
  // Always 0 or an emulation on Bun: left out.
  for (const name of [
    "nodejs_active_handles_total",
    "nodejs_heap_space_size_used_bytes",
    "nodejs_version_info",
  ])
    expect(sampleValue(samples, name)).toBeUndefined();
  expect(samples.find((s) => s.name === "opencode_cloud_build_info")?.labels.runtime).toStartWith("bun ");
  expect(sampleValue(samples, "opencode_cloud_agents_live")).toBe(0);
});

test("METRICS_TOKEN: /metrics answers 401 without it or with another", async () => {
  const secret = `metrics-${crypto.randomUUID()}`;
  const guarded = await startTestServer({ METRICS_TOKEN: secret });
  try {
    const refused: Record<string, string>[] = [
      {},
      { authorization: "Bearer not-the-token-at-all" },
      { authorization: secret },
    ];
    for (const headers of refused) {
      const res = await fetch(`${guarded.url}/metrics`, { headers });
      expect(res.status).toBe(401);
      expect(res.headers.get("www-authenticate")).toContain("Bearer");
      expect(codeOf(await res.json())).toBe("UNAUTHENTICATED");
    }
    const samples = await scrape(guarded.url, { authorization: `Bearer ${secret}` });
    expect(sampleValue(samples, "opencode_cloud_runs_total", RUNS_OK)).toBe(0);
  } finally {
    await guarded.close();
  }
});

testUnless(inProcessOnly)(
  "METRICS_PORT: /metrics only on its own listener, which serves nothing else",
  async () => {
    const separate = await startTestServer({ METRICS_HOST: "127.0.0.1", METRICS_PORT: "0" });
    try {
      expect(separate.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(separate.metricsUrl).not.toBe(separate.url);
      const main = await fetch(`${separate.url}/metrics`);
      expect(main.status).toBe(404);
      expect(codeOf(await main.json())).toBe("NOT_FOUND");
      const other = await fetch(`${separate.metricsUrl}/graphql`);
      expect(other.status).toBe(404);
      await other.text();
      // Its own families and the GraphQL ones of the main listener's requests.
      await separate.gql(`query { health { ok } }`);
      const samples = await scrape(separate.metricsUrl!);
      expect(
        sampleValue(samples, "graphql_envelop_phase_execute_count", { operationType: "query" }),
      ).toBeGreaterThan(0);
    } finally {
      await separate.close();
    }
    // Stopped with the server.
    expect(fetch(`${separate.metricsUrl}/metrics`)).rejects.toThrow();
  },
);

test("METRICS_ENABLED=false turns /metrics off; production serves it only when protected or opted in", async () => {
  const off = await startTestServer({ METRICS_ENABLED: "false" });
  try {
    const res = await fetch(`${off.url}/metrics`);
    expect(res.status).toBe(404);
    expect(codeOf(await res.json())).toBe("NOT_FOUND");
  } finally {
    await off.close();
  }
  const production = { NODE_ENV: "production", JWT_SECRET: "x".repeat(32) };
  expect(loadConfig(production).metrics).toMatchObject({ enabled: false, listener: null });
  expect(loadConfig({ ...production, METRICS_TOKEN: "t".repeat(16) }).metrics.enabled).toBe(true);
  expect(loadConfig({ ...production, METRICS_PORT: "9464" }).metrics).toMatchObject({
    enabled: true,
    listener: { host: "127.0.0.1", port: 9464 },
  });
  expect(loadConfig({ ...production, METRICS_ENABLED: "true" }).metrics.enabled).toBe(true);
  expect(loadConfig({}).metrics).toMatchObject({ enabled: true, token: undefined, listener: null });
  expect(() => loadConfig({ METRICS_TOKEN: "short" })).toThrow(
    "METRICS_TOKEN: must be at least 16 characters",
  );
  expect(() => loadConfig({ METRICS_HOST: "10.0.0.5" })).toThrow("METRICS_PORT: required with METRICS_HOST");
});

testUnless(isolationUnavailable ?? (redisServerBinary() ? null : "redis-server is not installed"))(
  "two instances on one Redis: each counts its own runs; B times deliveries of A's events",
  async () => {
    const redis = await startRedisServer();
    const dir = mkdtempSync(join(tmpdir(), "occ-metrics-"));
    const env = {
      REDIS_URL: redis.url,
      DATABASE_URL: `file:${join(dir, "shared.db")}`,
      JWT_SECRET: `metrics-${crypto.randomUUID()}`,
    };
    const a = await startTestServer(env);
    const b = await startTestServer(env);
    try {
      const { token: owner } = await a.signUp();
      const session = (
        await a.gql(
          `mutation { createSession(input: { title: "two" }) { id eventCursor mainBranch { id } } }`,
          {},
          owner,
        )
      ).data!.createSession;
      // Followed on B: A's events reach B's subscriber through Redis.
      const client = wsClient(b.wsUrl, owner);
      const events = collect(
        client,
        `subscription($s: ID!, $a: String) { sessionEvents(sessionId: $s, after: $a) { kind } }`,
        { s: session.id, a: session.eventCursor },
      );
      const run = (
        await a.gql(
          `mutation($b: ID!) { exec(branchId: $b, command: "true") { id } }`,
          { b: session.mainBranch.id },
          owner,
        )
      ).data!.exec;
      await events.until((e) => e.data?.sessionEvents?.kind === "RUN_FINISHED", 20_000);
      events.dispose();
      await client.dispose();
      await eventually(
        async () => sampleValue(await scrape(a.url), "opencode_cloud_runs_total", RUNS_OK) === 1,
      );
      const onB = await scrape(b.url);
      expect(sampleValue(onB, "opencode_cloud_runs_total", RUNS_OK)).toBe(0);
      expect(sampleValue(onB, "opencode_cloud_runs_started_total")).toBe(0);
      expect(
        sampleValue(onB, "opencode_cloud_bus_delivery_lag_seconds_count", { topic: "session" }),
      ).toBeGreaterThanOrEqual(5);
      const onA = await scrape(a.url);
      expect(
        sampleValue(onA, "opencode_cloud_bus_delivery_lag_seconds_count", { topic: "session" }) ?? 0,
      ).toBe(0);
      expect(run.id).toStartWith("run_");
    } finally {
      await b.close();
      await a.close();
      await redis.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

const noDeno = denoBinary() ? null : "deno is not installed (it is an npm dependency: run npm install)";
test.skipIf(noDeno !== null)(
  "on Deno: the GraphQL, platform and Deno's working process families",
  async () => {
    const deno = await startServerProcess({ NODE_ENV: "test", LOG_LEVEL: "warn" }, { runtime: "deno" });
    try {
      await deno.gql(`query { health { ok } }`);
      const samples = await scrape(deno.url);
      expect(
        sampleValue(samples, "graphql_envelop_phase_execute_count", { operationType: "query" }),
      ).toBeGreaterThan(0);
      expect(sampleValue(samples, "opencode_cloud_runs_total", RUNS_OK)).toBe(0);
      expect(sampleValue(samples, "opencode_cloud_collab_sockets_open")).toBe(0);
      for (const name of [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "nodejs_active_handles_total",
      ])
        expect(sampleValue(samples, name)).toBeGreaterThan(0);
      // Deno's event-loop delay monitor misses a blocked loop, and it emits no GC entries: left out.
      expect(sampleValue(samples, "nodejs_eventloop_lag_p99_seconds")).toBeUndefined();
      expect(samples.find((s) => s.name === "opencode_cloud_build_info")?.labels.runtime).toStartWith(
        "deno ",
      );
    } finally {
      await deno.stop();
    }
  },
  60_000,
);
