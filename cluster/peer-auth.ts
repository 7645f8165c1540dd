// Calls between instances are signed: HMAC-SHA256 over the timestamp, method, path and a hash of the
// body, with a key only instances have (CLUSTER_SECRET, or one derived from the JWT secret/key). A
// signature is good for a short window and once (seen signatures are remembered for that window), so
// a captured call cannot be replayed later, and no user credential ever opens an internal route.
import { createHash, createHmac, timingSafeEqual } from "node:crypto";

export const SIGNATURE_HEADER = "x-occ-cluster-signature";
export const TIME_HEADER = "x-occ-cluster-time";
/** How far a call's timestamp may be from this instance's clock. */
export const MAX_SKEW_MS = 30_000;

export interface PeerAuth {
  /** Headers that sign a call. */
  sign(method: string, path: string, body: Uint8Array): Record<string, string>;
  /**
   * Why a call is refused from its headers alone (unsigned, malformed, stale), or null: checked before
   * its body is read, so an outsider cannot make an instance buffer bodies it will refuse anyway.
   */
  precheck(headers: Headers): string | null;
  /** Why a call is refused, or null when its signature is good (and not seen before). */
  refuse(method: string, path: string, body: Uint8Array, headers: Headers): string | null;
}

/** The signing key: from CLUSTER_SECRET when set, else derived from the token secret (never the secret itself). */
export function clusterKey(secretMaterial: string, clusterSecret?: string): Buffer {
  return createHmac("sha256", clusterSecret ?? secretMaterial)
    .update("opencode.cloud cluster v1")
    .digest();
}

export function createPeerAuth(key: Buffer, now: () => number = Date.now): PeerAuth {
  const seen = new Map<string, number>();
  const mac = (time: string, method: string, path: string, body: Uint8Array) =>
    createHmac("sha256", key)
      .update(`${time}\n${method.toUpperCase()}\n${path}\n`)
      .update(createHash("sha256").update(body).digest("hex"))
      .digest("hex");

  function precheck(headers: Headers): string | null {
    const time = headers.get(TIME_HEADER);
    const signature = headers.get(SIGNATURE_HEADER);
    if (!time || !signature || !/^\d{1,16}$/.test(time) || !/^[0-9a-f]{64}$/.test(signature))
      return "unsigned";
    if (Math.abs(now() - Number(time)) > MAX_SKEW_MS) return "stale timestamp";
    return null;
  }

  function forgetOld(at: number) {
    for (const [signature, expires] of seen) {
      if (expires > at) break; // insertion order is expiry order
      seen.delete(signature);
    }
  }

  return {
    sign(method, path, body) {
      const time = String(now());
      return { [TIME_HEADER]: time, [SIGNATURE_HEADER]: mac(time, method, path, body) };
    },
    precheck,
    refuse(method, path, body, headers) {
      const early = precheck(headers);
      if (early) return early;
      const time = headers.get(TIME_HEADER)!;
      const signature = headers.get(SIGNATURE_HEADER)!;
      const at = now();
      const expected = Buffer.from(mac(time, method, path, body), "hex");
      if (!timingSafeEqual(expected, Buffer.from(signature, "hex"))) return "bad signature";
      forgetOld(at);
      if (seen.has(signature)) return "replayed";
      seen.set(signature, at + 2 * MAX_SKEW_MS);
      return null;
    },
  };
}
