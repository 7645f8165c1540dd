// The sandbox provider interface: what `local` (workspaces on disk) and `contree` (microVMs) both do.
// A sandbox is a live, writable filesystem where commands run; a snapshot is an immutable copy of one.

export type FileInput = string | { content: string; encoding?: "utf8" | "base64"; mode?: number };
export type FileMap = Record<string, FileInput>;

export type SandboxBase =
  | { kind: "empty" }
  | { kind: "files"; files: FileMap }
  /** A git repository: http(s), file:// or a local path. */
  | { kind: "git"; url: string; ref?: string };

export type EntryType = "file" | "dir" | "symlink";

export interface FileEntry {
  /** Relative to the workspace root, "/"-separated, no leading slash. */
  path: string;
  type: EntryType;
  size: number;
  /** Permission bits (e.g. 0o644). */
  mode: number;
  /** Symlink target. */
  target?: string;
}

export interface SnapshotInfo {
  id: string;
  parentId: string | null;
  createdAt: Date;
  fileCount: number;
  sizeBytes: number;
  /**
   * Bytes of file content this snapshot added over its parent: new and changed files whose content
   * the parent did not hold, each distinct content once (a one-byte append to a big file adds the whole
   * new file: the store keeps whole files). What storage quotas charge. Omitted when the provider
   * cannot tell (the caller estimates it).
   */
  addedBytes?: number;
}

export interface OutputChunk {
  stream: "stdout" | "stderr";
  data: Uint8Array;
}

export interface ExecOptions {
  command: string;
  env?: Record<string, string>;
  /** Wall-clock limit; the whole process tree is killed when it passes. */
  timeoutMs?: number;
  /** Combined stdout+stderr cap; the run is killed when it passes. */
  maxOutputBytes?: number;
  /**
   * Bytes of new or changed files the command may leave in the sandbox (e.g. what is left of a storage
   * quota), below the provider's own cap. Over it, the command is killed (`killedBy: "disk"`).
   * Providers that cannot measure during a run ignore it; their snapshots are charged afterwards.
   */
  maxWriteBytes?: number;
  /** Outbound network (off by default). */
  network?: boolean;
  /**
   * Host paths made visible inside the sandbox for this command only (an agent binary, the model
   * gateway's socket). Read-only unless `writable` (a unix socket must be writable to connect).
   * Providers with `binds: "files"` copy read-only regular files in instead (see ProviderStatus).
   */
  binds?: { host: string; sandbox: string; writable?: boolean }[];
  signal?: AbortSignal;
  onOutput?: (chunk: OutputChunk) => void;
}

/**
 * "disk": the command wrote more than it may into the sandbox. Its writes must not be kept: the caller
 * resets the sandbox to its last snapshot instead of snapshotting it.
 */
export type KillReason = "timeout" | "output" | "memory" | "abort" | "disk";

export interface ExecResult {
  /** null when the process was killed by a signal. */
  exitCode: number | null;
  signal: string | null;
  killedBy: KillReason | null;
  durationMs: number;
  /** CPU time of the whole process tree, where measurable. */
  cpuMs: number | null;
  outputBytes: number;
  /** Bytes of files the command wrote into the sandbox, where measured (at least the cap when over). */
  writtenBytes?: number;
}

export type DiffChange = "added" | "modified" | "deleted";

/**
 * BINARY: not UTF-8 text; TOO_LARGE: a side is over the per-file size limit; TOO_COMPLEX: too many
 * changes to diff at a bounded cost; BUDGET_EXCEEDED: this diff already patched as many files, bytes
 * or seconds as one diff may.
 */
export type PatchOmitted = "BINARY" | "TOO_LARGE" | "TOO_COMPLEX" | "BUDGET_EXCEEDED";

export interface DiffEntry {
  path: string;
  change: DiffChange;
  type: EntryType;
  binary: boolean;
  /** Unified patch for text files (omitted for binary or oversized files). */
  patch?: string;
  /** Why a file's content changed but it has no patch. */
  patchOmitted?: PatchOmitted;
  oldMode?: number;
  newMode?: number;
}

export type FileSource = { sandbox: string } | { snapshot: string };

export interface ReadOptions {
  /**
   * Largest file to return, in bytes. A larger one is refused with FileTooLargeError (TOO_LARGE)
   * from its size alone (fstat, a manifest entry), and no more than `maxBytes + 1` bytes are ever read
   * (a file growing while it is read is refused too): a sparse 900 MB file costs nothing to ask for.
   */
  maxBytes?: number;
}

/**
 * One page of a directory listing: entries sorted by path, those after `after` and before `before`
 * (paths of the same listing, as returned; each bound exclusive), at most `limit` of them: the first
 * ones, or with `fromEnd` the last ones (still returned in path order). Only the page is
 * materialised, however large the directory.
 */
export interface ListPage {
  after?: string;
  before?: string;
  limit: number;
  fromEnd?: boolean;
}

export interface GcResult {
  removedSnapshots: number;
  removedObjects: number;
  freedBytes: number;
}

export interface ProviderStatus {
  name: string;
  /** "bubblewrap" or "none" (local), "microvm" (contree). */
  isolation: string;
  /** How workspaces are materialised, e.g. "overlay" or "copy" (local), "images" (contree). */
  workspaces: string;
  /**
   * "host": any host path (unix sockets included) can be bound in for a command; "files": only
   * read-only regular files, copied into the sandbox (they stay in its image, outside the workspace).
   */
  binds: "host" | "files";
  /**
   * How the agent runs on this provider's sandboxes: "live" (a kept-alive `opencode serve` per branch,
   * reached from the host) or "per-turn" (`opencode run` per turn: a microVM cannot be reached from
   * outside).
   */
  agentMode: "live" | "per-turn";
  warnings: string[];
}

/**
 * A long-lived process in a sandbox (a branch's live agent server): the same isolation and limits as
 * a command (no network unless asked, processes, memory), no wall-clock limit, and never outliving
 * the sandbox: a reset or destroy stops it.
 */
export interface ServiceOptions {
  command: string;
  env?: Record<string, string>;
  /** As for exec: host paths made visible inside (a socket directory must be writable). */
  binds?: { host: string; sandbox: string; writable?: boolean }[];
  onOutput?: (chunk: OutputChunk) => void;
}

export interface SandboxService {
  /** The host pid of the service's outermost process. */
  readonly pid: number;
  /** Settles when the service has stopped, for whatever reason (stop, crash, reset, destroy). */
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  /** Stops every process of the service; resolves once they are gone. */
  stop(): Promise<void>;
  /** Memory charged to the service's processes now, in bytes (null where not measured). */
  memoryBytes(): Promise<number | null>;
}

/** Counts what is written into a live sandbox from now on, for work that is not an exec (an agent turn). */
export interface WriteWatch {
  stop(): Promise<{ bytes: number; over: boolean }>;
}

export interface SandboxProvider {
  readonly status: ProviderStatus;
  /**
   * Starts a long-lived process in the sandbox (providers whose sandboxes can be reached from the host
   * only). Snapshots taken while it runs hold a consistent view of its files: the provider pauses
   * the service's processes while it captures them.
   */
  startService?(sandboxId: string, options: ServiceOptions): Promise<SandboxService>;
  /** Meters writes into the sandbox from now on, calling `onOver` once past `maxBytes`. */
  watchWrites?(sandboxId: string, maxBytes: number, onOver: () => void): WriteWatch;
  /** A new live sandbox holding the base's files. */
  create(base: SandboxBase): Promise<string>;
  exec(sandboxId: string, options: ExecOptions): Promise<ExecResult>;
  /** Freezes the sandbox's files as a new snapshot whose parent is the sandbox's current snapshot. */
  snapshot(sandboxId: string): Promise<SnapshotInfo>;
  /** A new live sandbox holding exactly the snapshot's files. */
  fork(snapshotId: string): Promise<string>;
  /** Resets a live sandbox to a snapshot (rollback); later snapshots of it take that one as parent. */
  reset(sandboxId: string, snapshotId: string): Promise<void>;
  getSnapshot(snapshotId: string): Promise<SnapshotInfo>;
  /** A directory's entries sorted by path: all of them, or one page. */
  listFiles(source: FileSource, dir?: string, page?: ListPage): Promise<FileEntry[]>;
  /** null when there is no such file. */
  readFile(source: FileSource, path: string, options?: ReadOptions): Promise<Uint8Array | null>;
  writeFile(sandboxId: string, path: string, content: Uint8Array | string, mode?: number): Promise<void>;
  diff(fromSnapshotId: string, toSnapshotId: string): Promise<DiffEntry[]>;
  destroy(sandboxId: string): Promise<void>;
  /** Deletes snapshots (and their data) that no root or live sandbox reaches through parent links. */
  gc(roots: readonly string[]): Promise<GcResult>;
  close(): Promise<void>;
}

export type SandboxErrorCode =
  | "NOT_FOUND"
  | "BAD_PATH"
  | "BAD_BASE"
  | "TOO_LARGE"
  /** A disk or size quota was reached (what a command may write, what a session or user may keep). */
  | "QUOTA_EXCEEDED"
  | "ISOLATION_UNAVAILABLE"
  | "BUSY"
  /** The provider cannot do this at all (ConTree: host binds, deletion, inbound ports). */
  | "UNSUPPORTED"
  /** The provider's service is unreachable or failing; retry later. */
  | "UNAVAILABLE"
  | "FAILED";

export class SandboxError extends Error {
  constructor(
    readonly code: SandboxErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "SandboxError";
  }
}

/** A file over a read's `maxBytes`, refused before it was read. */
export class FileTooLargeError extends SandboxError {
  constructor(
    readonly path: string,
    /** The file's size, or the bytes seen so far when it grew while being read (then > maxBytes). */
    readonly size: number,
    readonly maxBytes: number,
  ) {
    super("TOO_LARGE", `"${path}" is ${size} bytes; at most ${maxBytes} bytes can be read`);
    this.name = "FileTooLargeError";
  }
}
