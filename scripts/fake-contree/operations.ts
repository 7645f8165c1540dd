// Operations: the lifecycle PENDING → ASSIGNED → EXECUTING → SUCCESS | FAILED | CANCELLED of
// spawns and imports (with the configured delays and concurrency limits), turning a finished run's
// working tree into an image, cancellation, subprocesses of a live VM, and the wire shapes
// (OperationSummary, OperationResponse).
//
// Choices where the real service is undocumented: over instance_max_concurrency the spawn is either
// refused with 429 or waits in PENDING (`overConcurrency`); the layer-size cap is checked when the
// run ends (a `size_cap` event, then FAILED without an image); list order is creation order. Where
// the fake has no sandbox (no usable bubblewrap) a spawn ends FAILED once assigned, the reason as
// its error, as a VM that cannot boot would.
import { randomUUID } from "node:crypto";
import { chown, copyFile, chmod as fsChmod, lstat, mkdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Clock } from "./clock.ts";
import { parseTimeParam } from "./clock.ts";
import { badRequest, conflict, notFound, tooEarly, tooMany } from "./errors.ts";
import { EventLog } from "./events.ts";
import type { ImageStore } from "./images.ts";
import type { ExecSpec, Limits, SpawnSpec } from "./spawn.ts";
import { copyTree, diffTrees, removeMountStubs, removeTree, resolveInRoot, treeSize } from "./tree.ts";
import { DEFAULT_PATH, type ExecRequest, type Sandbox, signalNumber, Vm, type VmProcess } from "./vm.ts";
import { queryInt } from "./wire.ts";

export type OperationStatus = "PENDING" | "ASSIGNED" | "EXECUTING" | "SUCCESS" | "FAILED" | "CANCELLED";
export type OperationKind = "instance" | "image_import";
const STATUSES: OperationStatus[] = ["PENDING", "ASSIGNED", "EXECUTING", "SUCCESS", "FAILED", "CANCELLED"];
const TERMINAL = new Set<OperationStatus>(["SUCCESS", "FAILED", "CANCELLED"]);

export interface Operation {
  uuid: string;
  kind: OperationKind;
  status: OperationStatus;
  error: string | null;
  createdMs: number;
  finishedMs: number | null;
  log: EventLog | null;
  imageUuid: string | null;
  resultImage: string | null;
  resultTag: string | null;
  imageSize: number | null;
  /** The request as the client sent it (instance) or the import metadata. */
  metadata: Record<string, any>;
  spawn: SpawnSpec | null;
  importUrl: string | null;
  vm: Vm | null;
  mainSpawned: boolean;
  /** The main process has ended: the VM is shutting down, no new subprocesses. */
  finishing: boolean;
  nextSpid: number;
  abort: AbortController;
  /** Set while waiting in PENDING for a free slot (queue mode). */
  start: (() => void) | null;
  settled: Promise<void>;
  settle: () => void;
}

export interface OperationsConfig {
  clock: Clock;
  images: ImageStore;
  workDir: string;
  /** No bwrap: every spawn ends FAILED with the reason once assigned (the VM "cannot boot"). */
  sandbox: Sandbox;
  limits: Limits;
  delays: { pendingMs: number; assignedMs: number; importMs: number };
  overConcurrency: "429" | "queue";
  filePath(file: SpawnSpec["files"][number]["file"]): string;
}

function delay(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** `docker://registry/name[:tag][@digest]` (or oci://); null when it cannot be a registry reference. */
export function parseRegistryUrl(url: string): string | null {
  const m =
    /^(docker|oci):\/\/([a-z0-9.-]+(?::\d+)?)\/([a-z0-9]+(?:[._/-][a-z0-9]+)*)(:[\w][\w.-]{0,127})?(@sha256:[0-9a-f]{64})?$/.exec(
      url.trim(),
    );
  if (!m) return null;
  return `${m[1]}://${m[2]}/${m[3]}${m[4] ?? ":latest"}${m[5] ?? ""}`;
}

const sameEnv = (a: Record<string, string>, b: Record<string, string>) =>
  Object.keys(a).length === Object.keys(b).length && Object.entries(a).every(([k, v]) => b[k] === v);

export class Operations {
  private ops = new Map<string, Operation>();
  private order: string[] = [];
  private queue: Operation[] = [];
  private importCache = new Map<string, string>();
  private closed = false;

  constructor(private config: OperationsConfig) {}

  get(id: string): Operation {
    const op = this.ops.get(id.toLowerCase());
    if (!op) throw notFound(`operation not found: ${id}`);
    return op;
  }

  isTerminal(op: Operation): boolean {
    return TERMINAL.has(op.status);
  }

  stats() {
    let running_instances = 0;
    let running_imports = 0;
    for (const op of this.ops.values()) {
      if (op.status !== "ASSIGNED" && op.status !== "EXECUTING") continue;
      if (op.kind === "instance") running_instances++;
      else running_imports++;
    }
    return { running_instances, running_imports };
  }

  private newOperation(kind: OperationKind, metadata: Record<string, any>): Operation {
    let settle = () => {};
    const settled = new Promise<void>((resolve) => {
      settle = resolve;
    });
    const op: Operation = {
      uuid: randomUUID(),
      kind,
      status: "PENDING",
      error: null,
      createdMs: this.config.clock.now(),
      finishedMs: null,
      log: null,
      imageUuid: null,
      resultImage: null,
      resultTag: null,
      imageSize: null,
      metadata,
      spawn: null,
      importUrl: null,
      vm: null,
      mainSpawned: false,
      finishing: false,
      nextSpid: 2,
      abort: new AbortController(),
      start: null,
      settled,
      settle,
    };
    this.ops.set(op.uuid, op);
    this.order.push(op.uuid);
    return op;
  }

  // ---- concurrency ----

  private limitFor(kind: OperationKind): number {
    return kind === "instance"
      ? this.config.limits.instance_max_concurrency
      : this.config.limits.images_import_max_concurrency;
  }

  private runningOf(kind: OperationKind): number {
    const stats = this.stats();
    return kind === "instance" ? stats.running_instances : stats.running_imports;
  }

  private activeOf(kind: OperationKind): number {
    let n = 0;
    for (const op of this.ops.values()) if (op.kind === kind && !TERMINAL.has(op.status)) n++;
    return n;
  }

  private admit(kind: OperationKind): void {
    if (this.config.overConcurrency === "429" && this.activeOf(kind) >= this.limitFor(kind)) {
      const what = kind === "instance" ? "instances" : "imports";
      throw tooMany(`too many concurrent ${what} (limit ${this.limitFor(kind)})`);
    }
  }

  /** After the pending delay: start now, or wait in PENDING for a free slot (queue mode). */
  private whenSlotFree(op: Operation, status: OperationStatus): Promise<void> {
    return new Promise((resolve) => {
      // The status changes synchronously so that the slot is taken before anyone else looks.
      const start = () => {
        op.start = null;
        if (!op.abort.signal.aborted) op.status = status;
        resolve();
      };
      if (this.runningOf(op.kind) < this.limitFor(op.kind)) start();
      else {
        op.start = start;
        this.queue.push(op);
      }
    });
  }

  private drain() {
    for (const op of [...this.queue]) {
      if (TERMINAL.has(op.status)) {
        this.queue.splice(this.queue.indexOf(op), 1);
        continue;
      }
      if (this.runningOf(op.kind) >= this.limitFor(op.kind)) continue;
      this.queue.splice(this.queue.indexOf(op), 1);
      op.start?.();
    }
  }

  // ---- instances ----

  spawnInstance(spec: SpawnSpec, echo: Record<string, any>): Operation {
    if (this.closed) throw new Error("fake ConTree is closing");
    this.admit("instance");
    const op = this.newOperation("instance", echo);
    op.spawn = spec;
    op.imageUuid = spec.image.uuid;
    void this.runInstance(op).catch((error) => this.fail(op, `internal error: ${String(error)}`));
    return op;
  }

  private async runInstance(op: Operation) {
    const { delays } = this.config;
    if (!(await delay(delays.pendingMs, op.abort.signal))) return this.cancelled(op);
    await this.whenSlotFree(op, "ASSIGNED");
    if (op.abort.signal.aborted) return this.cancelled(op);
    op.log = new EventLog(this.config.clock);
    if (!(await delay(delays.assignedMs, op.abort.signal))) return this.cancelled(op);
    const { bwrap, unavailable } = this.config.sandbox;
    if (bwrap === null) return this.fail(op, `cannot start the instance: ${unavailable}`);
    op.status = "EXECUTING";
    const spec = op.spawn!;
    const work = join(this.config.workDir, op.uuid);
    const imageDir = this.config.images.dirOf(spec.image.uuid);
    try {
      await copyTree(imageDir, work);
      for (const injection of spec.files) await this.inject(work, injection);
    } catch (error) {
      await removeTree(work);
      return this.fail(op, `cannot prepare the instance: ${error instanceof Error ? error.message : error}`);
    }
    const log = op.log;
    const vm = new Vm(work, { bwrap, network: spec.network, hostname: spec.hostname }, (t, s, d) =>
      log.emit(t, s, d),
    );
    op.vm = vm;
    log.emit("init", 0, {
      started_at: this.config.clock.iso(),
      runtime_path: "/run/contreeinitd",
      verbose: false,
      init_pid: 1,
      hostname: spec.hostname,
      kernel: "fake-contree",
      machine: process.arch === "x64" ? "x86_64" : process.arch,
    });
    if (op.abort.signal.aborted) {
      await removeTree(work);
      return this.cancelled(op);
    }
    let main: VmProcess;
    try {
      main = await vm.start(1, this.execRequest(spec, spec, spec.timeout));
    } catch (error) {
      await removeTree(work);
      return this.fail(op, `cannot start the command: ${error instanceof Error ? error.message : error}`);
    }
    op.mainSpawned = true;
    if (op.abort.signal.aborted) main.kill(9);
    await main.done;
    op.finishing = true;
    await vm.killAll();
    await this.saveResult(op, work, imageDir);
  }

  private async inject(work: string, injection: SpawnSpec["files"][number]) {
    const target = await resolveInRoot(work, injection.path, { allowMissing: true, followLast: false });
    const existing = await lstat(target.host).catch(() => null);
    if (existing?.isDirectory()) throw new Error(`${injection.path} is a directory`);
    if (existing) await rm(target.host, { force: true });
    await mkdir(dirname(target.host), { recursive: true });
    await copyFile(this.config.filePath(injection.file), target.host);
    await fsChmod(target.host, injection.mode);
    // Ownership can only be set when the fake runs as root.
    if (process.getuid?.() === 0) await chown(target.host, injection.uid, injection.gid);
  }

  /** The process environment: base, then the image's preserved env, then the VM's, then the process's. */
  private execRequest(spec: SpawnSpec, exec: ExecSpec, timeout: number | null): ExecRequest {
    const env = {
      PATH: DEFAULT_PATH,
      HOME: exec.uid === 0 ? "/root" : "/",
      HOSTNAME: spec.hostname,
      ...spec.image.env,
      ...spec.env,
      ...(exec === spec ? {} : exec.env),
    };
    return {
      command: exec.command,
      args: exec.args,
      shell: exec.shell,
      env,
      cwd: exec.cwd,
      uid: exec.uid,
      gid: exec.gid,
      stdin: exec.stdin,
      stdinClose: exec.stdinClose,
      truncateAt: exec.truncateAt,
      timeout,
    };
  }

  private async saveResult(op: Operation, work: string, imageDir: string) {
    const spec = op.spawn!;
    const vm = op.vm!;
    if (op.abort.signal.aborted) {
      await removeTree(work);
      return this.cancelled(op);
    }
    try {
      await removeMountStubs(work, imageDir, vm.stubs);
      if (spec.disposable) {
        await removeTree(work);
        return this.succeed(op, null, null);
      }
      const diff = await diffTrees(imageDir, work);
      const env = spec.preserveEnv ? { ...spec.image.env, ...spec.env } : spec.image.env;
      if (diff.layerBytes > spec.maxLayerBytes) {
        op.log!.emit("size_cap", 0, { limit_bytes: spec.maxLayerBytes, file_size: diff.layerBytes });
        await removeTree(work);
        return this.fail(
          op,
          `the filesystem layer (${diff.layerBytes} bytes) exceeds the limit of ${spec.maxLayerBytes} bytes`,
        );
      }
      if (!diff.changed && sameEnv(env, spec.image.env)) {
        await removeTree(work);
        return this.succeed(op, spec.image.uuid, await treeSize(imageDir));
      }
      const image = await this.config.images.adopt(work, {
        operation_uuid: op.uuid,
        parent: spec.image.uuid,
        env,
      });
      return this.succeed(op, image.uuid, await treeSize(this.config.images.dirOf(image.uuid)));
    } catch (error) {
      await removeTree(work);
      return this.fail(op, `cannot save the result: ${error instanceof Error ? error.message : error}`);
    }
  }

  // ---- imports ----

  importImage(url: string, tag: string | null, timeout: number, metadata: Record<string, any>): Operation {
    if (this.closed) throw new Error("fake ConTree is closing");
    this.admit("image_import");
    const op = this.newOperation("image_import", metadata);
    op.importUrl = url;
    op.resultTag = tag;
    void this.runImport(op, timeout).catch((error) => this.fail(op, `internal error: ${String(error)}`));
    return op;
  }

  private async runImport(op: Operation, _timeout: number) {
    if (!(await delay(this.config.delays.pendingMs, op.abort.signal))) return this.cancelled(op);
    await this.whenSlotFree(op, "EXECUTING");
    if (op.abort.signal.aborted) return this.cancelled(op);
    op.log = new EventLog(this.config.clock);
    const normalized = parseRegistryUrl(op.importUrl!);
    if (!normalized)
      return this.fail(op, `cannot import ${JSON.stringify(op.importUrl)}: not a registry image URL`);
    const images = this.config.images;
    const cached = this.importCache.get(normalized);
    let uuid = cached && images.get(cached) ? cached : null;
    if (!uuid) {
      if (!(await delay(this.config.delays.importMs, op.abort.signal))) return this.cancelled(op);
      const name = normalized.replace(/^\w+:\/\//, "");
      const image = await images.create({}, { operation_uuid: op.uuid, name });
      this.importCache.set(normalized, image.uuid);
      uuid = image.uuid;
    }
    if (op.abort.signal.aborted) return this.cancelled(op);
    if (op.resultTag) images.setTag(uuid, op.resultTag);
    return this.succeed(op, uuid, await treeSize(images.dirOf(uuid)));
  }

  // ---- endings ----

  private finish(op: Operation, status: OperationStatus, error: string | null) {
    if (TERMINAL.has(op.status)) return;
    op.status = status;
    op.error = error;
    op.finishedMs = this.config.clock.now();
    // An operation that ended before it had a log (cancelled while PENDING) gets one with just
    // its completion, so that event readers do not wait on 425 forever.
    op.log ??= new EventLog(this.config.clock);
    if (!op.log.completed) {
      const data: Record<string, unknown> = {
        status,
        result_image_uuid: op.resultImage,
        error,
        duration_ms: op.finishedMs - op.createdMs,
      };
      if (op.imageSize !== null) data.image_size_bytes = op.imageSize;
      op.log.emit("completion", 0, data);
    }
    op.settle();
    this.drain();
  }

  private succeed(op: Operation, image: string | null, size: number | null) {
    op.resultImage = image;
    op.imageSize = image ? size : null;
    this.finish(op, "SUCCESS", null);
  }

  private fail(op: Operation, error: string) {
    this.finish(op, "FAILED", error);
  }

  private cancelled(op: Operation) {
    op.resultImage = null;
    this.finish(op, "CANCELLED", null);
  }

  cancel(op: Operation): void {
    if (TERMINAL.has(op.status)) throw conflict("operation is not cancellable");
    if (op.abort.signal.aborted) return; // already being cancelled
    op.abort.abort();
    op.vm?.processes.get(1)?.kill(9);
    // Not started yet: it ends right away (started ones end when their process is gone).
    const queued = this.queue.indexOf(op);
    if (queued >= 0) {
      this.queue.splice(queued, 1);
      op.start?.();
    }
  }

  // ---- subprocesses ----

  private liveVm(op: Operation): Vm {
    if (op.kind !== "instance") throw conflict("not an instance operation");
    if (TERMINAL.has(op.status) || op.finishing || op.abort.signal.aborted) {
      throw conflict("operation is not running");
    }
    if (!op.mainSpawned || !op.vm) throw tooEarly("the instance is not ready yet");
    return op.vm;
  }

  async createSubprocess(op: Operation, exec: ExecSpec): Promise<number> {
    const vm = this.liveVm(op);
    const spid = op.nextSpid++;
    await vm.start(spid, this.execRequest(op.spawn!, exec, null));
    return spid;
  }

  process(op: Operation, spid: string): VmProcess {
    const n = /^\d+$/.test(spid) ? Number(spid) : Number.NaN;
    const proc = op.vm?.processes.get(n);
    if (!proc) throw notFound(`subprocess not found: ${spid}`);
    return proc;
  }

  kill(op: Operation, spid: string, signal: string | null): void {
    const proc = this.process(op, spid);
    const signo = signalNumber(signal ?? "KILL");
    if (signo === null) throw badRequest(`unknown signal: ${signal}`);
    if (TERMINAL.has(op.status)) throw conflict("operation is not running");
    proc.kill(signo);
  }

  stdin(op: Operation, spid: string, bytes: Buffer, close: boolean): void {
    const proc = this.process(op, spid);
    if (TERMINAL.has(op.status) || !proc.running) throw conflict("process is not running");
    if (!proc.stdinOpen) throw conflict("stdin is closed");
    proc.writeStdin(bytes, close);
  }

  // ---- wire ----

  list(query: URLSearchParams) {
    const limit = queryInt(query, "limit", 100, 1, 1000, "limit must be between 1 and 1000");
    const offset = queryInt(query, "offset", 0, 0);
    const status = query.get("status");
    if (status && !STATUSES.includes(status as OperationStatus))
      throw badRequest(`invalid status: ${status}`);
    const kind = query.get("kind");
    if (kind && kind !== "instance" && kind !== "image_import") throw badRequest(`invalid kind: ${kind}`);
    const now = this.config.clock.now();
    const since = query.get("since") ? parseTimeParam("since", query.get("since")!, now) : null;
    const until = query.get("until") ? parseTimeParam("until", query.get("until")!, now) : null;
    return this.order
      .map((id) => this.ops.get(id)!)
      .filter(
        (op) =>
          (!status || op.status === status) &&
          (!kind || op.kind === kind) &&
          (since === null || op.createdMs >= since) &&
          (until === null || op.createdMs <= until),
      )
      .slice(offset, offset + limit)
      .map((op) => this.summary(op));
  }

  summary(op: Operation) {
    const end = op.finishedMs ?? this.config.clock.now();
    return {
      uuid: op.uuid,
      kind: op.kind,
      status: op.status,
      error: op.error,
      created_at: this.config.clock.iso(op.createdMs),
      duration: (end - op.createdMs) / 1000,
      image_size: op.imageSize,
      consumed_cpu: null,
      consumed_memory: null,
      image_uuid: op.imageUuid,
      result_image_uuid: op.resultImage,
    };
  }

  response(op: Operation, inflight: boolean) {
    let metadata: Record<string, any>;
    if (op.kind === "instance") {
      const main = op.vm?.processes.get(1);
      const showResult = main && (TERMINAL.has(op.status) || inflight);
      metadata = { ...op.metadata, result: showResult ? main.result() : null };
    } else metadata = op.metadata;
    return {
      ...this.summary(op),
      metadata,
      result: op.resultImage
        ? { image: op.resultImage, tag: op.kind === "image_import" ? op.resultTag : null }
        : null,
    };
  }

  /** Cancels everything still running and waits until each operation has ended. */
  async close(): Promise<void> {
    this.closed = true;
    for (const op of this.ops.values()) {
      if (TERMINAL.has(op.status) || op.abort.signal.aborted) continue;
      try {
        this.cancel(op);
      } catch {}
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all([...this.ops.values()].map((op) => op.settled)),
      new Promise((r) => {
        timer = setTimeout(r, 10_000);
      }),
    ]);
    clearTimeout(timer);
    for (const op of this.ops.values()) op.log?.wakeAll();
  }
}
