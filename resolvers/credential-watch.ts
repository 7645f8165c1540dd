// Tells a long-lived user of a credential (a graphql-ws socket, a subscription, a collab socket) when
// that credential stops being valid: its API key was revoked, its user signed out everywhere, or the
// token expired. One place, so every live stream ends for the same reasons with the same errors.
import { type Bus, topics } from "../bus/bus.ts";
import type { Logger, Viewer } from "./context.ts";
import { AppError } from "./errors.ts";

export const apiKeyRevoked = () => new AppError("UNAUTHENTICATED", "API key revoked", { reason: "revoked" });
export const signedOut = () =>
  new AppError("UNAUTHENTICATED", "Signed out everywhere: sign in again", { reason: "revoked" });
export const tokenExpired = () =>
  new AppError("UNAUTHENTICATED", "Token expired: sign in again", { reason: "expired" });

/** setTimeout's longest delay (24.8 days); longer waits re-arm. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/**
 * Revocations are remembered this long, so a credential checked against the database just before a
 * revocation, and watched just after it, still ends.
 */
const REMEMBER_MS = 60_000;

interface Watched {
  viewer: Viewer;
  onEnd: (error: AppError) => void;
  timer?: ReturnType<typeof setTimeout>;
}

export class CredentialWatch {
  private readonly byKey = new Map<string, Set<Watched>>();
  private readonly byUser = new Map<string, Set<Watched>>();
  private readonly revokedKeys = new Map<string, number>();
  /** userId -> the latest "tokens issued before this are dead" moment, and when it was heard. */
  private readonly signOuts = new Map<string, { before: number; at: number }>();
  private readonly feeds: AsyncIterableIterator<unknown>[];

  constructor(bus: Bus, log: Logger) {
    const keys = bus.subscribe<{ keyId: string }>(topics.revokedCredentials);
    const tokens = bus.subscribe<{ userId: string; before: number }>(topics.tokensRevoked);
    this.feeds = [keys, tokens];
    const failed = (error: unknown) => log.error("credential watch stopped", { error: String(error) });
    void (async () => {
      for await (const { payload } of keys) {
        this.remember(this.revokedKeys, payload.keyId, Date.now());
        for (const watched of [...(this.byKey.get(payload.keyId) ?? [])]) this.end(watched, apiKeyRevoked());
      }
    })().catch(failed);
    void (async () => {
      for await (const { payload } of tokens) {
        const known = this.signOuts.get(payload.userId);
        this.remember(this.signOuts, payload.userId, {
          before: Math.max(payload.before, known?.before ?? 0),
          at: Date.now(),
        });
        for (const watched of [...(this.byUser.get(payload.userId) ?? [])]) {
          const { credential } = watched.viewer;
          if (credential.kind === "token" && credential.issuedAt < payload.before)
            this.end(watched, signedOut());
        }
      }
    })().catch(failed);
  }

  /** Calls `onEnd` once, when the viewer's credential stops being valid; returns a function to stop watching. */
  watch(viewer: Viewer, onEnd: (error: AppError) => void): () => void {
    const watched: Watched = { viewer, onEnd };
    const { credential } = viewer;
    if (credential.kind === "apiKey") {
      if (this.revokedKeys.has(credential.keyId)) return this.endSoon(onEnd, apiKeyRevoked());
      add(this.byKey, credential.keyId, watched);
    } else {
      const signOut = this.signOuts.get(viewer.userId);
      if (signOut && credential.issuedAt < signOut.before) return this.endSoon(onEnd, signedOut());
      add(this.byUser, viewer.userId, watched);
      this.armExpiry(watched, credential.expiresAt);
    }
    return () => this.forget(watched);
  }

  async close(): Promise<void> {
    for (const feed of this.feeds) await feed.return?.();
    for (const set of [...this.byKey.values(), ...this.byUser.values()])
      for (const watched of set) this.forget(watched);
  }

  private armExpiry(watched: Watched, expiresAt: number) {
    const ms = expiresAt - Date.now();
    if (ms <= 0) return void queueMicrotask(() => this.end(watched, tokenExpired()));
    watched.timer = setTimeout(
      () => (ms > MAX_TIMER_MS ? this.armExpiry(watched, expiresAt) : this.end(watched, tokenExpired())),
      Math.min(ms, MAX_TIMER_MS),
    );
    (watched.timer as { unref?: () => void }).unref?.();
  }

  private endSoon(onEnd: (error: AppError) => void, error: AppError): () => void {
    let cancelled = false;
    queueMicrotask(() => cancelled || onEnd(error));
    return () => {
      cancelled = true;
    };
  }

  private end(watched: Watched, error: AppError) {
    if (!this.forget(watched)) return;
    watched.onEnd(error);
  }

  /** Stops watching; false when it was no longer watched (already ended). */
  private forget(watched: Watched): boolean {
    if (watched.timer) clearTimeout(watched.timer);
    const { credential } = watched.viewer;
    return credential.kind === "apiKey"
      ? remove(this.byKey, credential.keyId, watched)
      : remove(this.byUser, watched.viewer.userId, watched);
  }

  private remember<V>(map: Map<string, V>, key: string, value: V) {
    map.delete(key);
    map.set(key, value);
    // Insertion order is age order: drop what is older than REMEMBER_MS.
    const now = Date.now();
    for (const [k, v] of map) {
      const at = typeof v === "number" ? v : (v as { at: number }).at;
      if (now - at <= REMEMBER_MS) break;
      map.delete(k);
    }
  }
}

function add<K, V>(map: Map<K, Set<V>>, key: K, value: V) {
  const set = map.get(key) ?? new Set<V>();
  map.set(key, set);
  set.add(value);
}

function remove<K, V>(map: Map<K, Set<V>>, key: K, value: V): boolean {
  const set = map.get(key);
  if (!set?.delete(value)) return false;
  if (set.size === 0) map.delete(key);
  return true;
}
