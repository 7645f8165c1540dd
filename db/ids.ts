// Opaque, prefixed, time-sortable ids ("usr_01JD…"): the prefix tells a reader (and an error message)
// what kind of object an id names; the time part keeps inserts append-mostly in indexes.
import { randomBytes } from "node:crypto";

const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"; // Crockford base32, lower-case

function base32(bytes: Uint8Array): string {
  let out = "";
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

export type IdKind = "usr" | "key" | "ses" | "br" | "snp" | "run" | "exp" | "lnk";

export function newId(kind: IdKind): string {
  // 48-bit millisecond time, big-endian, then 80 random bits: 26 base32 characters in all.
  const time = new Uint8Array(6);
  let now = Date.now();
  for (let i = 5; i >= 0; i--) {
    time[i] = now % 256;
    now = Math.floor(now / 256);
  }
  const bytes = new Uint8Array(16);
  bytes.set(time, 0);
  bytes.set(randomBytes(10), 6);
  return `${kind}_${base32(bytes)}`;
}

export function idKind(id: string): string | undefined {
  return /^([a-z]{2,3})_[0-9a-z]{26}$/.exec(id)?.[1];
}
