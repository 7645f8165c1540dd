// A small reader for the tar streams of ConTree's inspect/archive endpoint (POSIX ustar with PAX
// extended headers, GNU long names tolerated): enough to turn an image's subtree into a manifest.
// Hand-written because it is ~80 lines and the npm tar readers pull in Node stream machinery.

export interface TarEntry {
  /** As stored, "/"-separated, without a leading "./". */
  name: string;
  type: "file" | "dir" | "symlink" | "other";
  mode: number;
  size: number;
  linkName: string;
  data: Uint8Array;
}

const BLOCK = 512;
const decoder = new TextDecoder();

function text(block: Uint8Array, offset: number, length: number): string {
  const field = block.subarray(offset, offset + length);
  const end = field.indexOf(0);
  return decoder.decode(end < 0 ? field : field.subarray(0, end));
}

function octal(block: Uint8Array, offset: number, length: number): number {
  const value = text(block, offset, length).trim();
  return value ? Number.parseInt(value, 8) : 0;
}

/** PAX records: "<length> <key>=<value>\n" repeated. */
function paxRecords(data: Uint8Array): Record<string, string> {
  const records: Record<string, string> = {};
  const all = decoder.decode(data);
  let at = 0;
  while (at < all.length) {
    const space = all.indexOf(" ", at);
    if (space < 0) break;
    const length = Number.parseInt(all.slice(at, space), 10);
    if (!(length > 0)) break;
    const record = all.slice(space + 1, at + length - 1);
    const eq = record.indexOf("=");
    if (eq > 0) records[record.slice(0, eq)] = record.slice(eq + 1);
    at += length;
  }
  return records;
}

const clean = (name: string) => name.replace(/^\.\//, "").replace(/\/+$/, "");

export function readTar(archive: Uint8Array): TarEntry[] {
  const entries: TarEntry[] = [];
  let offset = 0;
  let pax: Record<string, string> = {};
  let longName: string | null = null;
  let longLink: string | null = null;
  const files = new Map<string, Uint8Array>();
  while (offset + BLOCK <= archive.length) {
    const header = archive.subarray(offset, offset + BLOCK);
    if (header.every((b) => b === 0)) break; // end of archive
    const flag = String.fromCharCode(header[156]!);
    const size = pax.size ? Number(pax.size) : octal(header, 124, 12);
    const data = archive.subarray(offset + BLOCK, offset + BLOCK + size);
    offset += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
    if (flag === "x") {
      pax = { ...pax, ...paxRecords(data) };
      continue;
    }
    if (flag === "g") continue; // global PAX header: nothing we use
    if (flag === "L") {
      longName = decoder.decode(data).replace(/\0+$/, "");
      continue;
    }
    if (flag === "K") {
      longLink = decoder.decode(data).replace(/\0+$/, "");
      continue;
    }
    const prefix = text(header, 345, 155);
    const stored = text(header, 0, 100);
    const name = pax.path ?? longName ?? (prefix ? `${prefix}/${stored}` : stored);
    const type =
      flag === "0" || flag === "\0" || flag === "7" || flag === "1"
        ? "file"
        : flag === "5"
          ? "dir"
          : flag === "2"
            ? "symlink"
            : "other";
    const linkName = pax.linkpath ?? longLink ?? text(header, 157, 100);
    // A hard link is another name for a file stored earlier in the archive: same content.
    const content = flag === "1" ? (files.get(clean(linkName)) ?? new Uint8Array()) : data;
    const entry: TarEntry = {
      name: clean(name),
      type,
      mode: octal(header, 100, 8) & 0o7777,
      size: type === "file" ? content.byteLength : 0,
      linkName: flag === "1" ? "" : linkName,
      data: type === "file" ? content : new Uint8Array(),
    };
    if (type === "file") files.set(entry.name, entry.data);
    entries.push(entry);
    pax = {};
    longName = null;
    longLink = null;
  }
  return entries;
}
