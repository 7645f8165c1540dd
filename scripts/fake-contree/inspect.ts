// Reading saved images without a VM: directory listings (FileItem, or `ls -l`-like text), exact file
// bytes, tar archives of a subtree, and grep. Running operations' unsaved trees are never visible.
//
// grep stands in for ripgrep with JavaScript regular expressions: patterns are OR-ed, hidden files
// are searched, files with a NUL byte in their first 8 KiB are skipped as binary, symlinks inside
// the tree are not followed, every requested path must exist (404). `line_text` is the line without
// its terminator and `line_bytes` its length in bytes; `max_total` sets `truncated`.
import type { Stats } from "node:fs";
import { lstat, open, readdir, readFile, readlink } from "node:fs/promises";
import { join } from "node:path";
import { badRequest, unprocessable } from "./errors.ts";
import { type TarEntry, tarStream } from "./tar.ts";
import { resolveInRoot } from "./tree.ts";
import { queryInt } from "./wire.ts";

interface Names {
  users: Map<number, string>;
  groups: Map<number, string>;
}

async function namesOf(root: string): Promise<Names> {
  const read = async (path: string) => {
    try {
      const resolved = await resolveInRoot(root, path);
      return await readFile(resolved.host, "utf8");
    } catch {
      return "";
    }
  };
  const parse = (text: string) => {
    const map = new Map<number, string>();
    for (const line of text.split("\n")) {
      const [name, , id] = line.split(":");
      if (name && id && /^\d+$/.test(id) && !map.has(Number(id))) map.set(Number(id), name);
    }
    return map;
  };
  return { users: parse(await read("/etc/passwd")), groups: parse(await read("/etc/group")) };
}

// Without root the fake's files belong to the user running it, which is root inside the sandbox.
const hostUid = process.getuid?.() ?? 0;
const hostGid = process.getgid?.() ?? 0;
const imageUid = (uid: number) => (hostUid !== 0 && uid === hostUid ? 0 : uid);
const imageGid = (gid: number) => (hostUid !== 0 && gid === hostGid ? 0 : gid);

function fileItem(name: string, stat: Stats, names: Names, symlinkTo: string) {
  const uid = imageUid(stat.uid);
  const gid = imageGid(stat.gid);
  return {
    size: stat.size,
    path: name,
    owner: names.users.get(uid) ?? uid,
    group: names.groups.get(gid) ?? gid,
    uid,
    gid,
    mode: stat.mode,
    mtime: Math.floor(stat.mtimeMs / 1000),
    nlink: stat.nlink,
    is_dir: stat.isDirectory(),
    is_regular: stat.isFile(),
    is_symlink: stat.isSymbolicLink(),
    is_socket: stat.isSocket(),
    is_fifo: stat.isFIFO(),
    symlink_to: symlinkTo,
  };
}

type FileItem = ReturnType<typeof fileItem>;

function modeString(item: FileItem): string {
  const type = item.is_dir ? "d" : item.is_symlink ? "l" : item.is_fifo ? "p" : item.is_socket ? "s" : "-";
  const bits = "rwxrwxrwx";
  let perms = "";
  for (let i = 0; i < 9; i++) perms += item.mode & (1 << (8 - i)) ? bits[i] : "-";
  return type + perms;
}

function requirePath(query: URLSearchParams): string {
  const path = query.get("path");
  if (!path) throw badRequest("path is required");
  if (!path.startsWith("/")) throw unprocessable(`path must be absolute: ${path}`);
  return path;
}

export async function listDirectory(root: string, query: URLSearchParams) {
  const path = requirePath(query);
  const dir = await resolveInRoot(root, path);
  const stat = await lstat(dir.host);
  if (!stat.isDirectory()) throw unprocessable(`not a directory: ${path}`);
  const names = await namesOf(root);
  const files: FileItem[] = [];
  for (const name of (await readdir(dir.host)).sort()) {
    const host = join(dir.host, name);
    const entry = await lstat(host).catch(() => null);
    if (!entry) continue;
    files.push(fileItem(name, entry, names, entry.isSymbolicLink() ? await readlink(host) : ""));
  }
  const listing = { path: dir.inImage, files };
  if (!query.has("text")) return { json: listing };
  const lines = files.map((f) => {
    const date = new Date(f.mtime * 1000).toISOString().slice(0, 16).replace("T", " ");
    const link = f.is_symlink ? ` -> ${f.symlink_to}` : "";
    return `${modeString(f)} ${String(f.nlink).padStart(3)} ${String(f.owner).padEnd(8)} ${String(f.group).padEnd(8)} ${String(f.size).padStart(10)} ${date} ${f.path}${link}`;
  });
  return { text: `total ${files.length}\n${lines.join("\n")}${lines.length ? "\n" : ""}` };
}

/** The host path and size of a regular file in the image (symlinks followed inside the image). */
export async function fileForDownload(root: string, query: URLSearchParams) {
  const path = requirePath(query);
  const file = await resolveInRoot(root, path);
  const stat = await lstat(file.host);
  if (!stat.isFile()) throw unprocessable(`not a regular file: ${path}`);
  return { host: file.host, size: stat.size };
}

/** Checks the archive's path and returns the tar stream of it. */
export async function archive(root: string, query: URLSearchParams): Promise<AsyncGenerator<Buffer>> {
  const path = requirePath(query);
  const top = await resolveInRoot(root, path);
  const names = await namesOf(root);
  const entry = (name: string, stat: Stats, host: string, linkname?: string): TarEntry => ({
    name,
    type: stat.isDirectory() ? "dir" : stat.isSymbolicLink() ? "symlink" : "file",
    mode: stat.mode,
    uid: imageUid(stat.uid),
    gid: imageGid(stat.gid),
    uname: names.users.get(imageUid(stat.uid)) ?? "",
    gname: names.groups.get(imageGid(stat.gid)) ?? "",
    mtime: stat.mtimeMs / 1000,
    size: stat.isFile() ? stat.size : 0,
    linkname,
    source: stat.isFile() ? host : undefined,
  });
  async function* walk(host: string, name: string): AsyncGenerator<TarEntry> {
    const stat = await lstat(host).catch(() => null);
    if (!stat) return;
    if (stat.isSymbolicLink()) {
      yield entry(name, stat, host, await readlink(host));
      return;
    }
    if (!stat.isDirectory() && !stat.isFile()) return; // sockets, fifos, devices
    if (name) yield entry(name, stat, host);
    if (!stat.isDirectory()) return;
    for (const child of (await readdir(host)).sort()) {
      yield* walk(join(host, child), name ? `${name}/${child}` : child);
    }
  }
  return tarStream(walk(top.host, top.inImage.slice(1)));
}

// ---- grep ----

function globToRegExp(glob: string): RegExp {
  let re = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === "*") {
      if (glob[i + 1] === "*") {
        re += ".*";
        i++;
        if (glob[i + 1] === "/") i++;
      } else re += "[^/]*";
    } else if (c === "?") re += "[^/]";
    else if (c === "[") {
      const end = glob.indexOf("]", i + 1);
      if (end < 0) re += "\\[";
      else {
        re += `[${glob.slice(i + 1, end).replace(/^!/, "^")}]`;
        i = end;
      }
    } else if (c === "{") {
      const end = glob.indexOf("}", i + 1);
      if (end < 0) re += "\\{";
      else {
        re += `(?:${glob
          .slice(i + 1, end)
          .split(",")
          .map((p) => p.replace(/[.+^$()|\\]/g, "\\$&").replace(/\*/g, "[^/]*"))
          .join("|")})`;
        i = end;
      }
    } else re += c.replace(/[.+^$()|\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

interface Glob {
  re: RegExp;
  withSlash: boolean;
}

function globMatches(globs: Glob[], rel: string, base: string): boolean {
  return globs.some((g) =>
    g.withSlash ? g.re.test(rel) || g.re.test(rel.replace(/^.*?\//, "")) : g.re.test(base),
  );
}

interface GrepMatch {
  path: string;
  line_number: number;
  absolute_offset: number;
  line_text: string;
  line_bytes: number;
  submatches: { text: string; start: number; end: number }[];
  type: "match" | "context";
}

export async function grep(root: string, query: URLSearchParams) {
  const patterns = query.getAll("pattern").filter((p) => p !== "");
  if (!patterns.length) throw badRequest("pattern is required");
  const mode = (query.get("case") ?? "sensitive").toLowerCase();
  if (!["sensitive", "insensitive", "ignore", "smart"].includes(mode))
    throw badRequest(`invalid case: ${mode}`);
  const insensitive =
    mode === "insensitive" ||
    mode === "ignore" ||
    (mode === "smart" && patterns.every((p) => p === p.toLowerCase()));
  let regex: RegExp;
  try {
    regex = new RegExp(patterns.map((p) => `(?:${p})`).join("|"), insensitive ? "gi" : "g");
  } catch (error) {
    throw badRequest(`invalid pattern: ${error instanceof Error ? error.message : error}`);
  }
  const maxCount = queryInt(query, "max_count", Number.MAX_SAFE_INTEGER, 1);
  const maxTotal = queryInt(query, "max_total", 10_000, 1);
  const before = queryInt(query, "before", 0, 0, 1000);
  const after = queryInt(query, "after", 0, 0, 1000);
  const globs = query.getAll("glob").filter(Boolean);
  const includes: Glob[] = globs
    .filter((g) => !g.startsWith("!"))
    .map((g) => ({ re: globToRegExp(g), withSlash: g.includes("/") }));
  const excludes: Glob[] = globs
    .filter((g) => g.startsWith("!"))
    .map((g) => ({ re: globToRegExp(g.slice(1)), withSlash: g.slice(1).includes("/") }));
  const paths = query.getAll("path").filter(Boolean);
  if (!paths.length) paths.push("/");
  const starts: { host: string; inImage: string }[] = [];
  for (const path of paths) {
    if (!path.startsWith("/")) throw unprocessable(`path must be absolute: ${path}`);
    starts.push(await resolveInRoot(root, path));
  }

  const matches: GrepMatch[] = [];
  let total = 0;
  let truncated = false;

  const searchFile = async (host: string, inImage: string, size: number) => {
    if (size > 64 * 1024 * 1024) return;
    const handle = await open(host, "r");
    let content: Buffer;
    try {
      content = await handle.readFile();
    } finally {
      await handle.close();
    }
    if (content.subarray(0, 8192).includes(0)) return;
    const text = content.toString("utf8");
    const lines = text.split("\n");
    if (lines.length > 1 && lines[lines.length - 1] === "") lines.pop();
    const offsets: number[] = [];
    let offset = 0;
    for (const line of lines) {
      offsets.push(offset);
      offset += Buffer.byteLength(line) + 1;
    }
    const hits = new Map<number, GrepMatch["submatches"]>();
    for (let i = 0; i < lines.length && hits.size < maxCount; i++) {
      const line = lines[i]!;
      regex.lastIndex = 0;
      const subs: GrepMatch["submatches"] = [];
      for (let m = regex.exec(line); m; m = regex.exec(line)) {
        const start = Buffer.byteLength(line.slice(0, m.index));
        subs.push({ text: m[0], start, end: start + Buffer.byteLength(m[0]) });
        if (m[0] === "") regex.lastIndex++;
        if (regex.lastIndex > line.length) break;
      }
      if (!subs.length) continue;
      if (total >= maxTotal) {
        truncated = true;
        break;
      }
      total++;
      hits.set(i, subs);
    }
    if (!hits.size) return;
    const shown = new Set<number>();
    for (const i of hits.keys()) {
      for (let j = Math.max(0, i - before); j <= Math.min(lines.length - 1, i + after); j++) shown.add(j);
    }
    for (const i of [...shown].sort((a, b) => a - b)) {
      const line = lines[i]!;
      const subs = hits.get(i);
      matches.push({
        path: inImage,
        line_number: i + 1,
        absolute_offset: offsets[i]!,
        line_text: line,
        line_bytes: Buffer.byteLength(line),
        submatches: subs ?? [],
        type: subs ? "match" : "context",
      });
    }
  };

  const walk = async (host: string, inImage: string, rel: string, top: boolean): Promise<void> => {
    if (truncated) return;
    const stat = top ? await lstat(host) : await lstat(host).catch(() => null);
    if (!stat || stat.isSymbolicLink()) return;
    const base = inImage.split("/").pop() ?? "";
    if (!top && excludes.length && globMatches(excludes, rel, base)) return;
    if (stat.isDirectory()) {
      for (const name of (await readdir(host)).sort()) {
        await walk(
          join(host, name),
          inImage === "/" ? `/${name}` : `${inImage}/${name}`,
          rel ? `${rel}/${name}` : name,
          false,
        );
        if (truncated) return;
      }
      return;
    }
    if (!stat.isFile()) return;
    if (includes.length && !globMatches(includes, rel || base, base)) return;
    await searchFile(host, inImage, stat.size);
  };

  for (const start of starts) await walk(start.host, start.inImage, "", true);
  return { path: starts[0]!.inImage, patterns, matches, truncated };
}
