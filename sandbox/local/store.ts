// The content-addressed store: file contents under objects/<sha256>, one record per snapshot under
// snapshots/<id>.json. A record is written last (temp file, fsync, rename), so it is the commit
// point: a process killed mid-snapshot leaves unreferenced objects at worst, never half a snapshot.
// Several instances on one machine may share a store (SANDBOX_STORE_DIR): objects and records land
// by rename (whole or not at all, and identical content under one name), each process has its own
// temp directory (start-up clears only those of dead processes), and GC leaves alone whatever is
// younger than a grace period (another instance may be writing a snapshot that is not recorded yet).
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import * as fs from "node:fs/promises";
import { join } from "node:path";
import {
  applyDelta,
  type Manifest,
  type ManifestDelta,
  type ManifestEntry,
  manifestStats,
  manifestWeight,
} from "../manifest.ts";
import { FileTooLargeError, SandboxError } from "../provider.ts";
import { readAtMost } from "./bounded-read.ts";
import { clearSetIdBits } from "./tree.ts";

/** A full manifest is stored every this many snapshots along a chain; the rest are deltas. */
const FULL_EVERY = 16;
/**
 * Resolved manifests kept in memory, by their estimated size (manifestWeight): one of a 150,000-file
 * tree is tens of MB. The most recently used one is always kept, whatever its size (re-reading it for
 * every request would cost more than holding it): hand-written because lru-cache does not store an
 * entry larger than the whole cache.
 */
const MANIFEST_CACHE_BYTES = 64 * 1024 * 1024;

export interface SnapshotRecord {
  id: string;
  parent: string | null;
  createdAt: number;
  /** Deltas since the nearest full manifest up the chain (0 = this record is full). */
  depth: number;
  full?: Record<string, ManifestEntry>;
  delta?: ManifestDelta;
  /** Overlay layers (names under layers/), newest first; empty when the snapshot has none. */
  layers: string[];
  fileCount: number;
  sizeBytes: number;
}

export class Store {
  readonly objectsDir: string;
  readonly snapshotsDir: string;
  readonly layersDir: string;
  readonly tmpDir: string;
  /** Records without their manifest (full or delta), which only the manifest cache holds. */
  private readonly records = new Map<string, SnapshotRecord>();
  private readonly manifests = new Map<string, { manifest: Manifest; weight: number }>();
  private manifestBytes = 0;

  /** Records, objects and layers younger than this are never collected (0: one process uses the store). */
  private readonly gcGraceMs: number;
  private readonly tmpRoot: string;

  constructor(
    readonly root: string,
    options: { gcGraceMs?: number } = {},
  ) {
    this.objectsDir = join(root, "objects");
    this.snapshotsDir = join(root, "snapshots");
    this.layersDir = join(root, "layers");
    this.tmpRoot = join(root, "tmp");
    this.tmpDir = join(this.tmpRoot, `${process.pid}.${randomBytes(4).toString("hex")}`);
    this.gcGraceMs = options.gcGraceMs ?? 0;
  }

  async init(): Promise<void> {
    // Leftovers of killed processes are never referenced: clear them (never a live process's).
    await this.clearDeadTemp();
    for (const dir of [this.objectsDir, this.snapshotsDir, this.layersDir, this.tmpDir]) {
      await fs.mkdir(dir, { recursive: true });
    }
    ownTempDirs.add(this.tmpDir);
    // All 256 fan-out directories up front: storing an object then never needs a mkdir.
    for (let i = 0; i < 256; i++)
      await fs.mkdir(join(this.objectsDir, i.toString(16).padStart(2, "0")), { recursive: true });
  }

  private async clearDeadTemp(): Promise<void> {
    const entries = await fs.readdir(this.tmpRoot).catch(() => [] as string[]);
    for (const name of entries) {
      const pid = /^(\d+)\.[0-9a-f]+$/.exec(name)?.[1];
      if (ownTempDirs.has(join(this.tmpRoot, name))) continue; // another store of this process
      if (pid && Number(pid) !== process.pid && processAlive(Number(pid))) continue;
      await fs.rm(join(this.tmpRoot, name), { recursive: true, force: true });
    }
  }

  tempPath(): string {
    return join(this.tmpDir, `${Date.now().toString(36)}-${randomBytes(6).toString("hex")}`);
  }

  objectPath(hash: string): string {
    return join(this.objectsDir, hash.slice(0, 2), hash.slice(2));
  }

  async hasObject(hash: string): Promise<boolean> {
    return fs.access(this.objectPath(hash)).then(
      () => true,
      () => false,
    );
  }

  /**
   * Stores the content of an open regular file; returns its hash and the bytes hashed. The file is
   * read through its descriptor only (never re-opened by path: the caller opened it with O_NOFOLLOW
   * beneath the workspace). With `link`, a new object is a hard link to the file at `link.path` (only
   * for files nobody writes again, such as a frozen overlay layer), kept only when it is the very
   * inode that was hashed; otherwise the object is a copy of what was read.
   */
  async putFile(
    file: FileHandle,
    size: number,
    link?: { path: string; ino: bigint },
  ): Promise<{ hash: string; size: number }> {
    const read = await readHashed(file, size);
    const target = this.objectPath(read.hash);
    let replace = false;
    if (link) {
      // A hard link appears whole and at once, so it needs no temp file; EEXIST means already stored.
      try {
        await fs.link(link.path, target);
        if ((await fs.stat(target, { bigint: true })).ino === link.ino) return read;
        replace = true; // the name was swapped between hashing and linking: overwrite with a copy
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "EEXIST") return read;
        // EXDEV and friends: fall through to a copy.
      }
    }
    if (!replace && (await this.hasObject(read.hash))) return read;
    // Written through a temp file, so a reader never sees a partial object; what lands is what was hashed.
    const tmp = this.tempPath();
    if (read.data) {
      await fs.writeFile(tmp, read.data, { mode: 0o644 });
      await fs.rename(tmp, target);
      return read;
    }
    const copied = await copyHashed(file, tmp);
    await fs.rename(tmp, this.objectPath(copied.hash));
    return copied;
  }

  /**
   * An object's content. With `maxBytes`, one larger is refused from its size (the manifest entry's
   * `size` when the caller has it, else fstat) before anything is read.
   */
  async readObject(
    hash: string,
    limit?: { maxBytes: number; path: string; size?: number },
  ): Promise<Uint8Array> {
    if (!limit) return new Uint8Array(await fs.readFile(this.objectPath(hash)));
    if (limit.size !== undefined && limit.size > limit.maxBytes)
      throw new FileTooLargeError(limit.path, limit.size, limit.maxBytes);
    const file = await fs.open(this.objectPath(hash), "r");
    try {
      return await readAtMost(file, limit.path, limit.maxBytes);
    } finally {
      await file.close();
    }
  }

  newSnapshotId(): string {
    return `snap-${Date.now().toString(36)}-${randomBytes(8).toString("hex")}`;
  }

  /** Writes a snapshot record from a full manifest; stores a delta when the chain allows. */
  async commit(input: {
    id: string;
    parent: string | null;
    manifest: Manifest;
    delta?: ManifestDelta;
    layers: string[];
  }): Promise<SnapshotRecord> {
    const parent = input.parent ? await this.record(input.parent) : null;
    const depth = parent && input.delta && parent.depth + 1 < FULL_EVERY ? parent.depth + 1 : 0;
    const record: SnapshotRecord = {
      id: input.id,
      parent: input.parent,
      createdAt: Date.now(),
      depth,
      ...(depth === 0 ? { full: Object.fromEntries(input.manifest) } : { delta: input.delta }),
      layers: input.layers,
      ...manifestStats(input.manifest),
    };
    const tmp = this.tempPath();
    const handle = await fs.open(tmp, "w");
    try {
      await handle.writeFile(JSON.stringify(record));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(tmp, this.recordPath(record.id));
    this.records.set(record.id, withoutManifest(record));
    this.cacheManifest(record.id, input.manifest);
    return record;
  }

  private recordPath(id: string): string {
    if (!/^[\w.-]+$/.test(id)) throw new SandboxError("NOT_FOUND", `No snapshot ${id}`);
    return join(this.snapshotsDir, `${id}.json`);
  }

  /** A snapshot's record, without its manifest (see manifest()). */
  async record(id: string): Promise<SnapshotRecord> {
    const cached = this.records.get(id);
    if (cached) return cached;
    return withoutManifest(await this.readRecord(id));
  }

  /** The record as stored, manifest included; its metadata is cached, never its manifest. */
  private async readRecord(id: string): Promise<SnapshotRecord> {
    let text: string;
    try {
      text = await fs.readFile(this.recordPath(id), "utf8");
    } catch {
      throw new SandboxError("NOT_FOUND", `No snapshot ${id}`);
    }
    const record = JSON.parse(text) as SnapshotRecord;
    this.records.set(id, withoutManifest(record));
    return record;
  }

  async exists(id: string): Promise<boolean> {
    return this.record(id).then(
      () => true,
      () => false,
    );
  }

  /** The snapshot's full manifest, resolved through its delta chain. */
  async manifest(id: string): Promise<Manifest> {
    const cached = this.manifests.get(id);
    if (cached) {
      this.manifests.delete(id);
      this.manifests.set(id, cached);
      return cached.manifest;
    }
    const record = await this.readRecord(id);
    let manifest: Manifest;
    if (record.full) manifest = new Map(Object.entries(record.full));
    else manifest = applyDelta(await this.manifest(record.parent!), record.delta ?? {});
    this.cacheManifest(id, manifest);
    return manifest;
  }

  private cacheManifest(id: string, manifest: Manifest) {
    this.forgetManifest(id);
    const weight = manifestWeight(manifest);
    this.manifests.set(id, { manifest, weight });
    this.manifestBytes += weight;
    // Least recently used first; the newest stays even alone over the budget.
    while (this.manifestBytes > MANIFEST_CACHE_BYTES && this.manifests.size > 1)
      this.forgetManifest(this.manifests.keys().next().value!);
  }

  private forgetManifest(id: string) {
    const cached = this.manifests.get(id);
    if (!cached) return;
    this.manifests.delete(id);
    this.manifestBytes -= cached.weight;
  }

  /** Estimated bytes of the manifests held in memory (for tests and diagnostics). */
  get cachedManifestBytes(): number {
    return this.manifestBytes;
  }

  async listSnapshotIds(): Promise<string[]> {
    const names = await fs.readdir(this.snapshotsDir);
    return names.filter((n) => n.endsWith(".json")).map((n) => n.slice(0, -5));
  }

  /**
   * Removes every snapshot not reachable from `roots` through parent links, then every object and
   * layer no remaining snapshot references. Records are deleted child-first so a crash midway never
   * leaves a record whose parent is gone.
   */
  async gc(
    roots: Iterable<string>,
  ): Promise<{ removedSnapshots: number; removedObjects: number; freedBytes: number }> {
    const ids = await this.listSnapshotIds();
    const all = new Map<string, SnapshotRecord>();
    for (const id of ids) all.set(id, await this.record(id));

    const keep = new Set<string>();
    // Records just written (by another instance sharing the store, whose database row may not exist
    // yet) count as roots until the grace period is over.
    const young: string[] = [];
    if (this.gcGraceMs > 0)
      for (const id of ids) if (await this.younger(this.recordPath(id), "mtimeMs")) young.push(id);
    for (const root of [...roots, ...young]) {
      let id: string | null = root;
      while (id && !keep.has(id) && all.has(id)) {
        keep.add(id);
        id = all.get(id)!.parent;
      }
    }
    // A kept delta record needs its chain up to a full manifest, which the parent walk already kept.
    const doomed = ids.filter((id) => !keep.has(id));
    const depthOf = (id: string) => {
      let d = 0;
      for (let p = all.get(id)?.parent; p && all.has(p); p = all.get(p)!.parent) d++;
      return d;
    };
    doomed.sort((a, b) => depthOf(b) - depthOf(a));
    let freedBytes = 0;
    for (const id of doomed) {
      await fs.rm(this.recordPath(id), { force: true });
      this.records.delete(id);
      this.forgetManifest(id);
    }

    const liveObjects = new Set<string>();
    const liveLayers = new Set<string>();
    for (const id of keep) {
      for (const entry of (await this.manifest(id)).values()) if (entry.h) liveObjects.add(entry.h);
      for (const layer of all.get(id)!.layers) liveLayers.add(layer);
    }

    let removedObjects = 0;
    for (const prefix of await fs.readdir(this.objectsDir)) {
      const dir = join(this.objectsDir, prefix);
      for (const rest of await fs.readdir(dir)) {
        if (liveObjects.has(prefix + rest)) continue;
        const path = join(dir, rest);
        const stat = await fs.stat(path).catch(() => null);
        // ctime: set when the object was written or hard-linked in (an in-flight snapshot's objects).
        if (stat && this.gcGraceMs > 0 && Date.now() - stat.ctimeMs < this.gcGraceMs) continue;
        // An object shared with a layer (hard link) frees its bytes when the layer goes too.
        if (stat && stat.nlink <= 1) freedBytes += stat.size;
        await fs.rm(path, { force: true });
        removedObjects++;
      }
    }
    for (const layer of await fs.readdir(this.layersDir)) {
      if (liveLayers.has(layer) || this.pinnedLayers.has(layer)) continue;
      // A flattened layer of a kept snapshot may be mounted by any instance's workspace.
      if (layer.endsWith(".flat") && keep.has(layer.slice(0, -".flat".length))) continue;
      if (this.gcGraceMs > 0 && (await this.younger(join(this.layersDir, layer), "ctimeMs"))) continue;
      freedBytes += await dirSize(join(this.layersDir, layer));
      await fs.rm(join(this.layersDir, layer), { recursive: true, force: true });
    }
    return { removedSnapshots: doomed.length, removedObjects, freedBytes };
  }

  private async younger(path: string, field: "mtimeMs" | "ctimeMs"): Promise<boolean> {
    const stat = await fs.stat(path).catch(() => null);
    return !!stat && Date.now() - stat[field] < this.gcGraceMs;
  }

  /**
   * Stores written before set-id bits were stripped may hold setuid/setgid objects and layer files:
   * they are cleared once, and a marker records that it was done.
   */
  async clearLegacySetIdBits(): Promise<void> {
    const marker = join(this.root, "setid-cleared");
    if (
      await fs.access(marker).then(
        () => true,
        () => false,
      )
    )
      return;
    for (const dir of [this.objectsDir, this.layersDir]) await clearSetIdBits(dir);
    await fs.writeFile(marker, "");
  }

  /** Layers in use outside any snapshot record (e.g. being built); GC leaves them alone. */
  readonly pinnedLayers = new Set<string>();

  /** Checks that every record resolves and every object it references exists with the right hash. */
  async fsck(): Promise<string[]> {
    const problems: string[] = [];
    const checked = new Set<string>();
    for (const id of await this.listSnapshotIds()) {
      let manifest: Manifest;
      try {
        manifest = await this.manifest(id);
      } catch (error) {
        problems.push(`${id}: cannot resolve manifest (${(error as Error).message})`);
        continue;
      }
      for (const [path, entry] of manifest) {
        if (!entry.h || checked.has(entry.h)) continue;
        checked.add(entry.h);
        const objectPath = this.objectPath(entry.h);
        const stat = await fs.stat(objectPath).catch(() => null);
        if (!stat) {
          problems.push(`${id}: ${path}: object ${entry.h} missing`);
          continue;
        }
        if ((await hashFile(objectPath, stat.size)) !== entry.h)
          problems.push(`${id}: ${path}: object ${entry.h} corrupt`);
      }
    }
    return problems;
  }
}

/** Temp directories of this process's stores (several may share one root: tests, a provider per instance). */
const ownTempDirs = new Set<string>();

/** Whether a process with this id runs on this machine (signal 0 checks without sending anything). */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** A record's metadata: what the records cache keeps (its manifest lives in the bounded manifest cache). */
function withoutManifest(record: SnapshotRecord): SnapshotRecord {
  const { full: _full, delta: _delta, ...meta } = record;
  return meta;
}

/** Files up to this size are read whole (hashed and, if new, written from memory); larger ones stream. */
const WHOLE_FILE = 8 * 1024 * 1024;
const CHUNK = 1024 * 1024;

async function readHashed(
  file: FileHandle,
  size: number,
): Promise<{ hash: string; size: number; data: Uint8Array | null }> {
  const hash = createHash("sha256");
  if (size <= WHOLE_FILE) {
    const data = await file.readFile();
    hash.update(data);
    return { hash: hash.digest("hex"), size: data.byteLength, data };
  }
  const buffer = Buffer.allocUnsafe(CHUNK);
  let position = 0;
  for (;;) {
    const { bytesRead } = await file.read(buffer, 0, CHUNK, position);
    if (bytesRead === 0) break;
    hash.update(buffer.subarray(0, bytesRead));
    position += bytesRead;
  }
  return { hash: hash.digest("hex"), size: position, data: null };
}

/** Copies a file from its descriptor into `tmp`, hashing what is written (the source may be changing). */
async function copyHashed(file: FileHandle, tmp: string): Promise<{ hash: string; size: number }> {
  const hash = createHash("sha256");
  const out = await fs.open(tmp, "wx", 0o644);
  try {
    const buffer = Buffer.allocUnsafe(CHUNK);
    let position = 0;
    for (;;) {
      const { bytesRead } = await file.read(buffer, 0, CHUNK, position);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
      await out.write(buffer, 0, bytesRead);
      position += bytesRead;
    }
    return { hash: hash.digest("hex"), size: position };
  } finally {
    await out.close();
  }
}

/** Hashes a file the store owns (objects; never a path a sandbox controls). */
export async function hashFile(path: string, size: number): Promise<string> {
  const hash = createHash("sha256");
  if (size <= 8 * 1024 * 1024) {
    hash.update(await fs.readFile(path));
  } else {
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  }
  return hash.digest("hex");
}

async function dirSize(dir: string): Promise<number> {
  let total = 0;
  const entries = await fs.readdir(dir, { withFileTypes: true, recursive: true }).catch(() => []);
  for (const entry of entries) {
    if (!entry.isFile()) continue;
    const stat = await fs.stat(join(entry.parentPath, entry.name)).catch(() => null);
    if (stat && stat.nlink <= 1) total += stat.size;
  }
  return total;
}
