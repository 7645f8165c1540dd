// The limits a user-supplied workspace path must meet before any filesystem sees it, so a name the
// kernel would refuse (ENAMETOOLONG) is a clear BAD_PATH up front instead of an unexpected error
// half-way through writing a workspace.
import { cleanPath } from "./manifest.ts";
import { SandboxError } from "./provider.ts";

/** One path component (NAME_MAX on Linux filesystems). */
export const MAX_NAME_BYTES = 255;
/**
 * A whole workspace-relative path. Linux refuses absolute paths past 4,096 bytes (PATH_MAX), and a
 * local workspace's own directory comes first, so a relative path gets 3,072 of them.
 */
export const MAX_PATH_BYTES = 3072;

const utf8Length = (s: string) => Buffer.byteLength(s, "utf8");

/**
 * `path` normalised to "a/b/c" (as cleanPath does: no NUL, no "..", a leading "/" is the root), or
 * BAD_PATH when a component or the whole exceeds what a filesystem takes.
 */
export function checkWorkspacePath(path: string, options: { allowRoot?: boolean } = {}): string {
  // Bounded before splitting, so a megabyte-long path costs nothing.
  if (path.length > MAX_PATH_BYTES * 2) throw new SandboxError("BAD_PATH", "Path too long");
  const clean = cleanPath(path, options);
  if (utf8Length(clean) > MAX_PATH_BYTES)
    throw new SandboxError("BAD_PATH", `Paths are at most ${MAX_PATH_BYTES} bytes`);
  for (const name of clean.split("/")) {
    if (utf8Length(name) > MAX_NAME_BYTES) {
      throw new SandboxError(
        "BAD_PATH",
        `"${name.slice(0, 32)}…" is too long: a file or directory name is at most ${MAX_NAME_BYTES} bytes`,
      );
    }
  }
  return clean;
}
