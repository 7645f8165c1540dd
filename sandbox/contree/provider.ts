// The `contree` sandbox provider: sandboxes are ConTree images, every snapshot is an image UUID.
//
// ConTree keeps immutable images and runs each command in a fresh microVM started from one; a
// non-disposable run returns a new image (or the same UUID when nothing changed). So a live sandbox
// here is a pointer: the image it shows now, plus writes not yet in any image. Exec runs on that
// image and moves the pointer to the result; fork and rollback move pointers without a VM; writes are
// carried into the next run's `files` (a snapshot with pending writes runs `true` to bake them in).
// Files, listings and diffs come from the inspect endpoints of saved images. The workspace is
// /workspace inside the image. The snapshot tree itself lives in our database, like local's.
import { readFile, stat } from "node:fs/promises";
import { constants } from "node:os";
import { decodeBaseFiles } from "../base-files.ts";
import { diffManifests, type Patcher } from "../diff.ts";
import { cleanPath, findSnapshotFile, listSnapshot, type Manifest, parentOf } from "../manifest.ts";
import type { OutboundPolicy } from "../outbound-policy.ts";
import {
  type DiffEntry,
  type ExecOptions,
  type ExecResult,
  type FileEntry,
  type FileMap,
  type FileSource,
  FileTooLargeError,
  type GcResult,
  type ListPage,
  type ProviderStatus,
  type ReadOptions,
  type SandboxBase,
  SandboxError,
  type SandboxProvider,
  type SnapshotInfo,
} from "../provider.ts";
import { checkRepoUrl, cloneFailure, gitNetworkConfig } from "../repo-url.ts";
import type { ContreeClient } from "./client.ts";
import { decodeStreamRepr } from "./encoding.ts";
import {
  ContreeAbortedError,
  ContreeError,
  ContreeNotFoundError,
  ContreeProtocolError,
  ContreeStreamStalledError,
  ContreeTruncatedError,
  ContreeUnprocessableError,
  isAbortError,
} from "./errors.ts";
import { scanTar } from "./tar.ts";
import type { FileSpec, InstanceSpawnRequest, OperationEvent } from "./types.ts";

export const WORKSPACE = "/workspace";
/** Image manifests kept in memory (images never change, so entries never go stale). */
const MANIFEST_CACHE = 64;

export interface ContreeProviderOptions {
  client: ContreeClient;
  /** The image new sandboxes start from: a UUID or tag:NAME. */
  image: string;
  /**
   * Where to import the base image from when its tag does not exist yet (first use on an account),
   * e.g. docker://docker.io/library/ubuntu:latest; null = never import.
   */
  imageSource: string | null;
  /** Whether commands that ask for network get it (the VM's outbound network). */
  network: boolean;
  /** Where repository URLs may lead (default: public addresses only). */
  outbound?: OutboundPolicy;
  limits: { timeoutMs: number; maxOutputBytes: number };
  log: (level: "info" | "warn", message: string) => void;
  /** Makes diff patches (the server's worker pool); on the calling thread when absent. */
  patcher?: Patcher;
}

interface Sandbox {
  id: string;
  /** The image the sandbox shows now. */
  image: string;
  /** The snapshot the next snapshot descends from (the last one taken or reset to). */
  parent: string | null;
  /** Writes not yet in any image, by workspace-relative path. */
  pending: Map<string, { data: Uint8Array; mode: number }>;
  /** Aborts whatever runs for this sandbox when it is destroyed. */
  controller: AbortController;
}

interface ImageFiles {
  manifest: Manifest;
  /** Where to download a file's content: content hash -> workspace path. */
  pathOf: Map<string, string>;
  fileCount: number;
  sizeBytes: number;
}

const signalName = (signal: number | null) =>
  signal === null
    ? null
    : (Object.entries(constants.signals).find(([, n]) => n === signal)?.[0] ?? String(signal));

export class ContreeProvider implements SandboxProvider {
  readonly status: ProviderStatus = {
    name: "contree",
    isolation: "microvm",
    workspaces: "images",
    binds: "files",
    // A microVM only dials out: the agent runs `opencode run` per turn, not a live server.
    agentMode: "per-turn",
    warnings: [
      "contree: snapshots cannot be deleted (the service has no deletion; untagged images expire after 180 days)",
    ],
  };
  private readonly sandboxes = new Map<string, Sandbox>();
  private readonly manifests = new Map<string, Promise<ImageFiles>>();
  private baseImage: Promise<string> | null = null;
  /** ConTree's cap on a VM's life (whoami limits.instance_max_timeout; 3600 s observed). */
  private maxTimeoutS = 3600;
  /** Uploaded host files: "path:size:mtime" -> file uuid. */
  private readonly hostFiles = new Map<string, string>();

  constructor(private readonly options: ContreeProviderOptions) {}

  /** Checks the credentials in the background: a failure is a health warning, not a failed start. */
  init(): this {
    void this.options.client.whoami({ signal: AbortSignal.timeout(10_000) }).then(
      (whoami) => {
        const max = whoami.limits?.instance_max_timeout;
        if (typeof max === "number" && max > 0) this.maxTimeoutS = max;
        this.options.log("info", "contree reachable");
      },
      (error) => {
        const warning = `contree: unreachable or refused at start (${describe(error)})`;
        this.status.warnings.push(warning);
        this.options.log("warn", warning);
      },
    );
    return this;
  }

  private get client() {
    return this.options.client;
  }

  private sandbox(id: string): Sandbox {
    const sandbox = this.sandboxes.get(id);
    if (!sandbox) throw new SandboxError("NOT_FOUND", `No sandbox ${id}`);
    return sandbox;
  }

  private track(image: string, parent: string | null): string {
    const id = crypto.randomUUID();
    this.sandboxes.set(id, { id, image, parent, pending: new Map(), controller: new AbortController() });
    return id;
  }

  async create(base: SandboxBase): Promise<string> {
    const image = await this.resolveBaseImage();
    let request: InstanceSpawnRequest;
    if (base.kind === "git") {
      if (!this.options.network)
        throw new SandboxError("BAD_BASE", "Cloning needs outbound network (CONTREE_NETWORK=true)");
      // Checked here before the VM dials out (its network may see private and metadata addresses
      // too); the VM's git then connects only to the checked addresses, follows no redirects.
      const target = await checkRepoUrl(base.url, this.options.outbound);
      // Arguments, not shell text: the URL, ref and git options are never parsed by a shell.
      const script = `url=$1 ref=$2; shift 2; git "$@" clone --quiet -- "$url" ${WORKSPACE} && { [ -z "$ref" ] || git -C ${WORKSPACE} checkout --quiet "$ref"; }`;
      request = {
        image,
        command: "sh",
        args: ["-c", script, "sh", target.url.href, base.ref ?? "", ...gitNetworkConfig(target)],
        // A private repository fails instead of waiting for a password nobody will type.
        env: { GIT_TERMINAL_PROMPT: "0", GIT_ALLOW_PROTOCOL: "http:https", GIT_CONFIG_NOSYSTEM: "1" },
        networking: { enabled: true },
      };
    } else {
      const files = base.kind === "files" ? await this.upload(workspaceFiles(base.files)) : undefined;
      request = { image, command: "mkdir", args: ["-p", WORKSPACE], files, networking: { enabled: false } };
    }
    const result = await this.run({ ...request, cwd: "/", timeout: 600, stdin: { value: "", close: true } });
    if (result.exitCode !== 0 || !result.resultImage) {
      const detail = result.stderr.trim().split("\n").slice(-3).join(" ").slice(0, 400);
      if (base.kind === "git") {
        // What the clone printed stays in the log: it would tell refused from missing from timed out.
        this.options.log("warn", `git clone failed (exit ${result.exitCode}): ${detail}`);
        throw cloneFailure(result.stderr, base.ref);
      }
      throw new SandboxError(
        "BAD_BASE",
        `Could not prepare the sandbox (exit ${result.exitCode}): ${detail}`,
      );
    }
    return this.track(result.resultImage, null);
  }

  /** The configured base image as a UUID (resolved once; a failure is retried next time). */
  private resolveBaseImage(): Promise<string> {
    if (!this.baseImage) {
      const resolving = this.findOrImportBaseImage().catch((error) => {
        this.baseImage = null;
        throw translate(error, `base image ${this.options.image}`);
      });
      this.baseImage = resolving;
    }
    return this.baseImage;
  }

  private async findOrImportBaseImage(): Promise<string> {
    const { image, imageSource } = this.options;
    try {
      return await this.client.resolveImage(image);
    } catch (error) {
      if (!(error instanceof ContreeNotFoundError) || !image.startsWith("tag:") || !imageSource) throw error;
    }
    // A fresh account has no images: import the base once, under the tag we look for.
    this.options.log("info", `importing the base image ${imageSource} as ${image}`);
    const { uuid } = await this.client.importImage({
      registry: { url: imageSource },
      tag: image.slice("tag:".length),
      timeout: 1800,
    });
    const operation = await this.client.waitForOperation(uuid);
    const imported = (operation.result as { image?: string } | null | undefined)?.image;
    if (operation.status !== "SUCCESS" || !imported)
      throw new SandboxError(
        "FAILED",
        `Importing ${imageSource} failed: ${operation.error ?? operation.status}`,
      );
    return imported;
  }

  /** Uploads contents once (content-addressed) and returns the spawn request's `files` map. */
  private async upload(files: Map<string, { data: Uint8Array; mode: number }>) {
    const specs: Record<string, FileSpec> = {};
    const entries = [...files];
    // A few uploads at a time: ConTree deduplicates by SHA-256, so most are a HEAD request.
    for (let i = 0; i < entries.length; i += 8) {
      await Promise.all(
        entries.slice(i, i + 8).map(async ([path, { data, mode }]) => {
          const ref = await this.client.ensureFile(data).catch((error) => {
            throw translate(error, `upload of ${path}`);
          });
          specs[`${WORKSPACE}/${path}`] = { uuid: ref.uuid, mode: `0${mode.toString(8)}` };
        }),
      );
    }
    return specs;
  }

  /**
   * Host files a command needs (the agent binary) can only be copied in: ConTree VMs see no host
   * paths. Uploads are content-addressed; the hash of a host file is remembered while it is unchanged.
   */
  private async copyIn(binds: NonNullable<ExecOptions["binds"]>): Promise<Record<string, FileSpec> | null> {
    if (binds.length === 0) return null;
    const specs: Record<string, FileSpec> = {};
    for (const bind of binds) {
      const info = await stat(bind.host).catch(() => null);
      if (bind.writable || !info?.isFile())
        throw new SandboxError(
          "UNSUPPORTED",
          `ConTree sandboxes cannot see host paths; only read-only files can be copied in (${bind.sandbox})`,
        );
      const key = `${bind.host}:${info.size}:${info.mtimeMs}`;
      let uuid = this.hostFiles.get(key);
      if (!uuid) {
        const ref = await this.client.ensureFile(new Uint8Array(await readFile(bind.host))).catch((error) => {
          throw translate(error, `upload of ${bind.sandbox}`);
        });
        uuid = ref.uuid;
        this.hostFiles.set(key, uuid);
      }
      specs[bind.sandbox] = { uuid, mode: `0${(info.mode & 0o7777).toString(8)}` };
    }
    return specs;
  }

  private async run(request: InstanceSpawnRequest, options: Parameters<ContreeClient["run"]>[1] = {}) {
    try {
      const result = await this.client.run({ disposable: false, ...request }, options);
      if (result.status !== "SUCCESS")
        throw new SandboxError(
          "FAILED",
          `ConTree operation ${result.status}: ${result.operation.error ?? ""}`,
        );
      return result;
    } catch (error) {
      throw translate(error, "run");
    }
  }

  async exec(sandboxId: string, options: ExecOptions): Promise<ExecResult> {
    const sandbox = this.sandbox(sandboxId);
    const started = performance.now();
    const limits = this.options.limits;
    // Callers may ask for less than the configured limits, never more; ConTree caps a VM's life.
    const timeoutMs = Math.min(
      options.timeoutMs ?? limits.timeoutMs,
      limits.timeoutMs,
      this.maxTimeoutS * 1000,
    );
    const maxOutput = Math.min(options.maxOutputBytes ?? limits.maxOutputBytes, limits.maxOutputBytes);
    // The output cap is on stdout and stderr together and stops the run, as with local sandboxes
    // (ConTree's own truncate_output_at is per stream and lets the command run on).
    const capped = new AbortController();
    const signal = AbortSignal.any(
      [sandbox.controller.signal, capped.signal, options.signal].filter(
        (s): s is AbortSignal => s !== undefined,
      ),
    );
    let outputBytes = 0;
    let streamed = false;
    let cpuMs: number | null = null;
    const onEvent = (event: OperationEvent) => {
      if ((event.type === "stdout" || event.type === "stderr") && (event.spid ?? 1) === 1) {
        let data = decodeStreamRepr(event.data as { value: string; encoding?: "ascii" | "base64" });
        streamed = true;
        if (outputBytes + data.byteLength > maxOutput) {
          data = data.subarray(0, Math.max(0, maxOutput - outputBytes));
          capped.abort("output");
        }
        outputBytes += data.byteLength;
        if (data.byteLength > 0) options.onOutput?.({ stream: event.type, data });
      } else if (event.type === "truncated" && (event.spid ?? 1) === 1) {
        capped.abort("output");
      } else if (event.type === "exit" && (event.spid ?? 1) === 1) {
        const r = (event.data as { resources?: Record<string, number> }).resources;
        if (r && typeof r.user_time_us === "number") cpuMs = (r.user_time_us + (r.sys_time_us ?? 0)) / 1000;
      }
    };
    // What this run carries in; writes made while it runs wait for the next one.
    const sent = new Map(sandbox.pending);
    const copied = await this.copyIn(options.binds ?? []);
    const files = sent.size > 0 || copied ? { ...(await this.upload(sent)), ...copied } : undefined;
    const request: InstanceSpawnRequest = {
      image: sandbox.image,
      command: options.command,
      shell: true,
      cwd: WORKSPACE,
      env: options.env ?? {},
      // End of input at once, as local commands get: nothing waits on a terminal that is not there.
      stdin: { value: "", close: true },
      timeout: Math.max(1, Math.ceil(timeoutMs / 1000)),
      truncate_output_at: maxOutput + 1,
      networking: { enabled: Boolean(options.network) && this.options.network },
      files,
    };
    const stopped = (killedBy: "abort" | "output"): ExecResult => ({
      exitCode: null,
      signal: "SIGKILL",
      killedBy,
      durationMs: performance.now() - started,
      cpuMs,
      outputBytes,
    });
    let result: Awaited<ReturnType<ContreeClient["run"]>>;
    try {
      result = await this.client.run({ disposable: false, ...request }, { signal, onEvent });
    } catch (error) {
      // Stopped: the client cancelled the operation, so it leaves no image and the head stays.
      if (capped.signal.aborted) return stopped("output");
      if (signal.aborted || isAbortError(error)) return stopped("abort");
      throw translate(error, "exec");
    }
    if (result.status !== "SUCCESS")
      throw new SandboxError("FAILED", `ConTree operation ${result.status}: ${result.operation.error ?? ""}`);
    if (!streamed) {
      // No event stream (the client fell back to polling): the folded output arrives at the end.
      for (const stream of ["stdout", "stderr"] as const) {
        const data = new TextEncoder()
          .encode(result[stream])
          .subarray(0, Math.max(0, maxOutput - outputBytes));
        if (data.byteLength === 0) continue;
        outputBytes += data.byteLength;
        options.onOutput?.({ stream, data });
      }
    }
    if (result.resultImage) {
      sandbox.image = result.resultImage;
      for (const [path, write] of sent) if (sandbox.pending.get(path) === write) sandbox.pending.delete(path);
    }
    return {
      exitCode: result.timedOut ? null : result.exitCode,
      signal: result.timedOut ? "SIGKILL" : signalName(result.signal),
      killedBy: result.timedOut ? "timeout" : null,
      durationMs: performance.now() - started,
      cpuMs,
      outputBytes,
    };
  }

  async snapshot(sandboxId: string): Promise<SnapshotInfo> {
    const sandbox = this.sandbox(sandboxId);
    if (sandbox.pending.size > 0) {
      const sent = new Map(sandbox.pending);
      const files = await this.upload(sent);
      const result = await this.run(
        { image: sandbox.image, command: "true", cwd: "/", files, networking: { enabled: false } },
        { signal: sandbox.controller.signal },
      );
      if (!result.resultImage) throw new SandboxError("FAILED", "ConTree returned no image for the writes");
      sandbox.image = result.resultImage;
      for (const [path, write] of sent) if (sandbox.pending.get(path) === write) sandbox.pending.delete(path);
    }
    // The counts are for display: a snapshot is recorded even when they cannot be had.
    const stats = await this.filesOf(sandbox.image).catch((error) => {
      this.options.log("warn", `contree: no file counts for image ${sandbox.image}: ${describe(error)}`);
      return { fileCount: 0, sizeBytes: 0 };
    });
    const info: SnapshotInfo = {
      id: sandbox.image,
      parentId: sandbox.parent,
      createdAt: new Date(),
      fileCount: stats.fileCount,
      sizeBytes: stats.sizeBytes,
    };
    sandbox.parent = sandbox.image;
    return info;
  }

  async fork(snapshotId: string): Promise<string> {
    await this.requireImage(snapshotId);
    return this.track(snapshotId, snapshotId);
  }

  async reset(sandboxId: string, snapshotId: string): Promise<void> {
    const sandbox = this.sandbox(sandboxId);
    await this.requireImage(snapshotId);
    sandbox.image = snapshotId;
    sandbox.parent = snapshotId;
    sandbox.pending.clear();
  }

  private async requireImage(image: string) {
    try {
      await this.client.inspectImage(image);
    } catch (error) {
      throw translate(error, `image ${image}`);
    }
  }

  async getSnapshot(snapshotId: string): Promise<SnapshotInfo> {
    let created: Date;
    let parentId: string | null = null;
    try {
      const image = await this.client.inspectImage(snapshotId);
      created = new Date(image.created_at);
      // Lineage is the producing operation's input image.
      if (image.operation_uuid) {
        const operation = await this.client.getOperation(image.operation_uuid);
        const input = (operation.metadata as { image?: string } | null | undefined)?.image ?? null;
        parentId = input && input !== snapshotId ? input : null;
      }
    } catch (error) {
      throw translate(error, `image ${snapshotId}`);
    }
    const stats = await this.filesOf(snapshotId);
    return {
      id: snapshotId,
      parentId,
      createdAt: created,
      fileCount: stats.fileCount,
      sizeBytes: stats.sizeBytes,
    };
  }

  /**
   * The image's workspace as a manifest, from one archive download (cached: images are immutable).
   * Only a complete archive is cached: a failed load (truncated, stalled, refused) is dropped, so
   * the next caller downloads again.
   */
  private filesOf(image: string): Promise<ImageFiles> {
    const cached = this.manifests.get(image);
    if (cached) {
      // Most recently used last.
      this.manifests.delete(image);
      this.manifests.set(image, cached);
      return cached;
    }
    const loading = this.loadFiles(image);
    this.manifests.set(image, loading);
    loading.catch(() => {
      if (this.manifests.get(image) === loading) this.manifests.delete(image);
    });
    while (this.manifests.size > MANIFEST_CACHE) this.manifests.delete(this.manifests.keys().next().value!);
    return loading;
  }

  private async loadFiles(image: string): Promise<ImageFiles> {
    const manifest: Manifest = new Map();
    const pathOf = new Map<string, string>();
    let fileCount = 0;
    let sizeBytes = 0;
    try {
      // Streamed: contents are hashed on the way through and never held.
      for await (const entry of scanTar(await this.client.archive(image, WORKSPACE))) {
        const path = relativeToWorkspace(entry.name);
        if (!path) continue;
        if (entry.type === "dir") manifest.set(path, { t: "d", m: entry.mode, s: 0 });
        else if (entry.type === "symlink") manifest.set(path, { t: "l", m: 0o777, s: 0, l: entry.linkName });
        else if (entry.type === "file") {
          manifest.set(path, { t: "f", m: entry.mode, s: entry.size, h: entry.sha256 });
          pathOf.set(entry.sha256, path);
          fileCount++;
          sizeBytes += entry.size;
        }
      }
    } catch (error) {
      throw translate(error, `image ${image}`);
    }
    // Archives may omit directory entries; every file's parents are directories.
    for (const path of [...manifest.keys()]) {
      for (let dir = parentOf(path); dir && !manifest.has(dir); dir = parentOf(dir))
        manifest.set(dir, { t: "d", m: 0o755, s: 0 });
    }
    return { manifest, pathOf, fileCount, sizeBytes };
  }

  /** A sandbox's manifest: its image's, with the pending writes on top. */
  private async manifestOf(source: FileSource): Promise<Manifest> {
    if ("snapshot" in source) return (await this.filesOf(source.snapshot)).manifest;
    const sandbox = this.sandbox(source.sandbox);
    const base = (await this.filesOf(sandbox.image)).manifest;
    if (sandbox.pending.size === 0) return base;
    const manifest = new Map(base);
    for (const [path, { data, mode }] of sandbox.pending) {
      manifest.set(path, { t: "f", m: mode, s: data.byteLength, h: `pending:${path}` });
      for (let dir = parentOf(path); dir && !manifest.has(dir); dir = parentOf(dir))
        manifest.set(dir, { t: "d", m: 0o755, s: 0 });
    }
    return manifest;
  }

  async listFiles(source: FileSource, dir = "", page?: ListPage): Promise<FileEntry[]> {
    return listSnapshot(await this.manifestOf(source), dir, page);
  }

  async readFile(source: FileSource, path: string, options: ReadOptions = {}): Promise<Uint8Array | null> {
    const clean = cleanPath(path);
    const { maxBytes } = options;
    const refuseOver = (size: number) => {
      if (maxBytes !== undefined && size > maxBytes) throw new FileTooLargeError(clean, size, maxBytes);
    };
    const image = "snapshot" in source ? source.snapshot : this.sandbox(source.sandbox).image;
    if ("sandbox" in source) {
      const pending = this.sandbox(source.sandbox).pending.get(clean);
      if (pending) {
        refuseOver(pending.data.byteLength);
        return pending.data;
      }
    }
    // Symlinks inside the workspace are followed the way local does; then the bytes come from ConTree.
    const files = await this.filesOf(image);
    refuseLinkedParents(files.manifest, clean);
    const entry = findSnapshotFile(files.manifest, clean);
    if (!entry) return null;
    // Images are immutable and their manifest's sizes come from the archive: a file over the limit is
    // refused without downloading it.
    refuseOver(entry.s);
    return this.download(image, files.pathOf.get(entry.h!) ?? clean);
  }

  private async download(image: string, path: string): Promise<Uint8Array> {
    try {
      return await this.client.download(image, `${WORKSPACE}/${path}`);
    } catch (error) {
      throw translate(error, `${path} of image ${image}`);
    }
  }

  async writeFile(
    sandboxId: string,
    path: string,
    content: Uint8Array | string,
    mode?: number,
  ): Promise<void> {
    const sandbox = this.sandbox(sandboxId);
    const clean = cleanPath(path);
    const data = typeof content === "string" ? new TextEncoder().encode(content) : content;
    const manifest = await this.manifestOf({ sandbox: sandboxId });
    refuseLinkedParents(manifest, clean);
    const existing = manifest.get(clean);
    if (existing && existing.t !== "f") throw new SandboxError("BAD_PATH", `"${clean}" is not a file`);
    if (manifest.get(parentOf(clean))?.t === "f")
      throw new SandboxError("BAD_PATH", `"${parentOf(clean)}" is a file, not a directory`);
    sandbox.pending.set(clean, { data, mode: mode ?? existing?.m ?? 0o644 });
  }

  async diff(fromSnapshotId: string, toSnapshotId: string): Promise<DiffEntry[]> {
    const [from, to] = await Promise.all([this.filesOf(fromSnapshotId), this.filesOf(toSnapshotId)]);
    return diffManifests(
      from.manifest,
      to.manifest,
      async (hash) => {
        const inTo = to.pathOf.get(hash);
        return inTo !== undefined
          ? this.download(toSnapshotId, inTo)
          : this.download(fromSnapshotId, from.pathOf.get(hash)!);
      },
      this.options.patcher,
    );
  }

  async destroy(sandboxId: string): Promise<void> {
    const sandbox = this.sandboxes.get(sandboxId);
    if (!sandbox) return;
    sandbox.controller.abort();
    this.sandboxes.delete(sandboxId);
  }

  /** ConTree has no deletion: images stay in the service until its retention expires them. */
  async gc(): Promise<GcResult> {
    return { removedSnapshots: 0, removedObjects: 0, freedBytes: 0 };
  }

  async close(): Promise<void> {
    for (const id of [...this.sandboxes.keys()]) await this.destroy(id);
  }
}

/** A path through a symlinked directory could lead anywhere in the VM: refused, as local does. */
function refuseLinkedParents(manifest: Manifest, path: string) {
  for (let dir = parentOf(path); dir; dir = parentOf(dir)) {
    if (manifest.get(dir)?.t === "l")
      throw new SandboxError("BAD_PATH", `Path "${path}" goes through a symlink ("${dir}")`);
  }
}

/** Workspace-relative path of an archive entry ("" for the workspace itself). */
function relativeToWorkspace(name: string): string {
  const trimmed = name.replace(/^\/+/, "").replace(/^\.\//, "");
  if (trimmed === "." || trimmed === "workspace") return "";
  return trimmed.startsWith("workspace/") ? trimmed.slice("workspace/".length) : trimmed;
}

/** A base's files by clean workspace path, with the default mode made explicit for the upload. */
function workspaceFiles(files: FileMap) {
  const out = new Map<string, { data: Uint8Array; mode: number }>();
  for (const [path, { data, mode }] of decodeBaseFiles(files))
    out.set(cleanPath(path), { data, mode: mode ?? 0o644 });
  return out;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** ConTree failures in the provider's terms: missing images, unusable paths, outages. */
function translate(error: unknown, what: string): unknown {
  if (error instanceof SandboxError || error instanceof ContreeAbortedError) return error;
  if (error instanceof ContreeProtocolError)
    return new SandboxError("FAILED", `ConTree answered something unexpected (${what}): ${error.message}`);
  if (error instanceof ContreeNotFoundError) return new SandboxError("NOT_FOUND", `ConTree has no ${what}`);
  if (error instanceof ContreeUnprocessableError)
    return new SandboxError("BAD_PATH", `Unusable path: ${what}`);
  // A download that broke off or went silent: nothing partial is used; asking again may work.
  if (error instanceof ContreeTruncatedError || error instanceof ContreeStreamStalledError)
    return new SandboxError("UNAVAILABLE", `ConTree is unavailable (${what}): ${error.message}`);
  if (error instanceof ContreeError) {
    const status = (error as { status?: number }).status ?? 0;
    // Not there, overloaded or not ready yet, beyond what the retries covered: try again later.
    if (status === 0 || status >= 500 || status === 429 || status === 425 || status === 410)
      return new SandboxError("UNAVAILABLE", `ConTree is unavailable (${what}): ${error.message}`);
    return new SandboxError("FAILED", `ConTree refused ${what}: ${error.message}`);
  }
  return error;
}
