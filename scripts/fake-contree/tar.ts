// A small streaming POSIX tar writer (ustar headers, PAX extended headers for long or non-ASCII
// names, long link targets and large sizes/ids): directories, regular files and symlinks.
import { open } from "node:fs/promises";

export interface TarEntry {
  /** Path inside the archive, without a leading slash; directories without the trailing slash. */
  name: string;
  type: "file" | "dir" | "symlink";
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  mtime: number;
  size: number;
  linkname?: string;
  /** Host file to read the content from (regular files). */
  source?: string;
}

const BLOCK = 512;
const encoder = new TextEncoder();

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, "0")}\0`;
}

function fits(value: number, width: number): boolean {
  return value >= 0 && value < 8 ** (width - 1);
}

function isAscii(text: string): boolean {
  return /^[\x20-\x7e]*$/.test(text);
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let length = Buffer.byteLength(body) + 1;
  while (String(length).length + Buffer.byteLength(body) !== length)
    length = String(length).length + Buffer.byteLength(body);
  return `${length}${body}`;
}

function header(fields: {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: string;
  uname: string;
  gname: string;
  prefix: string;
}): Buffer {
  const buf = Buffer.alloc(BLOCK);
  const put = (text: string, offset: number, width: number) => {
    buf.write(text.slice(0, width), offset, width, "utf8");
  };
  put(fields.name, 0, 100);
  put(octal(fields.mode & 0o7777, 8), 100, 8);
  put(octal(fields.uid, 8), 108, 8);
  put(octal(fields.gid, 8), 116, 8);
  put(octal(fields.size, 12), 124, 12);
  put(octal(Math.max(0, Math.floor(fields.mtime)), 12), 136, 12);
  buf.fill(0x20, 148, 156);
  put(fields.typeflag, 156, 1);
  put(fields.linkname, 157, 100);
  put("ustar\0", 257, 6);
  put("00", 263, 2);
  put(fields.uname, 265, 32);
  put(fields.gname, 297, 32);
  put(fields.prefix, 345, 155);
  let sum = 0;
  for (const byte of buf) sum += byte;
  put(`${sum.toString(8).padStart(6, "0")}\0 `, 148, 8);
  return buf;
}

function padding(size: number): Buffer {
  const rest = size % BLOCK;
  return Buffer.alloc(rest === 0 ? 0 : BLOCK - rest);
}

/** Splits a long name into ustar prefix/name when possible. */
function splitName(name: string): { prefix: string; name: string } | null {
  if (Buffer.byteLength(name) <= 100) return { prefix: "", name };
  for (let i = name.length - 1; i > 0; i--) {
    if (name[i] !== "/") continue;
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(rest) <= 100 && rest)
      return { prefix, name: rest };
  }
  return null;
}

export function entryHeader(entry: TarEntry): Buffer {
  const name = entry.type === "dir" ? `${entry.name}/` : entry.name;
  const size = entry.type === "file" ? entry.size : 0;
  const linkname = entry.linkname ?? "";
  const pax: string[] = [];
  let split = isAscii(name) ? splitName(name) : null;
  if (!split) {
    pax.push(paxRecord("path", name));
    split = { prefix: "", name: name.slice(0, 99) };
  }
  if (Buffer.byteLength(linkname) > 100 || !isAscii(linkname)) pax.push(paxRecord("linkpath", linkname));
  if (!fits(size, 12)) pax.push(paxRecord("size", String(size)));
  if (!fits(entry.uid, 8)) pax.push(paxRecord("uid", String(entry.uid)));
  if (!fits(entry.gid, 8)) pax.push(paxRecord("gid", String(entry.gid)));
  const blocks: Buffer[] = [];
  if (pax.length) {
    const body = Buffer.from(encoder.encode(pax.join("")));
    blocks.push(
      header({
        name: `PaxHeaders/${split.name}`.slice(0, 99),
        mode: 0o644,
        uid: 0,
        gid: 0,
        size: body.byteLength,
        mtime: entry.mtime,
        typeflag: "x",
        linkname: "",
        uname: "",
        gname: "",
        prefix: "",
      }),
      body,
      padding(body.byteLength),
    );
  }
  blocks.push(
    header({
      name: split.name,
      prefix: split.prefix,
      mode: entry.mode,
      uid: fits(entry.uid, 8) ? entry.uid : 0,
      gid: fits(entry.gid, 8) ? entry.gid : 0,
      size: fits(size, 12) ? size : 0,
      mtime: entry.mtime,
      typeflag: entry.type === "file" ? "0" : entry.type === "dir" ? "5" : "2",
      linkname: Buffer.byteLength(linkname) > 100 ? linkname.slice(0, 99) : linkname,
      uname: entry.uname,
      gname: entry.gname,
    }),
  );
  return Buffer.concat(blocks);
}

/** The archive as chunks: each entry's header(s), file content in 64 KiB pieces, then two zero blocks. */
export async function* tarStream(entries: AsyncIterable<TarEntry>): AsyncGenerator<Buffer> {
  for await (const entry of entries) {
    yield entryHeader(entry);
    if (entry.type !== "file" || !entry.source || entry.size === 0) continue;
    const handle = await open(entry.source, "r");
    try {
      let left = entry.size;
      while (left > 0) {
        const chunk = Buffer.alloc(Math.min(left, 64 * 1024));
        const { bytesRead } = await handle.read(chunk, 0, chunk.byteLength, entry.size - left);
        if (bytesRead === 0) {
          // The file shrank: keep the archive well-formed.
          yield Buffer.alloc(left);
          break;
        }
        yield chunk.subarray(0, bytesRead);
        left -= bytesRead;
      }
    } finally {
      await handle.close();
    }
    yield padding(entry.size);
  }
  yield Buffer.alloc(BLOCK * 2);
}
