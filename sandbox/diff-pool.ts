// A few worker threads for CPU-heavy work the event loop must not do (diff patches), so one costly
// request cannot stall every other request of the instance. Two bounds: the queue (a full one
// refuses at once with BUSY, which callers turn into UNAVAILABLE) and a hard deadline per job (the
// worker running an overdue job is terminated and replaced, whatever the job is stuck in).
//
// node:worker_threads, which Bun and Deno both provide. Hand-written rather than piscina or tinypool:
// both are built and tested for Node, neither has a per-job deadline of its own, and this is small.
import { parentPort, Worker } from "node:worker_threads";
import type { PatchJob } from "./diff-patch.ts";

export type WorkerPoolErrorCode =
  /** The queue is full: retry shortly. */
  | "BUSY"
  /** The job ran past its deadline; its worker was terminated. */
  | "DEADLINE"
  /** The worker died under the job (out of memory, a native crash). */
  | "CRASHED"
  /** The job itself threw (a bug). */
  | "FAILED"
  /** The pool was closed (shutdown). */
  | "CLOSED";

export class WorkerPoolError extends Error {
  constructor(
    readonly code: WorkerPoolErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "WorkerPoolError";
  }
}

export interface WorkerPoolOptions {
  /** Worker threads at most (started on demand). */
  workers: number;
  /** Jobs that may wait for a free worker; more are refused with BUSY. */
  maxQueue: number;
  /** Longest a job may run on its worker. */
  deadlineMs: number;
}

interface Job<In, Out> {
  input: In;
  resolve: (output: Out) => void;
  reject: (error: Error) => void;
}

interface Slot<In, Out> {
  worker: Worker;
  job?: Job<In, Out>;
  jobId?: number;
  timer?: ReturnType<typeof setTimeout>;
  dead?: boolean;
}

type Reply<Out> = { id: number; ok: true; output: Out } | { id: number; ok: false; message: string };

export class WorkerPool<In, Out> {
  private readonly slots: Slot<In, Out>[] = [];
  private readonly queue: Job<In, Out>[] = [];
  private nextId = 0;
  private closed = false;
  /** Workers terminated for overrunning their deadline or lost to a crash (operators, tests). */
  replaced = 0;

  constructor(
    private readonly script: URL,
    private readonly options: WorkerPoolOptions,
  ) {}

  get stats() {
    return {
      workers: this.slots.length,
      busy: this.slots.filter((s) => s.job).length,
      queued: this.queue.length,
      replaced: this.replaced,
    };
  }

  run(input: In): Promise<Out> {
    if (this.closed) return Promise.reject(new WorkerPoolError("CLOSED", "The worker pool is closed"));
    const hasRoom = this.slots.length < this.options.workers || this.slots.some((s) => !s.job);
    if (!hasRoom && this.queue.length >= this.options.maxQueue)
      return Promise.reject(new WorkerPoolError("BUSY", "Every worker is busy and the queue is full"));
    return new Promise<Out>((resolve, reject) => {
      this.queue.push({ input, resolve, reject });
      this.pump();
    });
  }

  /** Refuses queued and running jobs (CLOSED) and terminates every worker. */
  async close(): Promise<void> {
    this.closed = true;
    for (const job of this.queue.splice(0))
      job.reject(new WorkerPoolError("CLOSED", "The worker pool closed"));
    await Promise.all(
      [...this.slots].map((slot) =>
        this.retire(slot, new WorkerPoolError("CLOSED", "The worker pool closed")),
      ),
    );
  }

  private pump(): void {
    while (this.queue.length > 0 && !this.closed) {
      let slot = this.slots.find((s) => !s.job);
      if (!slot) {
        if (this.slots.length >= this.options.workers) return;
        slot = this.spawn();
      }
      this.dispatch(slot, this.queue.shift()!);
    }
  }

  private dispatch(slot: Slot<In, Out>, job: Job<In, Out>): void {
    const id = ++this.nextId;
    slot.job = job;
    slot.jobId = id;
    slot.timer = setTimeout(() => {
      this.replaced++;
      void this.retire(
        slot,
        new WorkerPoolError("DEADLINE", `The job ran past its ${this.options.deadlineMs} ms deadline`),
      );
    }, this.options.deadlineMs);
    slot.worker.postMessage({ id, input: job.input });
  }

  private spawn(): Slot<In, Out> {
    const worker = new Worker(this.script);
    // An idle pool must not keep the process alive; a running job's deadline timer does.
    worker.unref();
    const slot: Slot<In, Out> = { worker };
    worker.on("message", (reply: Reply<Out>) => {
      if (slot.dead || !slot.job || reply.id !== slot.jobId) return;
      const job = slot.job;
      clearTimeout(slot.timer);
      slot.job = undefined;
      if (reply.ok) job.resolve(reply.output);
      else job.reject(new WorkerPoolError("FAILED", reply.message));
      this.pump();
    });
    const lost = (error?: unknown) => {
      if (slot.dead) return;
      this.replaced++;
      const detail = error instanceof Error ? `: ${error.message}` : "";
      void this.retire(slot, new WorkerPoolError("CRASHED", `The worker stopped${detail}`));
    };
    worker.on("error", lost);
    worker.on("exit", () => lost());
    this.slots.push(slot);
    return slot;
  }

  /** Takes a worker out of the pool for good, failing its job; the next job starts a fresh one. */
  private async retire(slot: Slot<In, Out>, error: WorkerPoolError): Promise<void> {
    if (slot.dead) return;
    slot.dead = true;
    clearTimeout(slot.timer);
    this.slots.splice(this.slots.indexOf(slot), 1);
    const job = slot.job;
    slot.job = undefined;
    job?.reject(error);
    this.pump();
    await slot.worker.terminate().catch(() => undefined);
  }
}

/** The worker side: answers each job with `handle`'s result (or its error's message). */
export function serveJobs<In, Out>(handle: (input: In) => Out): void {
  const port = parentPort;
  if (!port) throw new Error("serveJobs runs in a worker thread");
  port.on("message", ({ id, input }: { id: number; input: In }) => {
    let reply: Reply<Out>;
    try {
      reply = { id, ok: true, output: handle(input) };
    } catch (error) {
      reply = { id, ok: false, message: error instanceof Error ? error.message : String(error) };
    }
    port.postMessage(reply);
  });
}

export interface DiffPoolOptions {
  workers: number;
  /** Jobs waiting for a worker; default 8 per worker. */
  maxQueue?: number;
  /** Hard deadline per patch; default 5 s (jsdiff's own time limit stops most jobs far sooner). */
  deadlineMs?: number;
}

export type DiffPool = WorkerPool<PatchJob, string | null>;

/** The pool that computes diff patches (sandbox/diff-worker.ts); created once per server. */
export function createDiffPool(options: DiffPoolOptions): DiffPool {
  return new WorkerPool(new URL("./diff-worker.ts", import.meta.url), {
    workers: options.workers,
    maxQueue: options.maxQueue ?? options.workers * 8,
    deadlineMs: options.deadlineMs ?? 5000,
  });
}
