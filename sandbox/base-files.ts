// The files of a `{ kind: "files" }` sandbox base, checked and decoded once for every provider:
// strings are UTF-8, `{ content, encoding: "base64" }` is bytes, and the whole map is bounded.
import { type FileMap, SandboxError } from "./provider.ts";

const MAX_BASE_FILES = 10_000;
const MAX_BASE_BYTES = 64 * 1024 * 1024;

export interface BaseFile {
  data: Uint8Array;
  /** Permission bits when the caller gave them. */
  mode?: number;
}

/** Path (as given) -> bytes and mode; TOO_LARGE past the bounds, BAD_BASE for a malformed entry. */
export function decodeBaseFiles(files: FileMap): Map<string, BaseFile> {
  const entries = Object.entries(files);
  if (entries.length > MAX_BASE_FILES) throw new SandboxError("TOO_LARGE", `At most ${MAX_BASE_FILES} files`);
  const out = new Map<string, BaseFile>();
  let total = 0;
  for (const [path, input] of entries) {
    const spec = typeof input === "string" ? { content: input } : input;
    if (typeof spec?.content !== "string")
      throw new SandboxError("BAD_BASE", `"${path}": content must be a string`);
    const data =
      spec.encoding === "base64" ? Buffer.from(spec.content, "base64") : Buffer.from(spec.content, "utf8");
    total += data.byteLength;
    if (total > MAX_BASE_BYTES) throw new SandboxError("TOO_LARGE", `Files exceed ${MAX_BASE_BYTES} bytes`);
    out.set(path, { data, mode: spec.mode });
  }
  return out;
}
