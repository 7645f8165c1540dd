// Benchmarks several instances against one, side by side in one run: a single server process (the
// in-process bus), then two processes sharing one libSQL file through a real redis-server (REDIS_URL),
// then the same two through the fake Upstash REST server (scripts/fake-upstash.ts) in front of it.
//   - cross-instance fan-out latency: a client announces its presence on A (a GraphQL mutation) and
//     times it until the event arrives on B's `presence` subscription (graphql-ws); with one instance
//     A and B are the same process. Sequential samples; p50/p95, and the ratio to one instance.
//   - commands sent to the shared store: at rest (subscriptions open, nothing happening), and under
//     load (concurrent announcements; each is also one request-limit check). Redis: INFO commandstats
//     without the commands only the platform's scripts run (a script counts once); Upstash: what the
//     REST server received (what Upstash bills).
//   - Yjs update latency: two stock y-websocket clients in one chat room, one on A and one on B (the
//     same process with one instance); a text insert on A timed until B's client has it (it is stored,
//     published, and relayed by B). Sequential samples; p50/p95, and the ratio to one instance. Then
//     the commands sent while that room stays open and idle (awareness renewals, presence refreshes).
//   - branch ownership (two instances only): writeFile, a live-file read and `exec true` to its end
//     (runOutput's RunFinished), sent to the instance owning the branch's live sandbox and sent to the
//     other one, which forwards them to the owner (scripts/lib/ownership-bench.ts). Alternating
//     samples; p50/p95 of each, and the ratio forwarded / owner.
// Bounded in time; everything runs on loopback and stops by itself.
//
//   npm run bench:scale        (defaults: 200 samples, 10 s at rest, 5 s of load at concurrency 8)
//   bun scripts/bench-scale.ts --samples 200 --rest 10 --load 5 --concurrency 8 [--modes redis,upstash]
//     [--yjs-samples 200] [--idle-room 20] [--own-samples 50 (0: skip)] [--own-modes redis,upstash]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createClient } from "graphql-ws";
import { Redis } from "ioredis";
import { WebsocketProvider } from "y-websocket";
import * as Y from "yjs";
import { type FakeUpstash, startFakeUpstash } from "./fake-upstash.ts";
import { OWNERSHIP_OPS, type OwnershipLatencies, ownershipLatencies } from "./lib/ownership-bench.ts";
import { startRedisServer } from "./lib/redis-server.ts";
import { type ServerProcess, startServerProcess } from "./lib/server-process.ts";

const { values } = parseArgs({
  options: {
    samples: { type: "string", default: "200" },
    rest: { type: "string", default: "10" },
    load: { type: "string", default: "5" },
    concurrency: { type: "string", default: "8" },
    modes: { type: "string", default: "single,redis,upstash" },
    "yjs-samples": { type: "string", default: "200" },
    "idle-room": { type: "string", default: "20" },
    "own-samples": { type: "string", default: "50" },
    "own-modes": { type: "string", default: "redis,upstash" },
  },
});
const OWN_SAMPLES = Number(values["own-samples"]);
const OWN_MODES = new Set(values["own-modes"]!.split(",").map((m) => m.trim()));
const YJS_SAMPLES = Number(values["yjs-samples"]);
const IDLE_ROOM_S = Number(values["idle-room"]);
const SAMPLES = Number(values.samples);
const REST_S = Number(values.rest);
const LOAD_S = Number(values.load);
const CONCURRENCY = Number(values.concurrency);

const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))]!;
};
const fmt = (n: number, digits = 2) => n.toFixed(digits);

type Mode = "single" | "redis" | "upstash";

/**
 * Commands the platform runs only inside its Lua scripts (bus/stream-scripts.ts, api/limits.ts,
 * api/run-counters.ts): Redis counts them in INFO commandstats, but they are not sent by a client.
 * (INFO itself is left out too: the benchmark asks it.)
 */
const INNER = new Set([
  "xadd",
  "pexpire",
  "pttl",
  "incr",
  "incrby",
  "time",
  "xrevrange",
  "xrange",
  "exists",
  "publish",
  "zadd",
  "zremrangebyscore",
  "zcard",
]);

interface Result {
  mode: Mode;
  p50: number;
  p95: number;
  restPerSecond: number | null;
  loadPerSecond: number | null;
  loadEventsPerSecond: number;
  yjsP50: number;
  yjsP95: number;
  idleRoomPerSecond: number | null;
  /** Branch ownership: operations sent to the owner and through the other instance (null: not measured). */
  ownership: OwnershipLatencies | null;
}

/** A stock y-websocket client of one room (no BroadcastChannel: clients must sync through servers). */
function roomClient(server: ServerProcess, room: string, token: string) {
  const doc = new Y.Doc();
  const provider = new WebsocketProvider(`${server.url.replace(/^http/, "ws")}/collab`, room, doc, {
    params: { token },
    WebSocketPolyfill: WebSocket as never,
    disableBc: true,
  });
  const synced = new Promise<void>((resolve) => {
    if (provider.synced) resolve();
    else provider.on("sync", (isSynced: boolean) => isSynced && resolve());
  });
  return { doc, provider, synced, text: doc.getText("content") };
}

/** Yjs update latency from a client on A to a client on B, sequential samples (ms). */
async function yjsLatencies(a: ServerProcess, b: ServerProcess, room: string, token: string) {
  const writer = roomClient(a, room, token);
  const reader = roomClient(b, room, token);
  await Promise.all([writer.synced, reader.synced]);
  let waiting: { marker: string; resolve: () => void } | null = null;
  reader.text.observe(() => {
    if (waiting && reader.text.toString().endsWith(waiting.marker)) waiting.resolve();
  });
  const sample = async (i: number) => {
    const marker = `<${i}>`;
    const arrived = new Promise<void>((resolve) => {
      waiting = { marker, resolve };
    });
    const t0 = performance.now();
    writer.text.insert(writer.text.length, marker);
    await Promise.race([
      arrived,
      Bun.sleep(5000).then(() => Promise.reject(new Error(`update ${i} never arrived`))),
    ]);
    return performance.now() - t0;
  };
  for (let i = 0; i < 20; i++) await sample(-1 - i); // warm-up
  const latencies: number[] = [];
  for (let i = 0; i < YJS_SAMPLES; i++) latencies.push(await sample(i));
  const close = () => {
    // The docs too: each one's awareness keeps an interval of its own (the script would never exit).
    for (const client of [writer, reader]) {
      client.provider.destroy();
      client.doc.destroy();
    }
  };
  return { latencies, close };
}

async function gql(server: ServerProcess, query: string, variables: Record<string, unknown>, token?: string) {
  const res = await fetch(`${server.url}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as { data?: any; errors?: unknown };
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body.data;
}

async function run(mode: Mode, redisUrl: string, upstash: FakeUpstash): Promise<Result> {
  const dir = mkdtempSync(join(tmpdir(), `occ-bench-scale-${mode}-`));
  const shared: Record<string, string> =
    mode === "redis"
      ? { REDIS_URL: redisUrl }
      : mode === "upstash"
        ? { UPSTASH_REDIS_REST_URL: upstash.url, UPSTASH_REDIS_REST_TOKEN: upstash.token }
        : {};
  const env = {
    DATABASE_URL: `file:${join(dir, "shared.db")}`,
    // One snapshot store for the instances (one machine), so either can take a branch over.
    SANDBOX_STORE_DIR: join(dir, "store"),
    JWT_SECRET: `bench-scale-${crypto.randomUUID()}`,
    REDIS_KEY_PREFIX: `bench-${mode}:`,
    AUTH_RATE_LIMIT_PER_MINUTE: "100000",
    REQUESTS_PER_MINUTE_PER_USER: "100000000",
    REQUESTS_PER_MINUTE_PER_API_KEY: "100000000",
    ...shared,
  };
  const a = await startServerProcess(env, { echoStderr: true });
  const b = mode === "single" ? a : await startServerProcess(env, { echoStderr: true });
  const stats = new Redis(redisUrl, { protocol: 2 });
  await stats.config("RESETSTAT");
  /** Commands the shared store received so far (a script once, not the commands it runs). */
  const count = async (): Promise<number> => {
    if (mode === "upstash") return upstash.stats().commands;
    if (mode === "single") return 0;
    let total = 0;
    for (const [, name, calls] of (await stats.info("commandstats")).matchAll(
      /cmdstat_([\w|]+):calls=(\d+)/g,
    ))
      if (!INNER.has(name!) && name !== "info") total += Number(calls);
    return total;
  };
  try {
    const { register } = await gql(
      a,
      `mutation { register(email: "bench@example.com", password: "password123") { token } }`,
      {},
    );
    const token = register.token as string;
    const session = (await gql(a, `mutation { createSession(input: { title: "bench" }) { id } }`, {}, token))
      .createSession.id as string;

    // B's subscription; each sample waits for its own announcement (told apart by its file name).
    const waiting = new Map<string, () => void>();
    const ws = createClient({
      url: `${b.url.replace(/^http/, "ws")}/graphql`,
      connectionParams: { authorization: `Bearer ${token}` },
      retryAttempts: 0,
    });
    let events = 0;
    ws.subscribe(
      {
        query: `subscription($s: ID!) { presence(sessionId: $s) { entry { file } } }`,
        variables: { s: session },
      },
      {
        next: (value) => {
          events++;
          const file = (value.data as any)?.presence?.entry?.file as string;
          waiting.get(file)?.();
        },
        error: (error) => console.error("subscription failed", error),
        complete: () => {},
      },
    );
    const announce = (file: string) =>
      gql(
        a,
        `mutation($s: ID!, $f: String) { announcePresence(sessionId: $s, file: $f) { key } }`,
        { s: session, f: file },
        token,
      );
    const sample = async (file: string) => {
      const arrived = new Promise<void>((resolve) => waiting.set(file, resolve));
      const t0 = performance.now();
      await announce(file);
      await Promise.race([
        arrived,
        Bun.sleep(5000).then(() => Promise.reject(new Error(`no event for ${file}`))),
      ]);
      waiting.delete(file);
      return performance.now() - t0;
    };
    // Until the subscription is live (it starts "from now", so early announcements may precede it).
    for (let i = 0; ; i++) {
      const ok = await sample(`warm-${i}`).then(
        () => true,
        () => false,
      );
      if (ok) break;
      if (i > 20) throw new Error("the subscription never went live");
    }
    for (let i = 0; i < 20; i++) await sample(`warm-more-${i}`);
    const latencies: number[] = [];
    for (let i = 0; i < SAMPLES; i++) latencies.push(await sample(`s-${i}`));

    // At rest: subscriptions open, nothing published.
    await Bun.sleep(1000);
    const restStart = await count();
    await Bun.sleep(REST_S * 1000);
    const restPerSecond = mode === "single" ? null : ((await count()) - restStart) / REST_S;

    // Under load: CONCURRENCY announcers for LOAD_S seconds.
    const loadStart = await count();
    const eventsStart = events;
    const end = performance.now() + LOAD_S * 1000;
    let n = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (performance.now() < end) await announce(`load-${n++ % 50}`);
      }),
    );
    await Bun.sleep(500); // the last events arrive
    const elapsed = (performance.now() - t0) / 1000;
    const loadPerSecond = mode === "single" ? null : ((await count()) - loadStart) / elapsed;
    const loadEventsPerSecond = (events - eventsStart) / elapsed;
    await ws.dispose();

    // Yjs: one chat room with a client on A and one on B; then the room open and idle.
    const yjs = await yjsLatencies(a, b, `sessions/${session}/chat`, token);
    await Bun.sleep(1000);
    const idleStart = await count();
    await Bun.sleep(IDLE_ROOM_S * 1000);
    const idleRoomPerSecond = mode === "single" ? null : ((await count()) - idleStart) / IDLE_ROOM_S;
    yjs.close();

    // Branch ownership: A owns the branch (it writes first); B forwards to it.
    const ownership =
      mode !== "single" && OWN_MODES.has(mode) && OWN_SAMPLES > 0
        ? await ownershipLatencies(a, b, token, OWN_SAMPLES)
        : null;
    return {
      mode,
      p50: percentile(latencies, 0.5),
      p95: percentile(latencies, 0.95),
      restPerSecond,
      loadPerSecond,
      loadEventsPerSecond,
      yjsP50: percentile(yjs.latencies, 0.5),
      yjsP95: percentile(yjs.latencies, 0.95),
      idleRoomPerSecond,
      ownership,
    };
  } finally {
    stats.disconnect();
    if (b !== a) await b.stop();
    await a.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const redis = await startRedisServer();
const upstash = await startFakeUpstash({ redisUrl: redis.url });
try {
  const results: Result[] = [];
  const modes = ["single", ...(values.modes!.split(",") as Mode[]).filter((m) => m !== "single")] as Mode[];
  for (const mode of modes) results.push(await run(mode, redis.url, upstash));
  if (process.env.BENCH_COMMANDSTATS) console.log(await redis.cli("INFO", "commandstats"));
  const single = results[0]!;
  console.log(
    `machine: ${navigator.hardwareConcurrency} cores, bun ${Bun.version}; ${SAMPLES} sequential samples; ` +
      `rest ${REST_S} s; load ${LOAD_S} s at concurrency ${CONCURRENCY}`,
  );
  for (const r of results) {
    const where = r.mode === "single" ? "1 instance (in-process bus)" : `2 instances over ${r.mode}`;
    console.log(
      `${where}: announce on A -> event on B p50 ${fmt(r.p50)} ms, p95 ${fmt(r.p95)} ms` +
        (r.mode === "single" ? "" : `; ratio to 1 instance (p50) ${fmt(r.p50 / single.p50)}`),
    );
    if (r.restPerSecond !== null)
      console.log(
        `  commands to ${r.mode}: at rest ${fmt(r.restPerSecond)}/s (2 instances, subscriptions open); ` +
          `under load ${fmt(r.loadPerSecond!, 0)}/s for ${fmt(r.loadEventsPerSecond, 0)} events/s delivered ` +
          `(${fmt(r.loadPerSecond! / Math.max(1, r.loadEventsPerSecond))} per event)`,
      );
    else console.log(`  under load: ${fmt(r.loadEventsPerSecond, 0)} events/s delivered`);
  }
  for (const r of results) {
    const where = r.mode === "single" ? "1 instance" : `2 instances over ${r.mode}`;
    console.log(
      `${where}: Yjs update from a client on A -> client on B p50 ${fmt(r.yjsP50)} ms, p95 ${fmt(r.yjsP95)} ms` +
        (r.mode === "single" ? "" : `; ratio to 1 instance (p50) ${fmt(r.yjsP50 / single.yjsP50)}`),
    );
    if (r.idleRoomPerSecond !== null)
      console.log(
        `  commands to ${r.mode} with that room open and idle (a client on each instance, ${IDLE_ROOM_S} s): ${fmt(r.idleRoomPerSecond)}/s`,
      );
  }
  for (const r of results) {
    if (!r.ownership) continue;
    console.log(
      `2 instances over ${r.mode}, branch ownership (${OWN_SAMPLES} alternating samples each; B forwards to the owner A):`,
    );
    for (const op of OWNERSHIP_OPS) {
      const { owner, forwarded } = r.ownership[op];
      const [o50, f50] = [percentile(owner, 0.5), percentile(forwarded, 0.5)];
      console.log(
        `  ${op}: on the owner p50 ${fmt(o50)} ms, p95 ${fmt(percentile(owner, 0.95))} ms; ` +
          `via the non-owner p50 ${fmt(f50)} ms, p95 ${fmt(percentile(forwarded, 0.95))} ms; ` +
          `ratio forwarded / owner (p50) ${fmt(f50 / o50)}, (p95) ${fmt(percentile(forwarded, 0.95) / percentile(owner, 0.95))}`,
      );
    }
  }
} finally {
  await upstash.stop();
  await redis.stop();
}
