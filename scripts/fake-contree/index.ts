// A faithful fake of the ConTree HTTP API (Nebius's microVM sandboxes) for development and tests:
// the 24 operations under /v1 with the real wire shapes, commands really run (bubblewrap over a copy
// of the image; without a usable bubblewrap spawns end FAILED with the reason and all else works:
// `cannotRunProcesses`), immutable images with parent links, content-addressed files, the SSE event log,
// subprocesses of a kept-alive VM, inspect (list/download/tar/grep), auth, gzip and fault injection.
// See docs in contree-api.md §7 and the header comments of the modules next to this one.
//
//   const fake = await startFakeContree();
//   fetch(`${fake.url}/v1/whoami`, { headers: { Authorization: `Bearer ${fake.token}`, Project: fake.project! } })
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApi } from "./api.ts";
import { Clock } from "./clock.ts";
import { Faults } from "./faults.ts";
import { FileStore } from "./files.ts";
import { ImageStore } from "./images.ts";
import { Operations } from "./operations.ts";
import { startServer } from "./server.ts";
import type { Limits } from "./spawn.ts";
import { removeTree } from "./tree.ts";
import { probeSandbox, type Sandbox } from "./vm.ts";

export { ROUTES, type RouteSpec } from "./routes.ts";

export type ContreePermission = "import" | "spawn" | "spawn_disposable" | "list" | "cancel" | "set_image_tag";

export interface FakeContreeOptions {
  /** Default 0 (ephemeral). */
  port?: number;
  /** Default random; `Authorization: Bearer <token>` is required. */
  token?: string;
  /** Default a random string; null = legacy JWT mode (no Project header needed). */
  project?: string | null;
  /** Default all true. */
  permissions?: Partial<Record<ContreePermission, boolean>>;
  limits?: Partial<{
    instance_max_timeout: number;
    instance_max_concurrency: number;
    instance_max_layer_bytes: number;
    images_import_max_concurrency: number;
    images_import_max_timeout: number;
  }>;
  /** Over instance_max_concurrency: "429" (default) or "queue" (stay PENDING until a slot frees). */
  overConcurrency?: "429" | "queue";
  /** Default 20/20/50 ms. */
  delays?: { pendingMs?: number; assignedMs?: number; importMs?: number };
  /** Default a fresh temp dir, removed on close. */
  dataDir?: string;
  /** Answer 410 + Retry-After for this long right after an operation completes (log "not yet durable"). */
  goneAfterCompletionMs?: number;
  /** How often a quiet event stream sends `: keepalive`. Default 1000 ms. */
  keepaliveMs?: number;
  /**
   * false = run no processes even where bubblewrap works (what the fake does without it: spawns
   * end FAILED). Default: processes run when bubblewrap can build a sandbox here.
   */
  processes?: boolean;
}

export interface FaultRule {
  /** Any when omitted. */
  method?: string;
  /** String = exact pathname (e.g. "/v1/instances"), RegExp tested against the pathname. */
  path: RegExp | string;
  /** e.g. 500, 425, 429, 410. */
  status: number;
  /** Default 1. */
  times?: number;
  /** Retry-After header value (seconds or HTTP date). */
  retryAfter?: number | string;
  /** "respond" (default) answers with status; "drop" destroys the connection without answering. */
  mode?: "respond" | "drop";
}

export interface StreamFault {
  /** Any operation when omitted. */
  operation?: string;
  /** Events sent on that connection before the fault. */
  afterEvents: number;
  /** drop = cut the connection mid-stream; sse_error = send `event: sse_error` then close. */
  mode: "drop" | "sse_error";
  /** Default 1. */
  times?: number;
}

export interface BodyFault {
  /** Any when omitted. */
  method?: string;
  /** String = exact pathname (e.g. "/v1/inspect/<uuid>/archive"), RegExp tested against the pathname. */
  path: RegExp | string;
  /** Body bytes (before compression) sent before the fault; 0 = right after the headers. */
  afterBytes: number;
  /**
   * truncate = end the response cleanly but early: with gzip the trailer never comes (the peer
   *   "died" before finishing, as in the official client's stub server);
   * stall = send nothing more (no keepalives either) and keep the connection open until the client
   *   goes away;
   * reset = destroy the connection mid-body.
   */
  mode: "truncate" | "stall" | "reset";
  /** Default 1. */
  times?: number;
}

export interface FakeContree {
  /** Base URL WITHOUT /v1, e.g. "http://127.0.0.1:41234". */
  url: string;
  token: string;
  project: string | null;
  /** Why this fake cannot run processes (every spawn ends FAILED with it), or null when it can. */
  cannotRunProcesses: string | null;
  /** Every request received: method, pathname + search, and headers, in order. */
  requests: { method: string; path: string; headers: Record<string, string> }[];
  fail(rule: FaultRule): void;
  dropStream(fault: StreamFault): void;
  /** Breaks the streamed body (archive, event stream) of the next matching request(s). */
  breakBody(fault: BodyFault): void;
  clearFaults(): void;
  /** Seeds an image from a map of absolute path -> content (string or bytes), optionally tagged; returns its uuid. */
  seedImage(files: Record<string, string | Uint8Array>, tag?: string): Promise<string>;
  /** Moves the fake's clock forward: later records are created "later" (since/until filters). */
  advanceClock(ms: number): void;
  close(): Promise<void>;
}

export const DEFAULT_LIMITS: Limits = {
  instance_max_timeout: 3600,
  instance_max_concurrency: 50,
  instance_max_layer_bytes: 12 * 1024 ** 3,
  images_import_max_concurrency: 8,
  images_import_max_timeout: 3600,
};

const ALL_PERMISSIONS: ContreePermission[] = [
  "import",
  "spawn",
  "spawn_disposable",
  "list",
  "cancel",
  "set_image_tag",
];

export async function startFakeContree(options: FakeContreeOptions = {}): Promise<FakeContree> {
  const sandbox: Sandbox =
    options.processes === false
      ? { bwrap: null, unavailable: "processes are turned off (processes: false)" }
      : await probeSandbox();
  const ownDataDir = !options.dataDir;
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), "fake-contree-")));
  const dirs = {
    images: join(dataDir, "images"),
    files: join(dataDir, "files"),
    work: join(dataDir, "work"),
  };
  for (const dir of Object.values(dirs)) await mkdir(dir, { recursive: true });

  const clock = new Clock();
  const images = new ImageStore(dirs.images, clock);
  const files = new FileStore(dirs.files, clock);
  const faults = new Faults();
  const limits: Limits = { ...DEFAULT_LIMITS, ...options.limits };
  const permissions = Object.fromEntries(
    ALL_PERMISSIONS.map((p) => [p, options.permissions?.[p] ?? true]),
  ) as Record<ContreePermission, boolean>;
  const ops = new Operations({
    clock,
    images,
    workDir: dirs.work,
    sandbox,
    limits,
    delays: {
      pendingMs: options.delays?.pendingMs ?? 20,
      assignedMs: options.delays?.assignedMs ?? 20,
      importMs: options.delays?.importMs ?? 50,
    },
    overConcurrency: options.overConcurrency ?? "429",
    filePath: (file) => files.pathOf(file),
  });

  await images.create({}, { tag: "busybox:latest", name: "busybox" });
  await images.create({}, { tag: "ubuntu:latest", name: "ubuntu" });

  let closing = false;
  const token = options.token ?? randomBytes(24).toString("base64url");
  const project =
    options.project === undefined ? `project-${randomBytes(6).toString("hex")}` : options.project;
  const requests: FakeContree["requests"] = [];
  const api = createApi({
    clock,
    images,
    files,
    ops,
    faults,
    limits,
    permissions,
    goneAfterCompletionMs: options.goneAfterCompletionMs ?? 0,
    keepaliveMs: options.keepaliveMs ?? 1000,
    isClosing: () => closing,
  });
  let server: Awaited<ReturnType<typeof startServer>>;
  try {
    server = await startServer({ token, project, faults, requests, handle: api }, options.port ?? 0);
  } catch (error) {
    if (ownDataDir) await removeTree(dataDir);
    throw error;
  }

  let closed: Promise<void> | null = null;
  return {
    url: server.url,
    token,
    project,
    cannotRunProcesses: sandbox.unavailable,
    requests,
    fail: (rule) => faults.add(rule),
    dropStream: (fault) => faults.addStream(fault),
    breakBody: (fault) => faults.addBody(fault),
    clearFaults: () => faults.clear(),
    advanceClock: (ms) => clock.advance(ms),
    async seedImage(content, tag) {
      const image = await images.create(content, { tag: tag ?? null, name: "seed" });
      return image.uuid;
    },
    close() {
      closed ??= (async () => {
        closing = true;
        await ops.close();
        await server.close();
        if (ownDataDir) await removeTree(dataDir);
        else await removeTree(dirs.work);
      })();
      return closed;
    },
  };
}
