// Race-free host access to directories a sandbox controls. A running command can swap any component
// of a path for a symlink at any moment, so a path is never handed to the kernel whole (realpath then
// open is a check-then-use race). Instead it is walked one component at a time from an open
// directory descriptor, each step through /proc/self/fd/<fd>/<name> with O_NOFOLLOW: the magic link
// pins the directory already opened, so renames and symlink swaps elsewhere cannot redirect the walk.
// A symlink is followed only by reading it and walking its relative target the same way, and only
// while that stays beneath the root: openat2(RESOLVE_BENEATH) semantics without native code, in any
// runtime with numeric open flags (Bun, Node, Deno). Linux only, like the rest of this provider.
//
// (No npm package does this: the openat2 bindings need a native addon, and path-based "safe join"
// helpers such as realpath checks are exactly the race being avoided.)
import { type BigIntStats, constants as C, closeSync, lstatSync, openSync, readdirSync } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import * as fs from "node:fs/promises";
import { SandboxError } from "../provider.ts";

// Bun and Node add O_CLOEXEC to every open, so none of these descriptors leaks into a command.
const DIR = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW;
/** A second descriptor on a directory already held: its magic link must be followed (no O_NOFOLLOW). */
const REOPEN = C.O_RDONLY | C.O_DIRECTORY;
/** O_NONBLOCK: a FIFO swapped in must not hang the server; O_NOCTTY: nor become its terminal. */
const FILE = C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK | C.O_NOCTTY;
/** Symlinks followed in one resolution, as the kernel's MAXSYMLINKS. */
const MAX_HOPS = 40;
/** Directories a tree walk descends into at most (each level holds one descriptor). */
const MAX_DEPTH = 1024;

/** An open directory: a handle, or a bare descriptor (tree walks scan directories synchronously). */
export type Dir = FileHandle | number;

/** The path that names `name` inside the directory `dir` holds open (or that directory itself). */
export function at(dir: Dir, name?: string): string {
  const fd = typeof dir === "number" ? dir : dir.fd;
  return name === undefined ? `/proc/self/fd/${fd}` : `/proc/self/fd/${fd}/${name}`;
}

/**
 * Opens entry `name` of `dir` for reading (or fchmod) without following it; null when it is gone or
 * is a symlink. Opening a directory this way works too. The caller checks what it got with fstat.
 */
export async function openEntry(dir: Dir, name: string): Promise<FileHandle | null> {
  try {
    return await fs.open(at(dir, name), FILE);
  } catch (error) {
    if (isGone(error)) return null;
    throw error;
  }
}

/** Opens a directory whose path the host controls (a workspace root); its last component is not followed. */
export function openDir(path: string): Promise<FileHandle> {
  return fs.open(path, DIR);
}

export async function withDir<T>(path: string, fn: (dir: FileHandle) => Promise<T>): Promise<T> {
  const dir = await openDir(path);
  try {
    return await fn(dir);
  } finally {
    await dir.close();
  }
}

export function errnoOf(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

/** Errors that mean "nothing usable there": missing, not a directory, a symlink where none is allowed. */
export function isGone(error: unknown): boolean {
  const code = errnoOf(error);
  return code === "ENOENT" || code === "ENOTDIR" || code === "ELOOP" || code === "ENXIO";
}

function outside(path: string): SandboxError {
  return new SandboxError("BAD_PATH", `Path "${path}" leads outside the workspace`);
}

function tooManyLinks(): Error {
  return Object.assign(new Error("Too many levels of symbolic links"), { code: "ELOOP" });
}

async function readlinkOrNull(path: string): Promise<string | null> {
  try {
    return await fs.readlink(path);
  } catch {
    return null; // not a symlink (any more), or gone
  }
}

function components(path: string): string[] {
  return path.split("/").filter((p) => p !== "" && p !== ".");
}

/** What the last component turned out to be: a result, or a symlink whose target is walked next. */
type Last<T> = { value: T } | { link: string };

export interface ResolveOptions {
  /** Follow symlinks that stay beneath the root (default); otherwise any symlink on the way refuses. */
  follow?: boolean;
  /** Create missing directories on the way (mode 0o755). */
  create?: boolean;
}

/**
 * Walks `path` beneath `root` and hands its last component, with the directory holding it pinned,
 * to `last` (`name` null when the path names a directory itself). Intermediate components must be
 * directories; a symlink among them is read and its target walked instead (an absolute target, or
 * one climbing above the root, is refused with BAD_PATH). `..` inside link targets goes back up
 * the directories actually walked, never through the kernel's `..`.
 */
async function resolve<T>(
  root: FileHandle,
  path: string,
  options: ResolveOptions,
  last: (dir: FileHandle, name: string | null) => Promise<Last<T>>,
): Promise<T> {
  const follow = options.follow !== false;
  const todo = components(path).reverse();
  const done: string[] = [];
  let hops = 0;
  let creates = 0;
  const expand = (target: string) => {
    if (++hops > MAX_HOPS) throw tooManyLinks();
    if (target.startsWith("/")) throw outside(path);
    todo.push(...target.split("/").reverse());
  };
  let cur = await fs.open(at(root), REOPEN);
  try {
    while (todo.length > 0) {
      const name = todo.pop()!;
      if (name === "" || name === ".") continue;
      if (name === "..") {
        if (done.length === 0) throw outside(path);
        done.pop();
        const up = await walkPlain(root, done);
        await cur.close();
        cur = up;
        continue;
      }
      if (todo.length === 0) {
        const result = await last(cur, name);
        if ("value" in result) return result.value;
        expand(result.link);
        continue;
      }
      let next: FileHandle;
      try {
        next = await fs.open(at(cur, name), DIR);
      } catch (error) {
        const code = errnoOf(error);
        if (code === "ENOENT" && options.create && ++creates <= MAX_HOPS) {
          await fs.mkdir(at(cur, name), { mode: 0o755 }).catch((e) => {
            if (errnoOf(e) !== "EEXIST") throw e;
          });
          todo.push(name);
          continue;
        }
        if ((code === "ELOOP" || code === "ENOTDIR") && follow) {
          const target = await readlinkOrNull(at(cur, name));
          if (target !== null) {
            expand(target); // the target's components take `name`'s place
            continue;
          }
        }
        throw error;
      }
      await cur.close();
      cur = next;
      done.push(name);
    }
    const result = await last(cur, null);
    if ("value" in result) return result.value;
    throw tooManyLinks(); // unreachable: a directory is never a link
  } finally {
    await cur.close();
  }
}

/** Re-opens a directory by names already walked once, following nothing. */
async function walkPlain(root: FileHandle, names: string[]): Promise<FileHandle> {
  let cur = await fs.open(at(root), REOPEN);
  try {
    for (const name of names) {
      const next = await fs.open(at(cur, name), DIR);
      await cur.close();
      cur = next;
    }
    return cur;
  } catch (error) {
    await cur.close();
    throw error;
  }
}

/**
 * Opens the regular file at `path` beneath `root` for reading; null when there is none (missing, a
 * directory, a FIFO or device, a dangling or looping link). The caller closes the handle.
 */
export function openFileBeneath(
  root: FileHandle,
  path: string,
  options: ResolveOptions = {},
): Promise<FileHandle | null> {
  return resolve<FileHandle | null>(root, path, options, async (dir, name) => {
    if (name === null) return { value: null };
    const stat = await fs.lstat(at(dir, name)).catch(() => null);
    if (!stat) return { value: null };
    if (stat.isSymbolicLink()) {
      const target = options.follow === false ? null : await readlinkOrNull(at(dir, name));
      return target === null ? { value: null } : { link: target };
    }
    // Only regular files are opened: opening a device or socket can have effects of its own.
    if (!stat.isFile()) return { value: null };
    let file: FileHandle;
    try {
      file = await fs.open(at(dir, name), FILE);
    } catch (error) {
      if (isGone(error)) return { value: null }; // swapped for a symlink or removed meanwhile
      throw error;
    }
    let regular = false;
    try {
      regular = (await file.stat()).isFile();
    } finally {
      if (!regular) await file.close();
    }
    return { value: regular ? file : null };
  });
}

/** Opens the directory at `path` beneath `root`; null when there is none. The caller closes it. */
export function openDirBeneath(
  root: FileHandle,
  path: string,
  options: ResolveOptions = {},
): Promise<FileHandle | null> {
  return resolve<FileHandle | null>(root, path, options, async (dir, name) => {
    if (name === null) return { value: await fs.open(at(dir), REOPEN) };
    try {
      return { value: await fs.open(at(dir, name), DIR) };
    } catch (error) {
      const code = errnoOf(error);
      if (code === "ENOENT" && options.create) {
        await fs.mkdir(at(dir, name), { mode: 0o755 }).catch((e) => {
          if (errnoOf(e) !== "EEXIST") throw e;
        });
        return { value: await fs.open(at(dir, name), DIR).catch(() => null) };
      }
      if ((code === "ELOOP" || code === "ENOTDIR") && options.follow !== false) {
        const target = await readlinkOrNull(at(dir, name));
        if (target !== null) return { link: target };
      }
      if (isGone(error)) return { value: null };
      throw error;
    }
  });
}

/**
 * The directory that holds `path`'s last component, opened beneath `root`, and that component's
 * name (not followed: writes replace a symlink, they never write through it). Missing directories on
 * the way are created with `create`. Refuses the root itself. The caller closes `dir`.
 */
export async function openParentBeneath(
  root: FileHandle,
  path: string,
  options: ResolveOptions = {},
): Promise<{ dir: FileHandle; name: string }> {
  const parts = components(path);
  const name = parts.pop();
  if (name === undefined || name === "..") throw new SandboxError("BAD_PATH", "A file path is required");
  const dir = await openDirBeneath(root, parts.join("/"), options);
  if (!dir) throw new SandboxError("BAD_PATH", `"${path}": a parent is not a directory`);
  return { dir, name };
}

// ---------------------------------------------------------------------------------------------------
// whole trees

export interface DirEntry {
  name: string;
  /** Relative to the walk's root, "a/b/name". */
  path: string;
  stat: BigIntStats;
}

export interface Listing {
  /** Relative to the walk's root; "" for the root. */
  path: string;
  /** The directory, held open while `visit` runs: reach entries as at(dir, name). */
  dir: number;
  entries: DirEntry[];
}

/** Entries lstat-ed between two turns of the event loop. */
const SCAN_SLICE = 512;
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

function lstatOrNull(path: string): BigIntStats | null {
  try {
    return lstatSync(path, { bigint: true });
  } catch {
    return null; // removed meanwhile
  }
}

/**
 * Visits every directory beneath `root` (parents before their children), never following a symlink:
 * each directory is opened from its parent's descriptor with O_NOFOLLOW, so a swap mid-walk cannot
 * lead outside. `visit` gets a directory pinned with its entries lstat-ed; every entry that is a
 * directory is walked next. A parent's descriptor stays open only until its subdirectories are
 * opened (depth-first, so few are open at a time).
 *
 * Directories are scanned with synchronous calls, a slice at a time between turns of the event loop:
 * tens of thousands of lstats through the thread pool cost about twice as much, and the loop is never
 * held for more than a slice. Up to `parallel` visits (which may hash files) run at once.
 */
export async function walkDirs(
  root: string,
  visit: (listing: Listing) => Promise<void>,
  { parallel = 8 }: { parallel?: number } = {},
): Promise<void> {
  interface Ref {
    fd: number;
    users: number;
  }
  interface Task {
    parent: Ref | null;
    name: string;
    path: string;
    depth: number;
  }
  const release = (ref: Ref | null) => {
    if (ref && --ref.users === 0) closeSync(ref.fd);
  };
  const stack: Task[] = [{ parent: null, name: root, path: "", depth: 0 }];
  let failure: { error: unknown } | null = null;

  const runTask = async (task: Task) => {
    await nextTurn();
    let fd: number;
    try {
      fd = openSync(task.parent ? at(task.parent.fd, task.name) : root, DIR);
    } catch (error) {
      if (task.parent && isGone(error)) return; // removed or swapped for a symlink meanwhile: skipped
      throw error;
    } finally {
      release(task.parent);
    }
    const ref: Ref = { fd, users: 1 };
    try {
      const names = readdirSync(at(fd));
      const entries: DirEntry[] = [];
      for (let i = 0; i < names.length; i++) {
        if (i > 0 && i % SCAN_SLICE === 0) await nextTurn();
        const name = names[i]!;
        const stat = lstatOrNull(at(fd, name));
        if (stat) entries.push({ name, path: task.path ? `${task.path}/${name}` : name, stat });
      }
      await visit({ path: task.path, dir: fd, entries });
      for (const entry of entries) {
        if (!entry.stat.isDirectory()) continue;
        if (task.depth + 1 > MAX_DEPTH)
          throw new SandboxError("FAILED", `Directories nested deeper than ${MAX_DEPTH} levels`);
        ref.users++;
        stack.push({ parent: ref, name: entry.name, path: entry.path, depth: task.depth + 1 });
      }
    } finally {
      release(ref);
    }
  };

  await new Promise<void>((done, fail) => {
    let active = 0;
    const pump = () => {
      while (!failure && active < parallel && stack.length > 0) {
        const task = stack.pop()!;
        active++;
        runTask(task).then(
          () => {
            active--;
            pump();
          },
          (error) => {
            failure ??= { error };
            active--;
            pump();
          },
        );
      }
      if (active > 0) return;
      if (failure) {
        // Tasks never started still hold their parents open.
        for (const task of stack.splice(0)) release(task.parent);
        fail(failure.error);
      } else if (stack.length === 0) done();
    };
    pump();
  });
}
