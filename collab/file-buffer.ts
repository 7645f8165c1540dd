// A branch file room is the live editing buffer of one text file in the branch's workspace. Opening
// it loads the file; edits are written back shortly after (throttled) and always before queued work
// on the branch starts; whatever queued work changed in the file comes back as small edits.
//
// All reads and writes run inside the branch's work queue, so they never interleave with a run.
// The doc's "meta" map records the last sync with the workspace (hash of the content, which sandbox,
// at which head). It is stored with the room's update log, and tells who is newer when a stored room
// reopens: the buffer, when the workspace still holds what we last synced or was re-created at the
// same head (a restart: live workspaces do not outlive the process); else the workspace, which
// something changed meanwhile.
//
// Across instances, only the instance holding the branch's live sandbox writes it: a buffer elsewhere
// is a plain replica of the room (its edits reach the owner's copy of the room through the update log
// and the bus, and the owner writes them). A buffer checks before each write or read-back that what it
// knows of the workspace is still what the doc's "meta" says (another instance may have synced since,
// e.g. after the branch changed owner); when not, it opens again instead of merging from stale ground.
import { createHash } from "node:crypto";
import * as Y from "yjs";
import type { SandboxFiles } from "../resolvers/branch-runtime.ts";
import { AppError } from "../resolvers/errors.ts";
import { utf8Text } from "../sandbox/diff.ts";
import { FileTooLargeError, SandboxError } from "../sandbox/provider.ts";
import { REMOTE, type Room } from "./room.ts";
import { applyTextChange } from "./text-edit.ts";

/** The origin of the server's own changes: they are not edits to write back. */
const SERVER = "server";

export interface BranchFiles {
  /** Runs `fn` on the branch's live sandbox, queued behind its other work. */
  withFiles<T>(branchId: string, fn: (files: SandboxFiles) => Promise<T>): Promise<T>;
  /** The branch's live sandbox right now, if there is one (for reads that need not wait). */
  filesNow(branchId: string): SandboxFiles | undefined;
}

export interface FileBufferOptions {
  files: BranchFiles;
  maxBytes: number;
  /** Longest time an edit waits before it is written to the workspace. */
  flushMs: number;
  onError(message: string, error: unknown): void;
  /** Called when the file can no longer be edited live (a run made it binary or too large). */
  onRefused(error: AppError): void;
}

/** The workspace state a buffer last synced with, as written to the doc's "meta". */
interface Synced {
  base: string;
  sandbox: string;
  head: string;
}

const tooLargeToEdit = (path: string, size: number, maxBytes: number) =>
  new AppError(
    "PAYLOAD_TOO_LARGE",
    `${path} is ${size} bytes; files over ${maxBytes} bytes cannot be edited live`,
    { size, maxBytes },
  );

/**
 * The file's text read from the workspace, or a refusal for binary and oversized files (refused from
 * their size, before they are read). null = no such file.
 */
export async function readText(files: SandboxFiles, path: string, maxBytes: number): Promise<string | null> {
  let data: Uint8Array | null;
  try {
    data = await files.read(path, { maxBytes });
  } catch (error) {
    if (error instanceof FileTooLargeError) throw tooLargeToEdit(path, error.size, maxBytes);
    throw error;
  }
  return decodeText(data, path, maxBytes);
}

/** The file's text, or a refusal for binary and oversized files. null = no such file. */
export function decodeText(data: Uint8Array | null, path: string, maxBytes: number): string | null {
  if (data === null) return null;
  if (data.byteLength > maxBytes) throw tooLargeToEdit(path, data.byteLength, maxBytes);
  const text = utf8Text(data);
  if (text === null)
    throw new AppError(
      "BAD_USER_INPUT",
      `${path} is a binary file; only UTF-8 text files can be edited live`,
    );
  return text;
}

const hashOf = (content: string | null) =>
  content === null ? "absent" : createHash("sha256").update(content).digest("hex");

export class FileBuffer {
  /** What the workspace holds as far as we know: last read or written (null = no such file). */
  private base: string | null = null;
  /** The doc as it was when its text last equalled `base` (the basis for merging disk changes). */
  private baseState: Uint8Array | null = null;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private refused = false;
  /** What this buffer last wrote to (or read from) the workspace; null: not opened here yet. */
  private synced: Synced | null = null;

  constructor(
    readonly room: Room,
    readonly branchId: string,
    readonly path: string,
    private readonly options: FileBufferOptions,
  ) {
    room.doc.on("update", (_update: Uint8Array, origin: unknown) => {
      if (origin === SERVER || origin === "load") return;
      // Edits accepted on other instances are written by the owner of the workspace: this one, if it
      // holds the live sandbox (checked when the timer fires).
      if (origin !== REMOTE || this.text.toString() !== (this.base ?? "")) this.scheduleFlush();
    });
  }

  private get text() {
    return this.room.doc.getText("content");
  }

  private get meta() {
    return this.room.doc.getMap<string>("meta");
  }

  /**
   * Loads the workspace file into the room, whose doc may already hold stored state. With `queued`
   * false (read outside the branch's queue, e.g. during a run) it only reads: a write it needs waits
   * for the queue, and the after-run sync brings in whatever the run still changes.
   */
  async open(files: SandboxFiles, queued = true): Promise<void> {
    const disk = await readText(files, this.path, this.options.maxBytes);
    const meta = this.meta;
    const unchanged = meta.get("base") === hashOf(disk);
    const recreated = meta.get("sandbox") !== files.sandboxId && meta.get("head") === files.head;
    if (meta.has("base") && (unchanged || recreated)) {
      this.setBase(disk, files);
      if (queued) await this.flush(files);
      else if (this.text.toString() !== (disk ?? "")) this.scheduleFlush();
    } else {
      applyTextChange(this.text, disk ?? "", SERVER);
      this.setBase(disk, files);
    }
  }

  /** Whether what this buffer knows of the workspace still holds (same sandbox, meta unchanged). */
  private current(sandboxId: string): boolean {
    const synced = this.synced;
    const meta = this.meta;
    return (
      synced !== null &&
      synced.sandbox === sandboxId &&
      meta.get("base") === synced.base &&
      meta.get("sandbox") === synced.sandbox &&
      meta.get("head") === synced.head
    );
  }

  /** Writes the buffer to the workspace if it differs from what the workspace holds. */
  async flush(files: SandboxFiles): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.refused) return;
    if (!this.current(files.sandboxId)) return this.open(files);
    const content = this.text.toString();
    if (content === (this.base ?? "")) return;
    const data = new TextEncoder().encode(content);
    if (data.byteLength > this.options.maxBytes) {
      this.options.onError("file buffer over the size limit; not written", { path: this.path });
      return;
    }
    try {
      await files.write(this.path, data);
    } catch (error) {
      // The path cannot hold a file (a directory, or under a symlink): editing it live cannot work.
      if (error instanceof SandboxError && error.code === "BAD_PATH")
        return this.refuse(
          new AppError("BAD_USER_INPUT", `${this.path} cannot be written: ${error.message}`),
        );
      throw error;
    }
    this.setBase(content, files);
  }

  /** Brings changes made to the file on disk (by a run, a write, a rollback) into the buffer. */
  async sync(files: SandboxFiles): Promise<void> {
    if (this.refused) return;
    if (!this.current(files.sandboxId)) {
      try {
        return await this.open(files);
      } catch (error) {
        if (error instanceof AppError) return this.refuse(error);
        throw error;
      }
    }
    let disk: string | null;
    try {
      disk = await readText(files, this.path, this.options.maxBytes);
    } catch (error) {
      // Binary or too large now: refused. Anything else is transient; the caller logs it.
      if (error instanceof AppError) return this.refuse(error);
      throw error;
    }
    if (disk === this.base) return this.setBase(disk, files); // the head may have moved
    if (this.text.toString() === (this.base ?? "") || !this.baseState) {
      applyTextChange(this.text, disk ?? "", SERVER);
      this.setBase(disk, files);
      return;
    }
    // People typed since the last sync. The disk's change is made against the synced state in a
    // scratch doc, and Yjs merges it with their edits item by item: every change lands where it was
    // made, and nothing typed is dropped. The merged text then goes to disk at once.
    const basis = new Y.Doc();
    Y.applyUpdate(basis, this.baseState);
    const before = Y.encodeStateVector(basis);
    applyTextChange(basis.getText("content"), disk ?? "", SERVER);
    Y.applyUpdate(this.room.doc, Y.encodeStateAsUpdate(basis, before), SERVER);
    basis.destroy();
    this.setBase(disk, files);
    await this.flush(files);
  }

  /**
   * Whether the workspace of this live sandbox holds everything the buffer holds (nothing left to
   * write), or the buffer no longer writes at all (refused: the workspace wins).
   */
  settledIn(sandboxId: string): boolean {
    if (this.refused) return true;
    return this.current(sandboxId) && this.text.toString() === (this.base ?? "");
  }

  private refuse(error: AppError) {
    this.refused = true;
    this.options.onRefused(error);
  }

  private setBase(content: string | null, files: SandboxFiles) {
    this.base = content;
    this.baseState = this.text.toString() === (content ?? "") ? Y.encodeStateAsUpdate(this.room.doc) : null;
    const synced = { base: hashOf(content), sandbox: files.sandboxId, head: files.head };
    this.synced = synced;
    const meta = this.meta;
    const changed = Object.entries(synced).filter(([key, value]) => meta.get(key) !== value);
    if (changed.length > 0)
      this.room.doc.transact(() => {
        for (const [key, value] of changed) meta.set(key, value);
      }, SERVER);
  }

  private scheduleFlush() {
    if (this.timer || this.refused) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      // Only where the branch's live sandbox is: elsewhere the owner's copy of the room writes.
      if (!this.options.files.filesNow(this.branchId)) return;
      this.options.files
        .withFiles(this.branchId, (files) => this.flush(files))
        .catch((error) => this.options.onError("file buffer flush failed", error));
    }, this.options.flushMs);
  }

  /** Stops the timer; the caller flushes first when the buffer should reach the workspace. */
  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.refused = true;
  }
}
