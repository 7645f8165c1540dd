// Benchmarks the real server process against its baseline, side by side in one run: cold start
// (spawn -> first healthy /healthz, fresh data dir, migrations included), then the throughput of the
// authenticated hot path `{ me { id } }` with a JWT and with an API key next to bare graphql-yoga on
// Bun serving a one-field schema of the same shape (scripts/lib/bare-yoga.ts: no auth, no limits, no
// database). Rounds alternate bare / JWT / API key so drift on a shared machine hits all of them;
// each figure is the median over rounds. Load comes from wrk when it is installed (Debian's `wrk`,
// one thread, as the issue's measurement did), else from this process over loopback. Bounded in time.
//
// With `--runtime deno` the platform is measured on Deno too, beside Bun in the same run (cold starts
// alternate; load rounds cycle through both), against the same bare-yoga baseline.
//
// With `--metrics both` each runtime's platform is also started with METRICS_ENABLED=false (no
// Prometheus plugin, nothing collected) and measured in the same alternating rounds: the JWT and
// API-key throughput with and without metrics, and their ratio (the cost of /metrics on the hot path).
// `--metrics off` measures only the platform without them (default `on`: as `npm start` outside production).
//
//   npm run bench:server            (defaults: 3 cold starts, 3 rounds of 5 s, 32 connections)
//   npm run bench:server -- --runtime deno      (Bun and Deno side by side)
//   bun scripts/bench-server.ts --starts 3 --seconds 8 --rounds 3 --concurrency 32 [--loader fetch]
//     [--metrics on|off|both]
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { denoBinary, type ServerRuntime, startServerProcess } from "./lib/server-process.ts";

const { values } = parseArgs({
  options: {
    starts: { type: "string", default: "3" },
    seconds: { type: "string", default: "5" },
    rounds: { type: "string", default: "3" },
    concurrency: { type: "string", default: "32" },
    loader: { type: "string", default: Bun.which("wrk") ? "wrk" : "fetch" },
    // "bun" (default), "deno" (Deno beside Bun) or a list: "bun,deno".
    runtime: { type: "string", default: "bun" },
    // "on" (default: metrics as outside production), "off" (METRICS_ENABLED=false) or "both".
    metrics: { type: "string", default: "on" },
  },
});
if (!["on", "off", "both"].includes(values.metrics))
  throw new Error(`--metrics: expected on, off or both, got ${values.metrics}`);
/** Whether metrics are on, for each platform started per runtime (on first, so names stay as before). */
const METRICS: boolean[] = values.metrics === "both" ? [true, false] : [values.metrics === "on"];
const RUNTIMES: ServerRuntime[] =
  values.runtime === "deno"
    ? ["bun", "deno"]
    : [...new Set(values.runtime.split(",").map((r) => r.trim()))].map((r) => {
        if (r !== "bun" && r !== "deno") throw new Error(`--runtime: expected bun or deno, got ${r}`);
        return r;
      });
if (RUNTIMES.includes("deno") && !denoBinary())
  throw new Error("--runtime deno: deno is not installed (npm install)");
const STARTS = Number(values.starts);
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const CONCURRENCY = Number(values.concurrency);
const LOADER = values.loader === "wrk" && Bun.which("wrk") ? "wrk" : "fetch";

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)]!;
};
const fmt = (n: number) => n.toFixed(1);

/** A server process, timed from spawn until /healthz answers (fresh database, migrations included). */
async function startPlatform(runtime: ServerRuntime, metrics = METRICS[0]!) {
  const t0 = performance.now();
  // The limits stay on (their cost is part of the hot path) but high enough never to refuse the load.
  const server = await startServerProcess(
    {
      AUTH_RATE_LIMIT_PER_MINUTE: "100000",
      REQUESTS_PER_MINUTE_PER_USER: "100000000",
      REQUESTS_PER_MINUTE_PER_API_KEY: "100000000",
      METRICS_ENABLED: String(metrics),
    },
    { echoStderr: true, runtime },
  );
  for (;;) {
    const ok = await fetch(`${server.url}/healthz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    await Bun.sleep(2);
  }
  return { ...server, coldStartMs: performance.now() - t0 };
}

async function startBareYoga(): Promise<{ url: string; stop(): Promise<void> }> {
  const proc = Bun.spawn([process.execPath, resolve(import.meta.dir, "lib/bare-yoga.ts")], {
    stdout: "pipe",
    stderr: "inherit",
  });
  process.on("exit", () => proc.kill("SIGKILL"));
  const reader = proc.stdout.getReader();
  let text = "";
  while (!/listening on (\S+)/.test(text)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`bare yoga did not start: ${text}`);
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  return {
    url: /listening on (\S+)/.exec(text)![1]!,
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}

interface LoadResult {
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  errors: number;
}

/** The expected answer has data.me.id (or __typename); anything else counts as an error. */
async function loadWithFetch(url: string, query: string, token: string | null): Promise<LoadResult> {
  const body = JSON.stringify({ query });
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const latencies: number[] = [];
  let errors = 0;
  const end = performance.now() + SECONDS * 1000;
  const worker = async () => {
    while (performance.now() < end) {
      const t = performance.now();
      const res = await fetch(`${url}/graphql`, { method: "POST", headers, body });
      const json = (await res.json()) as { data?: Record<string, unknown> | null };
      if (!json.data || Object.values(json.data).some((v) => v === null)) errors++;
      latencies.push(performance.now() - t);
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const elapsed = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  const at = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))]!;
  return { rps: latencies.length / elapsed, p50: at(0.5), p99: at(0.99), requests: latencies.length, errors };
}

const workDir = mkdtempSync(join(tmpdir(), "occ-bench-server-"));

/** wrk with one thread; a Lua script posts the query and counts answers without data as errors. */
async function loadWithWrk(url: string, query: string, token: string | null): Promise<LoadResult> {
  const script = join(workDir, "post.lua");
  const headers = [`wrk.headers["Content-Type"] = "application/json"`];
  if (token) headers.push(`wrk.headers["Authorization"] = ${JSON.stringify(`Bearer ${token}`)}`);
  writeFileSync(
    script,
    `wrk.method = "POST"
wrk.body = ${JSON.stringify(JSON.stringify({ query }))}
${headers.join("\n")}
local bad = 0
function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"data":{"', 1, true) or string.find(body, '"errors"', 1, true) then bad = bad + 1 end
end
function done(summary, latency, requests)
  io.write(string.format("RESULT %d %d %f %f %d\\n", summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), bad))
end
`,
  );
  // One thread, so the load generator takes one core at most, as in the measurement of the issue.
  const out = await Bun.$`wrk -t1 -c${CONCURRENCY} -d${SECONDS}s -s ${script} ${url}/graphql`.quiet().text();
  // wrk runs `response` in its thread's own Lua state but `done` in another: count errors via non-2xx.
  const m = /RESULT (\d+) (\d+) ([\d.]+) ([\d.]+)/.exec(out);
  if (!m) throw new Error(`wrk printed no result:\n${out}`);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const requests = Number(m[1]);
  return {
    rps: requests / (Number(m[2]) / 1e6),
    p50: Number(m[3]) / 1000,
    p99: Number(m[4]) / 1000,
    requests,
    errors: non2xx,
  };
}

const load = LOADER === "wrk" ? loadWithWrk : loadWithFetch;

interface Platform {
  runtime: ServerRuntime;
  metrics: boolean;
  server: Awaited<ReturnType<typeof startPlatform>>;
  jwt: string;
  key: string;
}

/** Answers what the load counts as success, or throws. */
async function sanityCheck(url: string, token: string | null): Promise<void> {
  const res = await fetch(`${url}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query: "{ me { id } }" }),
  });
  const text = await res.text();
  if (!text.includes('"me":{"id"')) throw new Error(`unexpected answer from ${url}: ${text}`);
}

try {
  // Cold starts alternate between runtimes, so drift hits each the same way.
  const starts = new Map<ServerRuntime, number[]>(RUNTIMES.map((r) => [r, []]));
  for (let i = 0; i < STARTS; i++) {
    for (const runtime of RUNTIMES) {
      const server = await startPlatform(runtime);
      starts.get(runtime)!.push(server.coldStartMs);
      await server.stop();
    }
  }

  const platforms: Platform[] = [];
  const bare = await startBareYoga();
  try {
    for (const runtime of RUNTIMES)
      for (const metrics of METRICS) {
        const server = await startPlatform(runtime, metrics);
        const reg = await server.gql(
          'mutation { register(email: "bench@example.com", password: "password123") { token } }',
        );
        const jwt = reg.register.token as string;
        const key = (await server.gql('mutation { createApiKey(name: "bench") { secret } }', {}, jwt))
          .createApiKey.secret as string;
        platforms.push({ runtime, metrics, server, jwt, key });
      }
    await sanityCheck(bare.url, null);
    for (const p of platforms) for (const token of [p.jwt, p.key]) await sanityCheck(p.server.url, token);

    const bareCase = {
      name: "bare graphql-yoga (bun) { me { id } }",
      url: bare.url,
      query: "{ me { id } }",
      token: null,
    };
    // Named as before unless metrics are off (`--metrics off|both`).
    const label = (p: Platform) => (p.metrics ? p.runtime : `${p.runtime}, metrics off`);
    const perPlatform = platforms.map((p) => ({
      runtime: p.runtime,
      metrics: p.metrics,
      cases: [
        {
          name: `platform (${label(p)}) { me { id } }, JWT`,
          url: p.server.url,
          query: "{ me { id } }",
          token: p.jwt,
        },
        {
          name: `platform (${label(p)}) { me { id } }, API key`,
          url: p.server.url,
          query: "{ me { id } }",
          token: p.key,
        },
        {
          name: `platform (${label(p)}) { __typename }, anonymous`,
          url: p.server.url,
          query: "{ __typename }",
          token: null,
        },
      ],
    }));
    const cases = [bareCase, ...perPlatform.flatMap((r) => r.cases)];
    // Each round measures the same query on every platform back to back (JWT on each, then API key on
    // each...), so what is compared is measured closest in time.
    const interleaved = [
      bareCase,
      ...perPlatform[0]!.cases.flatMap((_, i) => perPlatform.map((p) => p.cases[i]!)),
    ];
    // Warm-up (JIT, caches), discarded.
    for (const c of interleaved) await load(c.url, c.query, c.token);
    const results = new Map<string, LoadResult[]>(cases.map((c) => [c.name, []]));
    for (let r = 0; r < ROUNDS; r++)
      for (const c of interleaved) results.get(c.name)!.push(await load(c.url, c.query, c.token));
    const rssMb = new Map<string, number>();
    for (const p of platforms)
      rssMb.set(label(p), Number((await Bun.$`ps -o rss= -p ${p.server.pid}`.text()).trim()) / 1024);

    const denoVersion = RUNTIMES.includes("deno")
      ? `, ${(await Bun.$`${denoBinary()!} --version`.text()).split("\n")[0]}`
      : "";
    console.log(
      `machine: ${navigator.hardwareConcurrency} cores, bun ${Bun.version}${denoVersion}; load: ${LOADER}` +
        `${LOADER === "wrk" ? " (1 thread)" : " (in-process fetch)"}, ${CONCURRENCY} connections, ` +
        `${ROUNDS} rounds of ${SECONDS} s, medians`,
    );
    for (const runtime of RUNTIMES) {
      const xs = starts.get(runtime)!;
      console.log(
        `cold start on ${runtime} (spawn -> healthy, fresh db + migrations): median ${fmt(median(xs))} ms over ${STARTS} (${xs.map(fmt).join(", ")})`,
      );
    }
    const rps = new Map<string, number>();
    for (const c of cases) {
      const rs = results.get(c.name)!;
      const m = median(rs.map((x) => x.rps));
      rps.set(c.name, m);
      const errors = rs.reduce((n, x) => n + x.errors, 0);
      console.log(
        `${c.name}: ${m.toFixed(0)} req/s, p50 ${fmt(median(rs.map((x) => x.p50)))} ms, ` +
          `p99 ${fmt(median(rs.map((x) => x.p99)))} ms, ${errors} errors (rounds: ${rs.map((x) => x.rps.toFixed(0)).join(", ")})`,
      );
    }
    const base = rps.get(bareCase.name)!;
    for (const { cases: own } of perPlatform)
      for (const c of own) {
        const target = c.token ? " (target >= 0.80)" : "";
        console.log(`ratio ${c.name} / bare: ${(rps.get(c.name)! / base).toFixed(2)}${target}`);
      }
    const ratio = (a: { name: string }, b: { name: string }) =>
      console.log(`ratio ${b.name} / ${a.name}: ${(rps.get(b.name)! / rps.get(a.name)!).toFixed(2)}`);
    // Deno against Bun, with the same metrics setting.
    for (const metrics of METRICS) {
      const [a, b] = RUNTIMES.map((r) => perPlatform.find((p) => p.runtime === r && p.metrics === metrics));
      if (a && b) for (let i = 0; i < a.cases.length; i++) ratio(a.cases[i]!, b.cases[i]!);
    }
    // Without metrics against with them: above 1, what /metrics costs the hot path.
    for (const runtime of RUNTIMES) {
      const [on, off] = [true, false].map((m) =>
        perPlatform.find((p) => p.runtime === runtime && p.metrics === m),
      );
      if (on && off)
        for (let i = 0; i < on.cases.length; i++) {
          const [a, b] = [on.cases[i]!, off.cases[i]!];
          const cost = 1 - rps.get(a.name)! / rps.get(b.name)!;
          console.log(
            `ratio ${b.name} / ${a.name}: ${(rps.get(b.name)! / rps.get(a.name)!).toFixed(2)} ` +
              `(metrics cost ${(cost * 100).toFixed(1)}% of the throughput without them)`,
          );
        }
    }
    for (const [name, mb] of rssMb) console.log(`platform RSS on ${name} after load: ${fmt(mb)} MB`);
  } finally {
    await bare.stop();
    for (const p of platforms) await p.server.stop();
  }
} finally {
  rmSync(workDir, { recursive: true, force: true });
}
