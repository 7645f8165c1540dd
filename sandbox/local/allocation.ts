// Disk space a file really holds, which can be more than its size: `fallocate --keep-size` reserves
// blocks past the end without changing st_size (and RLIMIT_FSIZE does not apply to it), and extended
// attributes can take a block of their own. Quotas count the blocks, and space reserved past a file's
// end is given back (a truncate to its own size) before the file is kept: what a layer, a store object
// or a live workspace keeps is then its content, and whatever stays past it is charged.
import { type BigIntStats, constants as C } from "node:fs";
import * as fs from "node:fs/promises";
import { roundToBlocks } from "../added-bytes.ts";
import { at, type Dir, errnoOf, isGone } from "./beneath.ts";

/** Below this, space past the end is charged rather than released (extent-tree blocks of big files). */
const RELEASE_MIN_BYTES = 64 * 1024;
/** O_NONBLOCK/O_NOCTTY: a FIFO or terminal swapped in meanwhile must not hang or adopt the server. */
const WRITE = C.O_WRONLY | C.O_NOFOLLOW | C.O_NONBLOCK | C.O_NOCTTY;

/** What a regular file costs on disk: its size in whole blocks, or its allocated blocks if more. */
export function fileBytes(stat: BigIntStats): number {
  return Math.max(roundToBlocks(Number(stat.size)), Number(stat.blocks) * 512);
}

/** Blocks a file holds beyond what its content needs (0 for sparse files: they hold less). */
export function excessBytes(stat: BigIntStats): number {
  return Math.max(0, Number(stat.blocks) * 512 - roundToBlocks(Number(stat.size)));
}

/**
 * Gives back space reserved past the end of regular file `name` of `dir` (held as `stat`) by
 * truncating it to its own size through a descriptor opened without following it; the content and
 * its times stay as they were. Returns the file's stat afterwards (the same one when there was little
 * to give back, or it is no longer that file).
 */
export async function releaseExcess(dir: Dir, name: string, stat: BigIntStats): Promise<BigIntStats> {
  if (!stat.isFile() || excessBytes(stat) < RELEASE_MIN_BYTES) return stat;
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(at(dir, name), WRITE);
  } catch (error) {
    // Gone, or not writable by this process (a server not running as root): the excess is charged.
    if (isGone(error) || ["EACCES", "EPERM", "ETXTBSY"].includes(errnoOf(error) ?? "")) return stat;
    throw error;
  }
  try {
    const now = await handle.stat({ bigint: true });
    if (!now.isFile() || now.ino !== stat.ino) return stat;
    await handle.truncate(Number(now.size));
    await handle.utimes(seconds(now.atimeNs), seconds(now.mtimeNs));
    return await handle.stat({ bigint: true });
  } finally {
    await handle.close();
  }
}

const seconds = (ns: bigint): number => Number(ns) / 1e9;
