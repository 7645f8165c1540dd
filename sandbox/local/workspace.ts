// Live workspaces, two ways:
// - overlay: the snapshot's frozen layers as a read-only lower, a fresh upper per workspace; fork and
//   reset are a mount (O(1)), a snapshot scans only the upper and freezes it as the next layer.
// - copy: a full copy materialised from the object store (portable: no mounts, no privileges); a
//   snapshot walks the tree and re-hashes only files whose size/mtime/inode changed.
import { execFile } from "node:child_process";
import * as fs from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { applyDelta, deltaBetween, type Manifest, type ManifestDelta } from "../manifest.ts";
import { SandboxError } from "../provider.ts";
import type { Store } from "./store.ts";
import {
  clearSetIdBits,
  entriesAtMost,
  type FileIndex,
  materialise,
  scanUpper,
  type Tally,
  walkTree,
} from "./tree.ts";

const run = promisify(execFile);

export interface Frozen {
  manifest: Manifest;
  delta: ManifestDelta;
  layers: string[];
  /** Disk space the kept files hold beyond their content (charged with the snapshot: added-bytes.ts). */
  extraBytes: number;
}

export interface WorkspaceOptions {
  /** Entries one snapshot may hold; a freeze past it is refused (QUOTA_EXCEEDED) before anything is stored. */
  maxEntries?: number;
}

/** The default of SANDBOX_MAX_SNAPSHOT_ENTRIES. */
export const MAX_SNAPSHOT_ENTRIES = 500_000;

function tooManyEntries(count: number, max: number): SandboxError {
  return new SandboxError(
    "QUOTA_EXCEEDED",
    `This snapshot would hold ${count >= max ? "more than " : ""}${max.toLocaleString("en")} files, directories and links, the most one snapshot may hold; delete some first`,
  );
}

export interface Workspace {
  /** The directory commands see as /workspace. */
  readonly root: string;
  /** Where writes to the workspace land on the host (overlay: the upper directory; copy: the root). */
  readonly writeDir: string;
  /** The snapshot this workspace started from or last froze (null before the first snapshot). */
  base: string | null;
  /** Entries the next snapshot may add over `base` (what a command may create: its write meter's cap). */
  readonly entryRoom: number;
  /** After a command: clears set-id bits it left, so none outlives the run on the host. */
  settle(): Promise<void>;
  /** Captures the current files as snapshot `id` (the caller commits the record). */
  freeze(id: string): Promise<Frozen>;
  /**
   * Like `freeze`, for a workspace that long-lived processes hold open (a live agent server, paused
   * by the caller meanwhile): nothing they use is unmounted, moved or linked into the store, so they
   * carry on in the same files afterwards.
   */
  freezeInPlace(id: string): Promise<Frozen>;
  /** Throws the workspace's changes away and shows snapshot `id`. */
  reset(id: string): Promise<void>;
  destroy(): Promise<void>;
}

export interface WorkspaceFactory {
  readonly kind: "overlay" | "copy";
  /** An empty workspace. */
  create(dir: string): Promise<Workspace>;
  /** A workspace showing snapshot `id`. */
  fromSnapshot(dir: string, id: string): Promise<Workspace>;
}

/** Deletes a directory in the background after moving it out of the way (rename is instant). */
async function discard(store: Store, dir: string): Promise<void> {
  const trash = store.tempPath();
  try {
    await fs.rename(dir, trash);
  } catch {
    return;
  }
  void fs.rm(trash, { recursive: true, force: true }).catch(() => {});
}

// ---------------------------------------------------------------------------------------------------
// overlay

/** Longer chains are flattened into one layer, keeping mounts fast and option strings short. */
const MAX_LAYERS = 24;
const EMPTY_LAYER = "_empty";

async function mountOverlay(store: Store, layers: string[], upper: string, work: string, merged: string) {
  // Relative lowerdirs (resolved against cwd) keep the option string short enough for deep chains.
  // redirect_dir/metacopy off: renamed or chmod-ed lower directories are copied up whole, so an
  // upper directory always holds complete entries (see scanUpper). nosuid,nodev: nothing a sandbox
  // leaves in the merged view acts as setuid or as a device on the host.
  const lower = (layers.length > 0 ? layers : [EMPTY_LAYER]).join(":");
  const options = `nosuid,nodev,lowerdir=${lower},upperdir=${upper},workdir=${work},redirect_dir=off,metacopy=off,index=off`;
  try {
    await run("mount", ["-t", "overlay", "overlay", "-o", options, merged], { cwd: store.layersDir });
  } catch (error) {
    throw new SandboxError(
      "FAILED",
      `overlay mount failed: ${(error as { stderr?: string }).stderr ?? error}`,
    );
  }
}

async function unmount(merged: string): Promise<void> {
  try {
    await run("umount", [merged]);
  } catch {
    // Busy (a straggling process): detach now, the kernel finishes when it lets go.
    await run("umount", ["-l", merged]).catch(() => {});
  }
}

class OverlayWorkspace implements Workspace {
  readonly root: string;
  readonly writeDir: string;
  private readonly upper: string;
  private readonly work: string;
  /** The snapshot the mounted layers show: what the upper's changes are relative to. */
  private mountedBase: string | null = null;

  constructor(
    private readonly store: Store,
    private readonly dir: string,
    public base: string | null,
    private layers: string[],
    private readonly maxEntries: number,
    /** Entries of `base`. */
    private baseEntries: number,
  ) {
    this.root = join(dir, "merged");
    this.upper = join(dir, "upper");
    this.writeDir = this.upper;
    this.work = join(dir, "work");
  }

  get entryRoom(): number {
    return this.maxEntries - this.baseEntries;
  }

  async mount(): Promise<void> {
    for (const d of [this.root, this.upper, this.work]) await fs.mkdir(d, { recursive: true });
    await mountOverlay(this.store, this.layers, this.upper, this.work, this.root);
    this.mountedBase = this.base;
  }

  async settle(): Promise<void> {
    // Only the upper can hold what a command made; the change goes through the mount. Space files
    // reserved past their end is given back on the upper's own inodes (same content, same size).
    await clearSetIdBits(this.upper, this.root, { releaseSpace: true });
  }

  /** Refuses a freeze whose snapshot would hold too many entries, before anything is linked or moved. */
  private async checkEntries(upper: string, lower: Manifest): Promise<void> {
    const count = await entriesAtMost(upper, lower, this.maxEntries);
    if (count > this.maxEntries) throw tooManyEntries(count, this.maxEntries);
  }

  async freeze(id: string): Promise<Frozen> {
    const lower = this.base ? await this.store.manifest(this.base) : new Map();
    await this.checkEntries(this.upper, lower);
    const tally: Tally = { extraBytes: 0 };
    const delta = await scanUpper(this.store, this.upper, this.root, lower, tally);
    const manifest = applyDelta(lower, delta);
    await unmount(this.root);
    // The upper becomes the snapshot's own layer: it is never written again.
    await fs.rename(this.upper, join(this.store.layersDir, id));
    let layers = [id, ...this.layers];
    if (layers.length > MAX_LAYERS) layers = [await flatten(this.store, manifest, `${id}.flat`)];
    await fs.rm(this.work, { recursive: true, force: true });
    this.layers = layers;
    this.base = id;
    this.baseEntries = manifest.size;
    await this.mount();
    return { manifest, delta, layers, extraBytes: tally.extraBytes };
  }

  async freezeInPlace(id: string): Promise<Frozen> {
    // The upper keeps serving the mount: a copy of it (whiteouts and opaque-dir xattrs included)
    // becomes the snapshot's layer, and store objects are linked from that copy only. The mount is
    // unchanged, so the upper stays relative to the mounted layers, which the new layer sits on.
    const mounted = this.mountedBase ? await this.store.manifest(this.mountedBase) : new Map();
    await this.checkEntries(this.upper, mounted);
    const copy = this.store.tempPath();
    await run("cp", ["-a", "--reflink=auto", this.upper, copy]);
    const tally: Tally = { extraBytes: 0 };
    const delta = await scanUpper(this.store, copy, this.root, mounted, tally);
    const manifest = applyDelta(mounted, delta);
    await fs.rename(copy, join(this.store.layersDir, id));
    let layers = [id, ...this.layers];
    if (layers.length > MAX_LAYERS) layers = [await flatten(this.store, manifest, `${id}.flat`)];
    const parent = this.base ? await this.store.manifest(this.base) : new Map();
    this.base = id;
    this.baseEntries = manifest.size;
    return { manifest, delta: deltaBetween(parent, manifest), layers, extraBytes: tally.extraBytes };
  }

  async reset(id: string): Promise<void> {
    const record = await this.store.record(id);
    const layers = record.layers.length > 0 ? record.layers : [await ensureLayer(this.store, id)];
    await unmount(this.root);
    await discard(this.store, this.upper);
    await fs.rm(this.work, { recursive: true, force: true });
    this.base = id;
    this.baseEntries = (await this.store.manifest(id)).size;
    this.layers = layers;
    await this.mount();
  }

  async destroy(): Promise<void> {
    await unmount(this.root);
    await discard(this.store, this.dir);
  }
}

/** Materialises a full manifest as one read-only layer. */
async function flatten(store: Store, manifest: Manifest, name: string): Promise<string> {
  const target = join(store.layersDir, name);
  if (await fs.stat(target).catch(() => null)) return name;
  const tmp = store.tempPath();
  store.pinnedLayers.add(name);
  await materialise(store, manifest, tmp);
  try {
    await fs.rename(tmp, target);
  } catch (error) {
    // Another instance sharing the store built the same layer first: theirs is identical.
    if (!(await fs.stat(target).catch(() => null))) throw error;
    await fs.rm(tmp, { recursive: true, force: true });
  }
  return name;
}

/** A snapshot without layers (taken by a copy workspace) gets one, built from the store. */
async function ensureLayer(store: Store, id: string): Promise<string> {
  return flatten(store, await store.manifest(id), `${id}.flat`);
}

export async function overlayFactory(
  store: Store,
  { maxEntries = MAX_SNAPSHOT_ENTRIES }: WorkspaceOptions = {},
): Promise<WorkspaceFactory> {
  await fs.mkdir(join(store.layersDir, EMPTY_LAYER), { recursive: true });
  store.pinnedLayers.add(EMPTY_LAYER);
  return {
    kind: "overlay",
    async create(dir) {
      const ws = new OverlayWorkspace(store, dir, null, [], maxEntries, 0);
      await ws.mount();
      return ws;
    },
    async fromSnapshot(dir, id) {
      const record = await store.record(id);
      const layers = record.layers.length > 0 ? record.layers : [await ensureLayer(store, id)];
      const entries = (await store.manifest(id)).size;
      const ws = new OverlayWorkspace(store, dir, id, layers, maxEntries, entries);
      await ws.mount();
      return ws;
    },
  };
}

/** Whether this process may mount overlays here (root, or a capable namespace). */
export async function canMountOverlay(store: Store): Promise<boolean> {
  const dir = store.tempPath();
  try {
    for (const d of ["l", "u", "w", "m"]) await fs.mkdir(join(dir, d), { recursive: true });
    await run("mount", [
      "-t",
      "overlay",
      "overlay",
      "-o",
      `lowerdir=${dir}/l,upperdir=${dir}/u,workdir=${dir}/w`,
      `${dir}/m`,
    ]);
    await run("umount", [`${dir}/m`]);
    return true;
  } catch {
    return false;
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/** Unmounts whatever a previous process left mounted under `dir` (live workspaces do not survive). */
export async function unmountAllUnder(dir: string): Promise<void> {
  const mounts = await fs.readFile("/proc/self/mounts", "utf8").catch(() => "");
  const targets = mounts
    .split("\n")
    .map((line) => line.split(" ")[1]?.replace(/\\040/g, " "))
    .filter((t): t is string => !!t && t.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const target of targets) await unmount(target);
}

// ---------------------------------------------------------------------------------------------------
// copy

class CopyWorkspace implements Workspace {
  readonly root: string;
  readonly writeDir: string;

  constructor(
    private readonly store: Store,
    private readonly dir: string,
    public base: string | null,
    private index: FileIndex,
    private readonly maxEntries: number,
    /** Entries of `base`. */
    private baseEntries: number,
  ) {
    this.root = join(dir, "ws");
    this.writeDir = this.root;
  }

  get entryRoom(): number {
    return this.maxEntries - this.baseEntries;
  }

  async settle(): Promise<void> {
    await clearSetIdBits(this.root, undefined, { releaseSpace: true });
  }

  async freeze(_id: string): Promise<Frozen> {
    const lower: Manifest = this.base ? await this.store.manifest(this.base) : new Map();
    // A walk only copies into the store (objects no snapshot refers to yet, which GC removes), so the
    // count can be checked on the result.
    const { manifest, index, extraBytes } = await walkTree(this.store, this.root, this.index);
    if (manifest.size > this.maxEntries) throw tooManyEntries(manifest.size, this.maxEntries);
    this.index = index;
    this.baseEntries = manifest.size;
    return { manifest, delta: deltaBetween(lower, manifest), layers: [], extraBytes };
  }

  /** A walk moves and links nothing: the same as `freeze`. */
  freezeInPlace(id: string): Promise<Frozen> {
    return this.freeze(id);
  }

  async reset(id: string): Promise<void> {
    const manifest = await this.store.manifest(id);
    await discard(this.store, this.root);
    this.index = await materialise(this.store, manifest, this.root);
    this.base = id;
    this.baseEntries = manifest.size;
  }

  async destroy(): Promise<void> {
    await discard(this.store, this.dir);
  }
}

export function copyFactory(
  store: Store,
  { maxEntries = MAX_SNAPSHOT_ENTRIES }: WorkspaceOptions = {},
): WorkspaceFactory {
  return {
    kind: "copy",
    async create(dir) {
      await fs.mkdir(join(dir, "ws"), { recursive: true });
      return new CopyWorkspace(store, dir, null, new Map(), maxEntries, 0);
    },
    async fromSnapshot(dir, id) {
      const manifest = await store.manifest(id);
      const index = await materialise(store, manifest, join(dir, "ws"));
      return new CopyWorkspace(store, dir, id, index, maxEntries, manifest.size);
    },
  };
}
