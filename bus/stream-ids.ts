// Redis stream ids ("ms-seq") as the bus's numeric ids: ms × 1000 + seq. The publish script keeps seq
// below 1000 (a topic's 1000th event within one millisecond takes the next millisecond), so the mapping
// is exact and order-preserving, and ids look like the in-process bus's (microsecond-scale numbers).
// Numbers stay below 2^53 until the year 2255.

export type StreamId = string;

export const ZERO_ID: StreamId = "0-0";

export function toNumber(id: StreamId): number {
  const dash = id.indexOf("-");
  return Number(id.slice(0, dash)) * 1000 + Number(id.slice(dash + 1));
}

export function fromNumber(n: number): StreamId {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`not a bus id: ${n}`);
  return `${Math.floor(n / 1000)}-${n % 1000}`;
}

/** Negative, zero or positive as a is before, equal to or after b. */
export function compareIds(a: StreamId, b: StreamId): number {
  const da = a.indexOf("-");
  const db = b.indexOf("-");
  const ms = Number(a.slice(0, da)) - Number(b.slice(0, db));
  return ms !== 0 ? ms : Number(a.slice(da + 1)) - Number(b.slice(db + 1));
}
