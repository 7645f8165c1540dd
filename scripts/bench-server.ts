// Benchmarks the real server process: cold start (spawn -> first healthy /healthz, fresh data dir,
// migrations included) and throughput/latency of a trivial authenticated query with a JWT and with
// an API key. Load comes from this process over loopback, bounded in time. Prints its figures.
//
//   npm run bench:server            (defaults: 5 cold starts, 8 s per load run, 32 connections)
//   bun scripts/bench-server.ts --starts 3 --seconds 5 --concurrency 16
import { parseArgs } from "node:util";
import { startServerProcess } from "./lib/server-process.ts";

const { values } = parseArgs({
  options: {
    starts: { type: "string", default: "5" },
    seconds: { type: "string", default: "8" },
    concurrency: { type: "string", default: "32" },
  },
});
const STARTS = Number(values.starts);
const SECONDS = Number(values.seconds);
const CONCURRENCY = Number(values.concurrency);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)]!;
};
const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;

/** A server process, timed from spawn until /healthz answers (fresh database, migrations included). */
async function startProcess() {
  const t0 = performance.now();
  const server = await startServerProcess({ AUTH_RATE_LIMIT_PER_MINUTE: "100000" }, { echoStderr: true });
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

async function load(url: string, token: string) {
  const body = JSON.stringify({ query: "{ me { id } }" });
  const headers = { "content-type": "application/json", authorization: `Bearer ${token}` };
  const latencies: number[] = [];
  let errors = 0;
  const end = performance.now() + SECONDS * 1000;
  const worker = async () => {
    while (performance.now() < end) {
      const t = performance.now();
      const res = await fetch(`${url}/graphql`, { method: "POST", headers, body });
      const json = (await res.json()) as { data?: { me?: { id: string } } };
      if (!json.data?.me?.id) errors++;
      latencies.push(performance.now() - t);
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const elapsed = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    rps: latencies.length / elapsed,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    requests: latencies.length,
    errors,
  };
}

const starts: number[] = [];
for (let i = 0; i < STARTS; i++) {
  const server = await startProcess();
  starts.push(server.coldStartMs);
  await server.stop();
}

const server = await startProcess();
try {
  const reg = await server.gql(
    'mutation { register(email: "bench@example.com", password: "password123") { token } }',
  );
  const jwt = reg.register.token as string;
  const key = (await server.gql('mutation { createApiKey(name: "bench") { secret } }', {}, jwt)).createApiKey
    .secret as string;
  await load(server.url, jwt); // warm-up is discarded below
  const withJwt = await load(server.url, jwt);
  const withKey = await load(server.url, key);
  const rssMb = Number((await Bun.$`ps -o rss= -p ${server.pid}`.text()).trim()) / 1024;

  const fmt = (n: number) => n.toFixed(1);
  console.log(`machine: ${navigator.hardwareConcurrency} cores, bun ${Bun.version}`);
  console.log(
    `cold start (spawn -> healthy, fresh db + migrations): median ${fmt(median(starts))} ms over ${STARTS} (${starts.map(fmt).join(", ")})`,
  );
  for (const [name, r] of [
    ["JWT", withJwt],
    ["API key", withKey],
  ] as const) {
    console.log(
      `{ me { id } } with ${name}: ${r.rps.toFixed(0)} req/s, p50 ${fmt(r.p50)} ms, p99 ${fmt(r.p99)} ms, ` +
        `${r.requests} requests, ${r.errors} errors (${CONCURRENCY} connections, ${SECONDS} s)`,
    );
  }
  console.log(`server RSS after load: ${fmt(rssMb)} MB`);
} finally {
  await server.stop();
}
