// Reading a file the host did not size itself (a workspace file, a stored object) with a cap: the
// size decides before any byte is read, and a file growing meanwhile is cut off at the cap + 1 byte.
import type { FileHandle } from "node:fs/promises";
import { FileTooLargeError } from "../provider.ts";

/**
 * The content of an open file of at most `maxBytes`, refused from its size before anything is read,
 * and never reading more than `maxBytes + 1` bytes (a command may be growing it meanwhile).
 */
export async function readAtMost(file: FileHandle, path: string, maxBytes: number): Promise<Uint8Array> {
  const { size } = await file.stat();
  if (size > maxBytes) throw new FileTooLargeError(path, size, maxBytes);
  // One byte more than fstat said: reading it means the file grew, so the buffer grows (up to the cap).
  // Never from the shared pool: callers may hand the bytes on whole (`.buffer`).
  let buffer = Buffer.allocUnsafeSlow(size + 1);
  let length = 0;
  for (;;) {
    if (length === buffer.length) {
      if (length > maxBytes) throw new FileTooLargeError(path, length, maxBytes);
      const bigger = Buffer.allocUnsafeSlow(Math.min(maxBytes + 1, Math.max(2 * length, 64 * 1024)));
      buffer.copy(bigger, 0, 0, length);
      buffer = bigger;
    }
    const { bytesRead } = await file.read(buffer, length, buffer.length - length, length);
    if (bytesRead === 0) break;
    length += bytesRead;
  }
  return new Uint8Array(buffer.buffer, buffer.byteOffset, length);
}
