// Permission bits on the host. Files a sandbox makes land on the host's disk (workspaces, layers,
// store objects) owned by the server's user, often root: a setuid or setgid bit there would hand
// that user to anyone who can run the file. Such bits are stripped wherever a mode enters the host.
import * as fs from "node:fs/promises";
import { type Dir, openEntry } from "./beneath.ts";

export const SETID = 0o6000;

/** The bits a sandbox's file or directory may keep on the host: permissions and sticky, no set-id. */
export function safeMode(mode: number): number {
  return mode & 0o1777;
}

/**
 * Clears set-id bits on entry `name` of `dir` through a descriptor opened without following it, so
 * a swap for a symlink cannot redirect the chmod. Returns whether a bit was cleared.
 */
export async function dropSetId(dir: Dir, name: string): Promise<boolean> {
  const handle = await openEntry(dir, name);
  if (!handle) return false;
  try {
    const stat = await handle.stat();
    if (!(stat.isFile() || stat.isDirectory()) || !(stat.mode & SETID)) return false;
    await handle.chmod(safeMode(stat.mode));
    return true;
  } finally {
    await handle.close();
  }
}

/**
 * Creates `path` (and missing parents) for this user only, and makes an existing one so: the data
 * and sandbox directories hold every session's files and the server's secrets, and nobody else on
 * the host may even look inside. A shared sticky directory (/tmp itself) is refused, not changed.
 */
export async function makePrivateDir(path: string): Promise<void> {
  await fs.mkdir(path, { recursive: true, mode: 0o700 });
  const stat = await fs.stat(path);
  if (stat.mode & 0o1000)
    throw new Error(
      `${path} is a shared directory (sticky, like /tmp): give the server a directory of its own`,
    );
  if ((stat.mode & 0o7777) !== 0o700) await fs.chmod(path, 0o700);
}
