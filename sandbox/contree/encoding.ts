// Byte-level helpers shared by the client: base64, the ascii/base64 StreamRepr wire encoding,
// sha256 (content addressing of uploads), UUID detection and time filters. Web standards only.

import type { ClosableStreamRepr, StreamRepr, TimeParam } from "./types.ts";

const utf8 = new TextEncoder();

export function toBytes(data: string | Uint8Array | ArrayBuffer): Uint8Array {
  if (typeof data === "string") return utf8.encode(data);
  return data instanceof Uint8Array ? data : new Uint8Array(data);
}

export function bytesToBase64(bytes: Uint8Array): string {
  let binary = "";
  const step = 0x8000;
  for (let i = 0; i < bytes.length; i += step) {
    binary += String.fromCharCode(...bytes.subarray(i, i + step));
  }
  return btoa(binary);
}

export function base64ToBytes(value: string): Uint8Array {
  const binary = atob(value);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

/** Tab, newline, carriage return and 0x20–0x7e: what the server sends as `ascii`. */
function isPrintableAscii(bytes: Uint8Array): boolean {
  for (const b of bytes) {
    if (!(b === 9 || b === 10 || b === 13 || (b >= 0x20 && b <= 0x7e))) return false;
  }
  return true;
}

/** The bytes a StreamRepr (or stdout/stderr event) carries. */
export function decodeStreamRepr(
  repr: Pick<StreamRepr, "value" | "encoding"> | null | undefined,
): Uint8Array {
  if (!repr?.value) return new Uint8Array(0);
  return repr.encoding === "base64" ? base64ToBytes(repr.value) : utf8.encode(repr.value);
}

/** A stdin chunk: `ascii` when printable, else `base64` (the rule the official clients use). */
export function encodeStdin(data: string | Uint8Array, close?: boolean): ClosableStreamRepr {
  const bytes = toBytes(data);
  const chunk: ClosableStreamRepr = isPrintableAscii(bytes)
    ? { value: new TextDecoder().decode(bytes), encoding: "ascii" }
    : { value: bytesToBase64(bytes), encoding: "base64" };
  if (close !== undefined) chunk.close = close;
  return chunk;
}

export function concatBytes(chunks: Uint8Array[]): Uint8Array {
  let size = 0;
  for (const c of chunks) size += c.length;
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

export async function sha256Hex(data: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>));
  let hex = "";
  for (const b of digest) hex += b.toString(16).padStart(2, "0");
  return hex;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(ref: string): boolean {
  return UUID_RE.test(ref);
}

export function formatTimeParam(value: TimeParam): string {
  return value instanceof Date ? value.toISOString() : String(value);
}

/** −1 (and absent) mean "none" for exit codes and signals on the wire. */
export function wireNumber(value: number | null | undefined): number | null {
  return value === undefined || value === null || value === -1 ? null : value;
}
