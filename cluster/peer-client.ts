// Calling another instance: a signed JSON call to one of its owner operations, or a signed raw
// request passed on (the agent proxy). A peer that does not answer within the call's time is
// UNREACHABLE; errors it answers with come back with their code, so a typed error on the owner is
// the same typed error here.
import type { PeerAuth } from "./peer-auth.ts";

export const INTERNAL_PREFIX = "/internal/cluster";

/** An error from (or about) a peer: `kind` says whether the owner raised it or could not be reached. */
export class PeerError extends Error {
  constructor(
    readonly kind: "app" | "sandbox" | "unreachable",
    readonly code: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = "PeerError";
  }
}

/** The wire form of an error an owner operation threw (AppError and SandboxError both carry a code). */
export interface WireError {
  kind: "app" | "sandbox";
  code: string;
  message: string;
  details?: Record<string, unknown>;
}

export interface Peer {
  readonly instanceId: string;
  readonly url: string;
  /** One owner operation; `timeoutMs` bounds the whole call (default 15 s). */
  call<T>(op: string, body: unknown, options?: { timeoutMs?: number; signal?: AbortSignal }): Promise<T>;
  /** Passes a request on to the peer's own handler of `path` (under the internal prefix), streaming the answer. */
  forward(
    method: string,
    path: string,
    headers: Headers,
    body: Uint8Array | null,
    signal?: AbortSignal,
  ): Promise<Response>;
}

const DEFAULT_TIMEOUT_MS = 15_000;

export function createPeers(auth: PeerAuth, fromInstance: string) {
  return (instanceId: string, url: string): Peer => ({
    instanceId,
    url,
    async call<T>(op: string, body: unknown, options: { timeoutMs?: number; signal?: AbortSignal } = {}) {
      const path = `${INTERNAL_PREFIX}/op/${op}`;
      const bytes = new TextEncoder().encode(JSON.stringify(body ?? null));
      const timeout = AbortSignal.timeout(options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
      const signal = options.signal ? AbortSignal.any([timeout, options.signal]) : timeout;
      let res: Response;
      let reply: { result?: unknown; error?: WireError };
      try {
        res = await fetch(`${url}${path}`, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            "x-occ-cluster-from": fromInstance,
            ...auth.sign("POST", path, bytes),
          },
          body: bytes,
          signal,
        });
        reply = (await res.json()) as typeof reply;
      } catch (error) {
        throw new PeerError(
          "unreachable",
          "UNAVAILABLE",
          `instance ${instanceId} did not answer ${op} (${(error as Error).name === "TimeoutError" ? "timed out" : String(error)})`,
        );
      }
      if (reply.error)
        throw new PeerError(reply.error.kind, reply.error.code, reply.error.message, reply.error.details);
      if (!res.ok)
        throw new PeerError("unreachable", "UNAVAILABLE", `instance ${instanceId} answered ${res.status}`);
      return reply.result as T;
    },
    async forward(method, path, headers, body, signal) {
      const full = `${INTERNAL_PREFIX}${path}`;
      const signed = new Headers(headers);
      for (const hop of ["host", "content-length", "connection", "keep-alive", "transfer-encoding"])
        signed.delete(hop);
      for (const [name, value] of Object.entries(auth.sign(method, full, body ?? new Uint8Array())))
        signed.set(name, value);
      signed.set("x-occ-cluster-from", fromInstance);
      // The answer is passed on byte for byte: nothing may decompress it on this hop.
      signed.set("accept-encoding", "identity");
      return fetch(`${url}${full}`, {
        method,
        headers: signed,
        body: body as BodyInit | null,
        redirect: "manual",
        signal,
      });
    },
  });
}

export type PeerFactory = ReturnType<typeof createPeers>;
