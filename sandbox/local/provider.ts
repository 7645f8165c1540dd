// The embedded `local` provider: workspaces on this machine's disk, snapshots in a content-addressed
// store, commands isolated by bubblewrap with cgroup limits where the machine allows them.
import { randomBytes } from "node:crypto";
import * as fs from "node:fs/promises";
import { isAbsolute, join, resolve } from "node:path";
import { addedBytes, listingBytes } from "../added-bytes.ts";
import { decodeBaseFiles } from "../base-files.ts";
import { diffManifests, type Patcher } from "../diff.ts";
import { cleanPath, findSnapshotFile, listSnapshot } from "../manifest.ts";
import type { OutboundPolicy } from "../outbound-policy.ts";
import type {
  DiffEntry,
  ExecOptions,
  ExecResult,
  FileEntry,
  FileMap,
  FileSource,
  GcResult,
  ListPage,
  ProviderStatus,
  ReadOptions,
  SandboxBase,
  SandboxProvider,
  SandboxService,
  ServiceOptions,
  SnapshotInfo,
  WriteWatch,
} from "../provider.ts";
import { SandboxError } from "../provider.ts";
import { checkRepoUrl, cloneFailure, gitNetworkConfig } from "../repo-url.ts";
import { runCapped } from "./capped-command.ts";
import { type Cgroups, detectCgroups } from "./cgroups.ts";
import { execIn, type Limits, writeCap } from "./exec.ts";
import { listLive, readLive, writeLive } from "./files.ts";
import { bubblewrapInstalled, DEFAULT_PATH, detectBubblewrap } from "./isolate.ts";
import { makePrivateDir } from "./modes.ts";
import { type LocalService, startServiceIn } from "./service.ts";
import { type SnapshotRecord, Store } from "./store.ts";
import {
  canMountOverlay,
  copyFactory,
  overlayFactory,
  unmountAllUnder,
  type Workspace,
  type WorkspaceFactory,
} from "./workspace.ts";
import { measureWrites, watchWrites } from "./write-meter.ts";

export interface LocalProviderOptions {
  /** Where this instance's live workspaces live (and the store, unless `storeDir` says otherwise). */
  dir: string;
  /**
   * A snapshot store shared by several instances on this machine (SANDBOX_STORE_DIR), on the same
   * filesystem as `dir` (layers and objects are hard links and renames). Each instance keeps its own
   * `dir`: its start-up clears only its own workspaces.
   */
  storeDir?: string;
  /** "auto" picks overlay when this process can mount it, else copy. */
  workspaces?: "auto" | "overlay" | "copy";
  /** Refuse to start without bubblewrap. */
  requireIsolation?: boolean;
  /** Allow git bases from file:// URLs and local paths (off for multi-tenant hosting). */
  allowLocalRepos?: boolean;
  /** Where http(s) repository URLs may lead (default: public addresses only). */
  outbound?: OutboundPolicy;
  limits?: Partial<Limits>;
  log?: (level: "info" | "warn", message: string) => void;
  /** Makes diff patches (the server's worker pool); on the calling thread when absent. */
  patcher?: Patcher;
}

export const DEFAULT_LIMITS: Limits = {
  timeoutMs: 10 * 60_000,
  maxOutputBytes: 16 * 1024 * 1024,
  maxProcesses: 512,
  maxMemoryBytes: 4 * 1024 * 1024 * 1024,
  maxWriteBytes: 1024 * 1024 * 1024,
  // An npm install of a dozen packages creates ~28,000 entries; this leaves room for big builds.
  maxWriteEntries: 200_000,
};

/** In a shared store, objects, layers and records younger than this are never collected. */
const SHARED_GC_GRACE_MS = 60 * 60_000;

interface Live {
  workspace: Workspace;
  /** Operations on one sandbox run one at a time. */
  queue: Promise<unknown>;
  /** Long-lived processes running in it (a live agent server). */
  services: Set<LocalService>;
}

export class LocalProvider implements SandboxProvider {
  status: ProviderStatus = {
    name: "local",
    isolation: "none",
    workspaces: "copy",
    binds: "host",
    agentMode: "live",
    warnings: [],
  };
  private readonly store: Store;
  private readonly liveDir: string;
  private readonly sandboxes = new Map<string, Live>();
  private factory!: WorkspaceFactory;
  private bwrap: string | null = null;
  private cgroups: Cgroups | null = null;
  private readonly limits: Limits;

  constructor(private readonly options: LocalProviderOptions) {
    // A shared store keeps what other instances are writing for a while before GC may remove it.
    this.store = options.storeDir
      ? new Store(options.storeDir, { gcGraceMs: SHARED_GC_GRACE_MS })
      : new Store(join(options.dir, "store"));
    this.liveDir = join(options.dir, "live");
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
  }

  async init(): Promise<this> {
    await makePrivateDir(this.options.dir);
    if (this.options.storeDir) await makePrivateDir(this.options.storeDir);
    await this.store.init();
    // Live workspaces do not survive a restart: branches re-create them from their heads.
    await unmountAllUnder(this.liveDir);
    await fs.rm(this.liveDir, { recursive: true, force: true });
    await fs.mkdir(this.liveDir, { recursive: true });
    await this.store.clearLegacySetIdBits();

    const warnings: string[] = [];
    // The three probes are independent: run them together (start-up time).
    const wanted = this.options.workspaces ?? "auto";
    const [bwrap, cgroups, overlay] = await Promise.all([
      detectBubblewrap(),
      detectCgroups("occ"),
      wanted === "copy" ? Promise.resolve(false) : canMountOverlay(this.store),
    ]);
    this.bwrap = bwrap;
    this.cgroups = cgroups;
    if (!this.bwrap) {
      const why = bubblewrapInstalled()
        ? "bubblewrap is installed but cannot create a sandbox here (are user namespaces disabled?)"
        : "bubblewrap is not installed (apt-get install bubblewrap, or npm install as root does it)";
      if (this.options.requireIsolation) {
        throw new SandboxError(
          "ISOLATION_UNAVAILABLE",
          `${why}; isolation is required (SANDBOX_REQUIRE_ISOLATION, on by default in production). Set SANDBOX_REQUIRE_ISOLATION=false to run commands unisolated anyway`,
        );
      }
      warnings.push(`${why}: commands run unisolated on the host`);
    }
    if (!this.cgroups)
      warnings.push(
        "cgroups are not writable: process and memory limits are not enforced (wall time and output are)",
      );
    if (wanted === "overlay" && !overlay)
      throw new SandboxError("FAILED", "overlay workspaces requested but overlayfs cannot be mounted here");
    const snapshots = { maxEntries: this.limits.maxSnapshotEntries };
    this.factory = overlay ? await overlayFactory(this.store, snapshots) : copyFactory(this.store, snapshots);
    if (!overlay && wanted === "auto")
      warnings.push("overlayfs is unavailable: fork and rollback copy whole trees");

    this.status = {
      name: "local",
      isolation: this.bwrap ? "bubblewrap" : "none",
      workspaces: this.factory.kind,
      binds: "host",
      agentMode: "live",
      warnings,
    };
    for (const warning of warnings) this.options.log?.("warn", warning);
    return this;
  }

  // ---- sandboxes -----------------------------------------------------------------------------------

  private live(id: string): Live {
    const live = this.sandboxes.get(id);
    if (!live) throw new SandboxError("NOT_FOUND", `No live sandbox ${id}`);
    return live;
  }

  /** Runs `fn` after every earlier operation on the sandbox has finished. */
  private serial<T>(id: string, fn: (ws: Workspace) => Promise<T>): Promise<T> {
    const live = this.live(id);
    const result = live.queue.then(() => fn(live.workspace));
    live.queue = result.catch(() => {});
    return result;
  }

  private async adopt(make: (dir: string) => Promise<Workspace>): Promise<string> {
    const id = `sbx-${Date.now().toString(36)}-${randomBytes(6).toString("hex")}`;
    const workspace = await make(join(this.liveDir, id));
    this.sandboxes.set(id, { workspace, queue: Promise.resolve(), services: new Set() });
    return id;
  }

  async create(base: SandboxBase): Promise<string> {
    const id = await this.adopt((dir) => this.factory.create(dir));
    try {
      const root = this.live(id).workspace.root;
      if (base.kind === "files") await this.writeBaseFiles(root, base.files);
      else if (base.kind === "git") await this.clone(root, base.url, base.ref);
    } catch (error) {
      await this.destroy(id);
      throw error;
    }
    return id;
  }

  private async writeBaseFiles(root: string, files: FileMap): Promise<void> {
    for (const [path, { data, mode }] of decodeBaseFiles(files)) await writeLive(root, path, data, mode);
  }

  /**
   * Clones on the host, so the URL is checked here (outbound policy) and git connects only to the
   * checked addresses; a network failure says FETCH_FAILED whatever the cause (no port scanning).
   * git writes what a server sends onto this host, so it runs under a command's write cap (every
   * clone path: http(s), file:// and local paths): RLIMIT_FSIZE stops the fetched pack (one file) at
   * the cap, and the write meter on the target stops git once the pack, objects and checkout together
   * pass it, or the disk's free floor is crossed: QUOTA_EXCEEDED, and the sandbox is thrown away.
   */
  private async clone(root: string, url: string, ref?: string): Promise<void> {
    const local = url.startsWith("file://") || isAbsolute(url) || url.startsWith(".");
    if (local && !this.options.allowLocalRepos) {
      throw new SandboxError(
        "BAD_BASE",
        "Local repositories are disabled on this server (SANDBOX_ALLOW_LOCAL_REPOS)",
      );
    }
    const target = local ? null : await checkRepoUrl(url, this.options.outbound);
    const source = target ? target.url.href : url.startsWith("file://") ? url : resolve(url);
    const args = ["clone", "--quiet", "--no-hardlinks", "--", source, root];
    if (ref) args.splice(2, 0, "--branch", ref);
    const cap = writeCap(this.limits, this.limits.maxWriteBytes, this.limits.maxSnapshotEntries);
    const result = await runCapped(
      ["git", "-c", "core.hooksPath=/dev/null", ...(target ? gitNetworkConfig(target) : []), ...args],
      {
        target: root,
        cap,
        timeoutMs: 5 * 60_000,
        // No ext:: or other command-running transports; no prompts for credentials; no system or
        // user git config (a proxy or url.insteadOf there would undo the checks).
        env: {
          PATH: DEFAULT_PATH,
          GIT_ALLOW_PROTOCOL: target ? "http:https" : "file",
          GIT_TERMINAL_PROMPT: "0",
          GIT_CONFIG_NOSYSTEM: "1",
          HOME: "/nonexistent",
        },
      },
    );
    if (result.over) {
      this.options.log?.("warn", `git clone stopped at the write cap (${result.over.reason})`);
      throw new SandboxError(
        "QUOTA_EXCEEDED",
        result.over.reason === "disk"
          ? "The server ran low on disk space while cloning the repository; try again later"
          : result.over.reason === "bytes"
            ? `The repository is larger than the ${Math.floor(cap.maxBytes / 1024 / 1024)} MB one clone may write`
            : `The repository has more files than one snapshot may hold (${cap.maxEntries})`,
      );
    }
    if (result.code === 0 && !result.timedOut) return;
    const stderr = result.timedOut ? "timed out" : result.stderr;
    this.options.log?.(
      "warn",
      `git clone failed: ${stderr.trim().split("\n").slice(-3).join(" ").slice(0, 500)}`,
    );
    // Local paths are the operator's own machine: their errors may stay specific.
    if (!target) throw new SandboxError("BAD_BASE", `git clone failed: ${stderr.trim().split("\n").at(-1)}`);
    throw cloneFailure(stderr, ref);
  }

  async exec(sandboxId: string, options: ExecOptions): Promise<ExecResult> {
    if (options.binds?.length && !this.bwrap) {
      throw new SandboxError(
        "ISOLATION_UNAVAILABLE",
        "This command maps paths into the sandbox, which needs bubblewrap",
      );
    }
    return this.serial(sandboxId, async (ws) => {
      try {
        return await execIn(
          { bwrap: this.bwrap, cgroups: this.cgroups, limits: this.limits },
          ws.root,
          options,
          {
            dir: ws.writeDir,
            maxEntries: ws.entryRoom,
          },
        );
      } finally {
        // No set-id bit a command made outlives it on the host (a snapshot would strip it too).
        await ws
          .settle()
          .catch((error) => this.options.log?.("warn", `clearing set-id bits failed: ${error}`));
      }
    });
  }

  async startService(sandboxId: string, options: ServiceOptions): Promise<SandboxService> {
    // In the sandbox's queue, so it never starts in the middle of a snapshot or a reset.
    return this.serial(sandboxId, async (ws) => {
      const services = this.live(sandboxId).services;
      const service = await startServiceIn(
        { bwrap: this.bwrap, cgroups: this.cgroups, limits: this.limits },
        ws.root,
        options,
      );
      services.add(service);
      void service.exited.then(() => services.delete(service));
      return service;
    });
  }

  watchWrites(sandboxId: string, maxBytes: number, onOver: () => void): WriteWatch {
    const { workspace } = this.live(sandboxId);
    const since = Date.now();
    const cap = writeCap(this.limits, maxBytes, workspace.entryRoom);
    let over = false;
    const watch = watchWrites(workspace.writeDir, since, cap, () => {
      over = true;
      onOver();
    });
    return {
      async stop() {
        await watch.stop();
        const measured = await measureWrites(workspace.writeDir, since, cap);
        return { bytes: measured.bytes, over: over || measured.over };
      },
    };
  }

  /** Stops a sandbox's services (before its files are replaced: a reset, a destroy). */
  private async stopServices(live: Live): Promise<void> {
    await Promise.all([...live.services].map((service) => service.stop()));
  }

  async snapshot(sandboxId: string): Promise<SnapshotInfo> {
    return this.serial(sandboxId, async (ws) => {
      const id = this.store.newSnapshotId();
      const parent = ws.base;
      // Processes that keep the workspace open are paused while it is captured, so what they write
      // (a conversation database and its journal) is taken at one instant: crash-consistent.
      const services = [...this.live(sandboxId).services];
      let frozen: Awaited<ReturnType<Workspace["freeze"]>>;
      if (services.length === 0) frozen = await ws.freeze(id);
      else {
        try {
          await Promise.all(services.map((service) => service.freeze()));
          await ws.settle();
          frozen = await ws.freezeInPlace(id);
        } finally {
          await Promise.all(services.map((service) => service.thaw()));
        }
      }
      const record = await this.store.commit({
        id,
        parent,
        manifest: frozen.manifest,
        delta: frozen.delta,
        layers: frozen.layers,
      });
      ws.base = id;
      const parentManifest = parent ? await this.store.manifest(parent) : null;
      // A record that stores the listing whole (every so often along a chain) pays for that copy.
      const listing = record.full && parent ? listingBytes(frozen.manifest) : 0;
      return {
        ...info(record),
        addedBytes: addedBytes(parentManifest, frozen.delta, frozen.extraBytes + listing),
      };
    });
  }

  async fork(snapshotId: string): Promise<string> {
    await this.store.record(snapshotId);
    return this.adopt((dir) => this.factory.fromSnapshot(dir, snapshotId));
  }

  async reset(sandboxId: string, snapshotId: string): Promise<void> {
    await this.store.record(snapshotId);
    const live = this.live(sandboxId);
    // A service holds the files a reset throws away: it stops (its owner starts it again on them).
    await this.serial(sandboxId, async (ws) => {
      await this.stopServices(live);
      await ws.reset(snapshotId);
    });
  }

  async destroy(sandboxId: string): Promise<void> {
    const live = this.sandboxes.get(sandboxId);
    if (!live) return;
    this.sandboxes.delete(sandboxId);
    await live.queue;
    await this.stopServices(live);
    await live.workspace.destroy();
  }

  // ---- snapshots and files -------------------------------------------------------------------------

  async getSnapshot(snapshotId: string): Promise<SnapshotInfo> {
    return info(await this.store.record(snapshotId));
  }

  async listFiles(source: FileSource, dir = "", page?: ListPage): Promise<FileEntry[]> {
    if ("snapshot" in source) return listSnapshot(await this.store.manifest(source.snapshot), dir, page);
    return listLive(this.live(source.sandbox).workspace.root, dir, page);
  }

  async readFile(source: FileSource, path: string, options: ReadOptions = {}): Promise<Uint8Array | null> {
    if ("snapshot" in source) {
      const entry = findSnapshotFile(await this.store.manifest(source.snapshot), path);
      if (!entry) return null;
      const { maxBytes } = options;
      return this.store.readObject(
        entry.h!,
        maxBytes === undefined ? undefined : { maxBytes, path, size: entry.s },
      );
    }
    return readLive(this.live(source.sandbox).workspace.root, path, options);
  }

  async writeFile(
    sandboxId: string,
    path: string,
    content: Uint8Array | string,
    mode?: number,
  ): Promise<void> {
    cleanPath(path);
    const data = typeof content === "string" ? new TextEncoder().encode(content) : content;
    return this.serial(sandboxId, (ws) => writeLive(ws.root, path, data, mode));
  }

  async diff(fromSnapshotId: string, toSnapshotId: string): Promise<DiffEntry[]> {
    const [from, to] = await Promise.all([
      this.store.manifest(fromSnapshotId),
      this.store.manifest(toSnapshotId),
    ]);
    return diffManifests(from, to, (hash) => this.store.readObject(hash), this.options.patcher);
  }

  async gc(roots: readonly string[]): Promise<GcResult> {
    const live = [...this.sandboxes.values()].map((s) => s.workspace.base).filter((b): b is string => !!b);
    return this.store.gc([...roots, ...live]);
  }

  /** Where a live sandbox's files are on this host, for host-side tools (importers, benchmarks). */
  hostPath(sandboxId: string): string {
    return this.live(sandboxId).workspace.root;
  }

  /** Store consistency check (tests, operators). */
  fsck(): Promise<string[]> {
    return this.store.fsck();
  }

  async close(): Promise<void> {
    for (const id of [...this.sandboxes.keys()]) await this.destroy(id).catch(() => {});
    await this.cgroups?.close();
  }
}

function info(record: SnapshotRecord): SnapshotInfo {
  return {
    id: record.id,
    parentId: record.parent,
    createdAt: new Date(record.createdAt),
    fileCount: record.fileCount,
    sizeBytes: record.sizeBytes,
  };
}
