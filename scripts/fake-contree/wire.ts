// Wire shapes shared by several modules: StreamRepr (printable ASCII as "ascii", anything else
// base64), the zeroed resource blocks, and small request-validation helpers.
import { badRequest } from "./errors.ts";

export interface StreamRepr {
  value: string;
  encoding: "ascii" | "base64";
  truncated?: boolean;
}

/** The generated clients' rule: bytes 32..126 plus tab, LF and CR are ASCII; anything else is base64. */
export function isPrintable(bytes: Uint8Array): boolean {
  for (const b of bytes) if (!((b >= 32 && b < 127) || b === 9 || b === 10 || b === 13)) return false;
  return true;
}

export function streamRepr(bytes: Uint8Array, truncated?: boolean): StreamRepr {
  const repr: StreamRepr = isPrintable(bytes)
    ? { value: Buffer.from(bytes).toString("latin1"), encoding: "ascii" }
    : { value: Buffer.from(bytes).toString("base64"), encoding: "base64" };
  if (truncated !== undefined) repr.truncated = truncated;
  return repr;
}

/** Bytes of a ClosableStreamRepr-like `{value, encoding?}`; 400 on a bad encoding or base64. */
export function decodeStream(input: unknown, field: string): { bytes: Buffer; close: boolean | undefined } {
  if (!isObject(input) || typeof input.value !== "string")
    throw badRequest(`${field}.value must be a string`);
  const encoding = input.encoding ?? "ascii";
  if (encoding !== "ascii" && encoding !== "base64") {
    throw badRequest(`${field}.encoding must be "ascii" or "base64"`);
  }
  if (input.close !== undefined && input.close !== null && typeof input.close !== "boolean") {
    throw badRequest(`${field}.close must be a boolean`);
  }
  let bytes: Buffer;
  if (encoding === "base64") {
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(input.value.replace(/\s+/g, ""))) {
      throw badRequest(`${field}.value is not valid base64`);
    }
    bytes = Buffer.from(input.value, "base64");
  } else bytes = Buffer.from(input.value, "utf8");
  return { bytes, close: (input.close as boolean | null | undefined) ?? undefined };
}

export function isObject(value: unknown): value is Record<string, any> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** An optional non-negative integer field (absent or null → undefined); 400 otherwise. */
export function optInt(body: Record<string, any>, field: string, min = 0): number | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min) {
    throw badRequest(`${field} must be an integer >= ${min}`);
  }
  return value;
}

export function optBool(body: Record<string, any>, field: string): boolean | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "boolean") throw badRequest(`${field} must be a boolean`);
  return value;
}

export function optString(body: Record<string, any>, field: string): string | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string") throw badRequest(`${field} must be a string`);
  return value;
}

export function optStringMap(body: Record<string, any>, field: string): Record<string, string> | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (!isObject(value) || Object.values(value).some((v) => typeof v !== "string")) {
    throw badRequest(`${field} must be an object of strings`);
  }
  return value as Record<string, string>;
}

export function optStringArray(body: Record<string, any>, field: string): string[] | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value) || value.some((v) => typeof v !== "string")) {
    throw badRequest(`${field} must be an array of strings`);
  }
  return value as string[];
}

/** A query integer (absent → fallback); 400 when it is not an integer within [min, max]. */
export function queryInt(
  query: URLSearchParams,
  name: string,
  fallback: number,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
  message?: string,
): number {
  const raw = query.get(name);
  if (raw === null || raw === "") return fallback;
  const n = Number(raw);
  if (!/^-?\d+$/.test(raw.trim()) || n < min || n > max) {
    throw badRequest(message ?? `${name} must be an integer between ${min} and ${max}`);
  }
  return n;
}

export const ZERO_INSTANCE_RESOURCES = {
  block_input: 0,
  block_output: 0,
  cost: 0,
  elapsed_time: 0,
  involuntary_switches: 0,
  max_rss: 0,
  monotonic_time: 0,
  page_faults: 0,
  page_faults_io: 0,
  shared_memory: 0,
  signals: 0,
  swaps: 0,
  system_cpu_time: 0,
  unshared_memory: 0,
  user_cpu_time: 0,
  voluntary_switches: 0,
};

export const ZERO_EVENT_RESOURCES = {
  user_time_us: 0,
  sys_time_us: 0,
  max_rss_kb: 0,
  shared_memory: 0,
  unshared_memory: 0,
  swaps: 0,
  minor_faults: 0,
  major_faults: 0,
  voluntary_ctx_switches: 0,
  involuntary_ctx_switches: 0,
  block_input_ops: 0,
  block_output_ops: 0,
  ipc_msgs_sent: 0,
  ipc_msgs_received: 0,
  signals_received: 0,
};
