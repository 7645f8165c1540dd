// Benchmarks the collaboration endpoint (/collab/<room>, y-websocket protocol) against the reference
// y-websocket server (@y/websocket-server 0.1.1 under Node, docs in memory) on this machine, one server
// at a time, each as a child process, with the same client harness. Prints, for 100 clients in one room:
//   - latency: one update at a time (the sender rotates over the clients), timed from just before the
//     sender's local change until each of the other clients has decoded and applied it (Y.Map observe);
//     one sample per (update, receiver) pair, after discarded warm-up updates;
//   - throughput: every client is a sender with one update in flight (closed loop: it sends its next
//     update once all other clients have applied its previous one) for a fixed period; the figure is
//     updates fully delivered to all receivers per second (x receivers = applications per second);
//   - memory per idle loaded room, as a marginal cost: first N priming rooms are loaded (they absorb the
//     one-time growth: caches, allocator pools, SQLite page cache), then N more; each room has one client
//     that syncs, sets its awareness, writes one chat message and stays connected and idle. Server VmRSS
//     (/proc/<pid>/status) before and after the second N, each the lowest of the last 2 s of a settle
//     window (12 s: both runtimes give memory back in steps some seconds after activity), divided by N.
// Clients are raw y-protocols clients (sync steps 1/2, updates, awareness), each with its own Y.Doc and
// Awareness, like the stock y-websocket provider except that a client only sends its own awareness
// changes (the stock one re-broadcasts every remote change too). They live in worker threads of this
// process (--workers, default: one per core, at most 4; times are compared on performance.timeOrigin +
// performance.now(), shared through a SharedArrayBuffer). The harness shares the machine with the
// server: the CPU of both is printed for each phase, and a harness near its limit bounds the figures.
//
//   bun scripts/bench-collab.ts
//   bun scripts/bench-collab.ts --clients 100 --updates 300 --seconds 5 --rooms 200 --workers 2
import { readFileSync } from "node:fs";
import { cpus } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { isMainThread, parentPort } from "node:worker_threads";
import * as decoding from "lib0/decoding";
import * as encoding from "lib0/encoding";
import * as awarenessProtocol from "y-protocols/awareness";
import * as syncProtocol from "y-protocols/sync";
import * as Y from "yjs";
import { startServerProcess } from "./lib/server-process.ts";

const MESSAGE_SYNC = 0;
const MESSAGE_AWARENESS = 1;
const MESSAGE_AUTH = 2;
/** Update ids a run may use (sizes the shared arrays). */
const MAX_IDS = 1 << 18;

/** A clock comparable across the threads of this process, in ms. */
const now = () => performance.timeOrigin + performance.now();

// ---- messages between the main thread and the client workers ----

type Request =
  | { op: "init"; sentAt: SharedArrayBuffer; missing: SharedArrayBuffer }
  | { op: "connect"; urls: string[]; first: number; observe: boolean }
  | { op: "post-chat" }
  | { op: "record"; on: boolean }
  | { op: "send"; client: number; id: number }
  | { op: "state" }
  | { op: "close" };

type Reply =
  | { op: "reply"; seq: number; error?: string; samples?: Float64Array; states?: string[] }
  | { op: "done"; id: number; at: number };

// ---- the client (runs in a worker) ----

/** Called when a client applies a remote change of the bench map: the update id. */
type OnApplied = (id: number) => void;

class Client {
  readonly doc = new Y.Doc();
  readonly map = this.doc.getMap<number>("bench");
  readonly awareness = new awarenessProtocol.Awareness(this.doc);
  readonly synced: Promise<void>;
  private readonly ws: WebSocket;

  constructor(
    url: string,
    readonly index: number,
    onApplied: OnApplied | null,
  ) {
    this.ws = new WebSocket(url);
    this.ws.binaryType = "arraybuffer";
    this.synced = new Promise<void>((resolveSynced, reject) => {
      this.ws.onmessage = (event: MessageEvent) => {
        const decoder = decoding.createDecoder(new Uint8Array(event.data as ArrayBuffer));
        const type = decoding.readVarUint(decoder);
        if (type === MESSAGE_SYNC) {
          const reply = encoding.createEncoder();
          encoding.writeVarUint(reply, MESSAGE_SYNC);
          const step = syncProtocol.readSyncMessage(decoder, reply, this.doc, this);
          if (encoding.length(reply) > 1) this.ws.send(encoding.toUint8Array(reply));
          if (step === syncProtocol.messageYjsSyncStep2) resolveSynced();
        } else if (type === MESSAGE_AWARENESS) {
          awarenessProtocol.applyAwarenessUpdate(this.awareness, decoding.readVarUint8Array(decoder), this);
        } else if (type === MESSAGE_AUTH) {
          decoding.readVarUint(decoder);
          reject(new Error(`refused: ${decoding.readVarString(decoder)}`));
        }
      };
      this.ws.onclose = (event) => reject(new Error(`closed before sync: ${event.code} ${event.reason}`));
      this.ws.onerror = () => reject(new Error(`WebSocket error on ${url.replace(/\?.*/, "")}`));
    });
    this.ws.onopen = () => {
      this.send(MESSAGE_SYNC, (e) => syncProtocol.writeSyncStep1(e, this.doc));
      this.awareness.setLocalState({ user: { name: `bench-${index}`, color: "#36c" } });
    };
    this.doc.on("update", (update: Uint8Array, origin: unknown) => {
      if (origin !== this) this.send(MESSAGE_SYNC, (e) => syncProtocol.writeUpdate(e, update));
    });
    this.awareness.on(
      "update",
      (
        { added, updated, removed }: { added: number[]; updated: number[]; removed: number[] },
        origin: unknown,
      ) => {
        if (origin !== "local" || this.ws.readyState !== WebSocket.OPEN) return;
        const changed = [...added, ...updated, ...removed];
        this.send(MESSAGE_AWARENESS, (e) =>
          encoding.writeVarUint8Array(e, awarenessProtocol.encodeAwarenessUpdate(this.awareness, changed)),
        );
      },
    );
    if (onApplied) {
      this.map.observe((event) => {
        if (event.transaction.local) return;
        for (const key of event.keysChanged) onApplied(this.map.get(key)!);
      });
    }
  }

  private send(type: number, write: (e: encoding.Encoder) => void) {
    const encoder = encoding.createEncoder();
    encoding.writeVarUint(encoder, type);
    write(encoder);
    this.ws.send(encoding.toUint8Array(encoder));
  }

  /** Writes one chat message, like a user posting to a session's chat. */
  postChat() {
    this.doc.getArray("messages").push([
      {
        author: { kind: "user", id: null, name: `bench-${this.index}` },
        text: "hello from the memory benchmark",
        at: new Date().toISOString(),
      },
    ]);
  }

  close() {
    this.ws.onclose = null;
    this.ws.close();
    this.awareness.destroy();
    this.doc.destroy();
  }
}

/** A worker: hosts clients, applies what they receive, reports updates it completes. */
function hostClients() {
  const port = parentPort!;
  const clients = new Map<number, Client>();
  let sentAt: Float64Array = new Float64Array(0);
  let missing: Int32Array = new Int32Array(0);
  let recording: number[] | null = null;
  const onApplied = (id: number) => {
    const at = now();
    recording?.push(id, at - sentAt[id]!);
    // The receiver that brings the count to zero reports the update as delivered to all.
    if (Atomics.sub(missing, id, 1) === 1) port.postMessage({ op: "done", id, at } satisfies Reply);
  };
  const handle = async (request: Request): Promise<Omit<Extract<Reply, { op: "reply" }>, "op" | "seq">> => {
    switch (request.op) {
      case "init":
        sentAt = new Float64Array(request.sentAt);
        missing = new Int32Array(request.missing);
        return {};
      case "connect": {
        const batch = request.urls.map(
          (url, i) => new Client(url, request.first + i, request.observe ? onApplied : null),
        );
        for (const c of batch) clients.set(c.index, c);
        await Promise.all(batch.map((c) => c.synced));
        return {};
      }
      case "post-chat":
        for (const c of clients.values()) c.postChat();
        return {};
      case "record": {
        const samples = recording;
        recording = request.on ? [] : null;
        return samples ? { samples: Float64Array.from(samples) } : {};
      }
      case "send": {
        const client = clients.get(request.client)!;
        sentAt[request.id] = now();
        client.map.set(`c${request.client}`, request.id);
        return {};
      }
      case "state":
        return { states: [...clients.values()].map((c) => JSON.stringify(c.map.toJSON())) };
      case "close":
        for (const c of clients.values()) c.close();
        clients.clear();
        return {};
    }
  };
  port.on("message", ({ seq, request }: { seq: number; request: Request }) => {
    handle(request).then(
      (result) => {
        // Sends are fire-and-forget: the "done" report is their answer.
        if (request.op !== "send") port.postMessage({ op: "reply", seq, ...result } satisfies Reply);
      },
      (error: unknown) =>
        port.postMessage({
          op: "reply",
          seq,
          error: error instanceof Error ? error.message : String(error),
        } satisfies Reply),
    );
  });
}

// ---- the main thread ----

/** The client workers, seen from the main thread. */
class Harness {
  readonly sentAt = new Float64Array(new SharedArrayBuffer(MAX_IDS * 8));
  readonly missing = new Int32Array(new SharedArrayBuffer(MAX_IDS * 4));
  private nextId = 0;
  private seq = 0;
  private readonly pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  /** Which worker hosts a (global) client index. */
  private readonly owner = new Map<number, number>();
  private nextClient = 0;
  onDone: (id: number, at: number) => void = () => {};

  private constructor(private readonly workers: Worker[]) {
    for (const worker of workers) {
      worker.onmessage = (event: MessageEvent<Reply>) => {
        const reply = event.data;
        if (reply.op === "done") return this.onDone(reply.id, reply.at);
        const waiting = this.pending.get(reply.seq);
        this.pending.delete(reply.seq);
        if (reply.error) waiting?.reject(new Error(reply.error));
        else waiting?.resolve(reply);
      };
    }
  }

  static async start(count: number): Promise<Harness> {
    const workers = Array.from({ length: count }, () => new Worker(new URL(import.meta.url).href));
    const harness = new Harness(workers);
    await harness.all({
      op: "init",
      sentAt: harness.sentAt.buffer,
      missing: harness.missing.buffer,
    } as Request);
    return harness;
  }

  private request(worker: number, request: Request): Promise<Extract<Reply, { op: "reply" }>> {
    const seq = this.seq++;
    const reply = new Promise<Reply>((resolveReply, reject) =>
      this.pending.set(seq, { resolve: resolveReply, reject }),
    );
    this.workers[worker]!.postMessage({ seq, request });
    return reply as Promise<Extract<Reply, { op: "reply" }>>;
  }

  all(request: Request) {
    return Promise.all(this.workers.map((_, w) => this.request(w, request)));
  }

  /** Connects clients spread evenly over the workers (50 handshakes per worker at a time); their indexes. */
  async connect(urls: string[], observe: boolean): Promise<number[]> {
    const first = this.nextClient;
    this.nextClient += urls.length;
    const per = Math.ceil(urls.length / this.workers.length);
    await Promise.all(
      this.workers.map(async (_, w) => {
        const mine = urls.slice(w * per, (w + 1) * per);
        for (let i = 0; i < mine.length; i += 50) {
          const start = first + w * per + i;
          const batch = mine.slice(i, i + 50);
          for (let k = 0; k < batch.length; k++) this.owner.set(start + k, w);
          await this.request(w, { op: "connect", urls: batch, first: start, observe });
        }
      }),
    );
    return Array.from({ length: urls.length }, (_, i) => first + i);
  }

  /** Sends one update from `client`, to be applied by `receivers` others; its id. */
  send(client: number, receivers: number): number {
    const id = this.nextId++;
    if (id >= MAX_IDS) throw new Error("out of update ids: raise MAX_IDS");
    Atomics.store(this.missing, id, receivers);
    this.workers[this.owner.get(client)!]!.postMessage({ seq: -1, request: { op: "send", client, id } });
    return id;
  }

  /** (update id, latency ms) pairs recorded since record(true). */
  async record(on: boolean): Promise<Float64Array[]> {
    const replies = await this.all({ op: "record", on });
    return replies.flatMap((r) => (r.samples ? [r.samples] : []));
  }

  async states(): Promise<string[]> {
    return (await this.all({ op: "state" })).flatMap((r) => r.states ?? []);
  }

  async closeClients() {
    await this.all({ op: "close" });
  }

  terminate() {
    for (const worker of this.workers) worker.terminate();
  }
}

const percentile = (sorted: ArrayLike<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;

function rssKb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1] ?? Number.NaN);
}

/** CPU seconds (user + system) a process has used so far; clock ticks assumed at 100 Hz. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

interface Cpu {
  /** % of one core (all threads of this process). */
  harness: number;
  /** % of one core. */
  server: number;
  serverSeconds: number;
}

function cpuMeter(serverPid: number): () => Cpu {
  const t0 = performance.now();
  const self0 = process.cpuUsage();
  const server0 = cpuSeconds(serverPid);
  return () => {
    const wall = (performance.now() - t0) / 1000;
    const self = process.cpuUsage(self0);
    const serverSeconds = cpuSeconds(serverPid) - server0;
    return {
      harness: ((self.user + self.system) / 1e6 / wall) * 100,
      server: (serverSeconds / wall) * 100,
      serverSeconds,
    };
  };
}

interface Target {
  name: string;
  pid: number;
  /** The main room (all clients), then ROOMS priming rooms and ROOMS measured rooms (one client each). */
  urls: { main: string; prime: string[]; rooms: string[] };
  stop(): Promise<void>;
}

interface Figures {
  memory: { perRoomKb: number; beforeKb: number; afterKb: number; cpu: Cpu };
  latency: {
    p50: number;
    p95: number;
    p99: number;
    samples: number;
    /** Per update: the first and the last receiver. */
    first: { p50: number; p95: number };
    last: { p50: number; p95: number };
    cpu: Cpu;
  };
  throughput: {
    updatesPerSecond: number;
    applicationsPerSecond: number;
    p50: number;
    p95: number;
    /** Server CPU per update completed during the measured window (fan-out included). */
    serverCpuPerUpdateUs: number;
    cpu: Cpu;
  };
  converged: boolean;
}

async function main() {
  const { values } = parseArgs({
    options: {
      clients: { type: "string", default: "100" },
      updates: { type: "string", default: "300" },
      warmup: { type: "string", default: "100" },
      seconds: { type: "string", default: "5" },
      rooms: { type: "string", default: "200" },
      settle: { type: "string", default: "12" },
      workers: { type: "string", default: String(Math.min(4, cpus().length)) },
    },
  });
  const CLIENTS = Number(values.clients);
  const UPDATES = Number(values.updates);
  const WARMUP = Number(values.warmup);
  const SECONDS = Number(values.seconds);
  const ROOMS = Number(values.rooms);
  const WORKERS = Number(values.workers);
  const SETTLE_MS = Number(values.settle) * 1000;
  const ROOT = resolve(import.meta.dir, "..");
  const REFERENCE = resolve(ROOT, "node_modules/@y/websocket-server/src/server.js");

  async function startOurs(): Promise<Target> {
    const server = await startServerProcess(
      // One bench user opens every room and socket: its quotas and request rate must not be what is measured.
      {
        AUTH_RATE_LIMIT_PER_MINUTE: "100000",
        QUOTA_USER_SESSIONS: "100000",
        REQUESTS_PER_MINUTE_PER_USER: "1000000",
        COLLAB_MAX_SOCKETS_PER_USER: "100000",
      },
      { echoStderr: true },
    );
    try {
      const token = (
        await server.gql(
          'mutation { register(email: "bench@example.com", password: "password123") { token } }',
        )
      ).register.token as string;
      const ids: string[] = [];
      const total = 1 + 2 * ROOMS;
      for (let i = 0; i < total; i += 25) {
        const batch = await Promise.all(
          Array.from({ length: Math.min(25, total - i) }, () =>
            server.gql('mutation { createSession(input: { title: "bench" }) { id } }', {}, token),
          ),
        );
        ids.push(...batch.map((d) => d.createSession.id as string));
      }
      const url = (id: string) =>
        `${server.url.replace(/^http/, "ws")}/collab/sessions/${id}/chat?token=${encodeURIComponent(token)}`;
      return {
        name: "ours",
        pid: server.pid,
        urls: {
          main: url(ids[0]!),
          prime: ids.slice(1, 1 + ROOMS).map(url),
          rooms: ids.slice(1 + ROOMS).map(url),
        },
        stop: () => server.stop(),
      };
    } catch (error) {
      await server.stop();
      throw error;
    }
  }

  async function startReference(): Promise<Target> {
    const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = probe.port;
    probe.stop(true);
    const proc = Bun.spawn(["node", REFERENCE], {
      cwd: ROOT,
      env: { ...process.env, HOST: "127.0.0.1", PORT: String(port) },
      stdout: "pipe",
      stderr: "inherit",
    });
    process.on("exit", () => proc.kill("SIGKILL"));
    const stop = async () => {
      proc.kill("SIGTERM");
      await proc.exited;
    };
    try {
      const reader = proc.stdout.getReader();
      let out = "";
      while (!out.includes("running at")) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`reference server exited: ${out}`);
        out += new TextDecoder().decode(value);
      }
      reader.releaseLock();
    } catch (error) {
      await stop();
      throw error;
    }
    const url = (room: string) => `ws://127.0.0.1:${port}/${room}`;
    return {
      name: "reference",
      pid: proc.pid,
      urls: {
        main: url("bench-main"),
        prime: Array.from({ length: ROOMS }, (_, i) => url(`bench-prime-${i}`)),
        rooms: Array.from({ length: ROOMS }, (_, i) => url(`bench-room-${i}`)),
      },
      stop,
    };
  }

  /** VmRSS once the server has settled: the lowest sample of the last 2 s of the settle window. */
  async function settledRssKb(pid: number): Promise<number> {
    const samples: number[] = [];
    const end = performance.now() + SETTLE_MS;
    while (performance.now() < end) {
      samples.push(rssKb(pid));
      await Bun.sleep(500);
    }
    return Math.min(...samples.slice(-4));
  }

  async function memoryPhase(harness: Harness, target: Target): Promise<Figures["memory"]> {
    const load = async (urls: string[]) => {
      await harness.connect(urls, false);
      await harness.all({ op: "post-chat" });
    };
    await load(target.urls.prime);
    const beforeKb = await settledRssKb(target.pid);
    const meter = cpuMeter(target.pid);
    await load(target.urls.rooms);
    const afterKb = await settledRssKb(target.pid);
    const cpu = meter();
    await harness.closeClients();
    return { perRoomKb: (afterKb - beforeKb) / ROOMS, beforeKb, afterKb, cpu };
  }

  async function roomPhases(harness: Harness, target: Target): Promise<Omit<Figures, "memory">> {
    const RECEIVERS = CLIENTS - 1;
    const clients = await harness.connect(
      Array.from({ length: CLIENTS }, () => target.urls.main),
      true,
    );
    await Bun.sleep(1000); // the awareness of all joins settles

    // Latency: updates one at a time (warm-up first, discarded).
    const oneAtATime = async (count: number) => {
      for (let k = 0; k < count; k++) {
        await new Promise<void>((resolveDone, reject) => {
          const timer = setTimeout(() => reject(new Error("an update was not delivered in 10 s")), 10_000);
          harness.onDone = () => {
            clearTimeout(timer);
            resolveDone();
          };
          harness.send(clients[k % CLIENTS]!, RECEIVERS);
        });
      }
    };
    await oneAtATime(WARMUP);
    await Bun.sleep(200);
    const latencyMeter = cpuMeter(target.pid);
    await harness.record(true);
    await oneAtATime(UPDATES);
    const recorded = await harness.record(false);
    const latencyCpu = latencyMeter();
    const all: number[] = [];
    const firstOf = new Map<number, number>();
    const lastOf = new Map<number, number>();
    for (const pairs of recorded) {
      for (let i = 0; i < pairs.length; i += 2) {
        const id = pairs[i]!;
        const ms = pairs[i + 1]!;
        all.push(ms);
        firstOf.set(id, Math.min(firstOf.get(id) ?? Number.POSITIVE_INFINITY, ms));
        lastOf.set(id, Math.max(lastOf.get(id) ?? 0, ms));
      }
    }
    const sorted = (xs: Iterable<number>) => Float64Array.from(xs).sort();
    const samples = sorted(all);
    const firsts = sorted(firstOf.values());
    const lasts = sorted(lastOf.values());

    // Throughput: every client keeps one update in flight (closed loop).
    const closedLoop = async (ms: number) => {
      const senderOf = new Map<number, number>();
      const underLoad: number[] = [];
      let delivered = 0;
      let completed = 0;
      let drained: () => void = () => {};
      const t0 = now();
      const end = t0 + ms;
      harness.onDone = (id, at) => {
        const sender = senderOf.get(id)!;
        senderOf.delete(id);
        completed++;
        if (at <= end) {
          delivered++;
          underLoad.push(at - harness.sentAt[id]!);
        }
        if (now() < end) senderOf.set(harness.send(sender, RECEIVERS), sender);
        else if (senderOf.size === 0) drained();
      };
      for (const c of clients) senderOf.set(harness.send(c, RECEIVERS), c);
      await Bun.sleep(ms);
      const elapsed = (now() - t0) / 1000;
      await new Promise<void>((resolveDrained, reject) => {
        if (senderOf.size === 0) return resolveDrained();
        drained = resolveDrained;
        setTimeout(() => reject(new Error("updates still in flight 10 s after the run")), 10_000);
      });
      return { delivered, completed, elapsed, underLoad: sorted(underLoad) };
    };
    await closedLoop(1000); // warm-up
    await Bun.sleep(500);
    const throughputMeter = cpuMeter(target.pid);
    const run = await closedLoop(SECONDS * 1000);
    const throughputCpu = throughputMeter();

    await Bun.sleep(300);
    const states = await harness.states();
    const converged = states.length === CLIENTS && states.every((s) => s === states[0]);
    await harness.closeClients();
    return {
      latency: {
        p50: percentile(samples, 0.5),
        p95: percentile(samples, 0.95),
        p99: percentile(samples, 0.99),
        samples: samples.length,
        first: { p50: percentile(firsts, 0.5), p95: percentile(firsts, 0.95) },
        last: { p50: percentile(lasts, 0.5), p95: percentile(lasts, 0.95) },
        cpu: latencyCpu,
      },
      throughput: {
        updatesPerSecond: run.delivered / run.elapsed,
        applicationsPerSecond: (run.delivered * RECEIVERS) / run.elapsed,
        p50: percentile(run.underLoad, 0.5),
        p95: percentile(run.underLoad, 0.95),
        serverCpuPerUpdateUs: (throughputCpu.serverSeconds / run.completed) * 1e6,
        cpu: throughputCpu,
      },
      converged,
    };
  }

  let running: Target | null = null;
  let harness: Harness | null = null;
  const stopRunning = async () => {
    const target = running;
    running = null;
    await target?.stop();
  };
  process.on("SIGINT", () => {
    process.stderr.write("\ninterrupted: stopping the server\n");
    harness?.terminate();
    void stopRunning().finally(() => process.exit(130));
  });

  const measure = async (start: () => Promise<Target>): Promise<Figures> => {
    const target = await start();
    running = target;
    try {
      process.stderr.write(`${target.name}: memory (${ROOMS} + ${ROOMS} idle rooms)...\n`);
      const memory = await memoryPhase(harness!, target);
      process.stderr.write(`${target.name}: latency and throughput (${CLIENTS} clients, one room)...\n`);
      return { memory, ...(await roomPhases(harness!, target)) };
    } finally {
      await stopRunning();
    }
  };

  const wallStart = performance.now();
  let ours: Figures;
  let reference: Figures;
  try {
    // One harness per server, so neither inherits the other's heap.
    harness = await Harness.start(WORKERS);
    ours = await measure(startOurs);
    harness.terminate();
    harness = await Harness.start(WORKERS);
    reference = await measure(startReference);
  } finally {
    harness?.terminate();
    await stopRunning();
  }

  const f0 = (n: number) => n.toFixed(0);
  const f1 = (n: number) => n.toFixed(1);
  const f2 = (n: number) => n.toFixed(2);
  const nodeVersion = (await Bun.$`node --version`.text()).trim();
  console.log(
    `machine: ${cpus().length} cores (${cpus()[0]?.model ?? "unknown"}), bun ${Bun.version}, node ${nodeVersion}`,
  );
  console.log(
    "ours: the real server process (fresh data dir, SQLite update log); reference: @y/websocket-server 0.1.1 on node, docs in memory",
  );
  console.log(
    `harness: ${CLIENTS} clients in one room over ${WORKERS} worker thread(s) of this process, one Y.Doc + Awareness each; ` +
      `latency: ${UPDATES} updates one at a time x ${CLIENTS - 1} receivers (after ${WARMUP} warm-up); ` +
      `throughput: ${CLIENTS} senders with one update in flight each, ${SECONDS} s`,
  );
  const verdict = (ok: boolean) => (ok ? "met" : "MISSED");
  const ratio = (a: number, b: number) => f2(a / b);
  const rows: string[][] = [
    ["figure", "ours", "reference", "ours/ref", "target (ours)"],
    [
      "latency p50 (ms)",
      f2(ours.latency.p50),
      f2(reference.latency.p50),
      ratio(ours.latency.p50, reference.latency.p50),
      "",
    ],
    [
      "latency p95 (ms)",
      f2(ours.latency.p95),
      f2(reference.latency.p95),
      ratio(ours.latency.p95, reference.latency.p95),
      `< 10 ms: ${verdict(ours.latency.p95 < 10)}`,
    ],
    [
      "latency p99 (ms)",
      f2(ours.latency.p99),
      f2(reference.latency.p99),
      ratio(ours.latency.p99, reference.latency.p99),
      "",
    ],
    [
      "  first receiver per update p50/p95",
      `${f2(ours.latency.first.p50)}/${f2(ours.latency.first.p95)}`,
      `${f2(reference.latency.first.p50)}/${f2(reference.latency.first.p95)}`,
      ratio(ours.latency.first.p50, reference.latency.first.p50),
      "",
    ],
    [
      "  last receiver per update p50/p95",
      `${f2(ours.latency.last.p50)}/${f2(ours.latency.last.p95)}`,
      `${f2(reference.latency.last.p50)}/${f2(reference.latency.last.p95)}`,
      ratio(ours.latency.last.p50, reference.latency.last.p50),
      "",
    ],
    [
      "throughput (updates/s applied by all)",
      f0(ours.throughput.updatesPerSecond),
      f0(reference.throughput.updatesPerSecond),
      ratio(ours.throughput.updatesPerSecond, reference.throughput.updatesPerSecond),
      `>= reference: ${verdict(ours.throughput.updatesPerSecond >= reference.throughput.updatesPerSecond)}`,
    ],
    [
      "  = applications/s (x receivers)",
      f0(ours.throughput.applicationsPerSecond),
      f0(reference.throughput.applicationsPerSecond),
      "",
      "",
    ],
    [
      "  latency under load p50/p95 (ms)",
      `${f1(ours.throughput.p50)}/${f1(ours.throughput.p95)}`,
      `${f1(reference.throughput.p50)}/${f1(reference.throughput.p95)}`,
      "",
      "",
    ],
    [
      "  server CPU per update (us)",
      f0(ours.throughput.serverCpuPerUpdateUs),
      f0(reference.throughput.serverCpuPerUpdateUs),
      ratio(ours.throughput.serverCpuPerUpdateUs, reference.throughput.serverCpuPerUpdateUs),
      "",
    ],
    [
      `memory per idle room (kB, ${ROOMS} after ${ROOMS})`,
      f1(ours.memory.perRoomKb),
      f1(reference.memory.perRoomKb),
      ratio(ours.memory.perRoomKb, reference.memory.perRoomKb),
      `<= 100 kB: ${verdict(ours.memory.perRoomKb <= 100)}`,
    ],
    [
      "  server RSS before -> after (MB)",
      `${f1(ours.memory.beforeKb / 1024)} -> ${f1(ours.memory.afterKb / 1024)}`,
      `${f1(reference.memory.beforeKb / 1024)} -> ${f1(reference.memory.afterKb / 1024)}`,
      "",
      "",
    ],
  ];
  for (const phase of ["latency", "throughput", "memory"] as const) {
    rows.push([
      `  CPU % harness/server (${phase})`,
      `${f0(ours[phase].cpu.harness)}/${f0(ours[phase].cpu.server)}`,
      `${f0(reference[phase].cpu.harness)}/${f0(reference[phase].cpu.server)}`,
      "",
      "",
    ]);
  }
  rows.push(["all clients converged", String(ours.converged), String(reference.converged), "", ""]);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const row of rows)
    console.log(
      row
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join("  ")
        .trimEnd(),
    );
  console.log(
    `CPU in % of one core (harness: all its threads). The harness runs beside the server on ${cpus().length} cores: ` +
      `when its CPU nears ${WORKERS * 100}% the figures above are bounded by the clients, not the server. ` +
      `The reference also echoes each update to its sender. Total ${f0((performance.now() - wallStart) / 1000)} s.`,
  );
}

if (isMainThread) await main();
else hostClients();
