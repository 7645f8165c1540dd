// What a valid credential resolved to, kept in memory so the authenticated hot path costs no database
// round trip and no signature check per request. Bounded (least recently used entries go first) and
// short-lived (an entry never outlives its credential, nor MAX_AGE_MS, so a change made where no event
// reaches us heals by itself). Revocations, sign-outs and deletions drop entries at once: the caller
// subscribes to the bus and calls the invalidate* methods, so a revoked key is refused on the very
// next request on every instance that hears the event.

/** Entries are re-read from the database at least this often, whatever happens on the bus. */
const MAX_AGE_MS = 60_000;
const MAX_ENTRIES = 10_000;

export interface CachedPrincipal<T> {
  value: T;
  userId: string;
  /** API key id, for keys. */
  keyId: string | null;
  /** ms since epoch after which the entry is useless (token expiry, or MAX_AGE_MS). */
  expiresAt: number;
}

export class PrincipalCache<T> {
  // A Map iterates in insertion order: re-inserting on a hit makes the first key the least recent.
  private readonly entries = new Map<string, CachedPrincipal<T>>();

  constructor(
    private readonly maxEntries = MAX_ENTRIES,
    private readonly maxAgeMs = MAX_AGE_MS,
  ) {}

  get(key: string, now = Date.now()): T | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    this.entries.delete(key);
    if (entry.expiresAt <= now) return undefined;
    this.entries.set(key, entry);
    return entry.value;
  }

  set(key: string, entry: Omit<CachedPrincipal<T>, "expiresAt"> & { expiresAt?: number }, now = Date.now()) {
    const expiresAt = Math.min(entry.expiresAt ?? Number.POSITIVE_INFINITY, now + this.maxAgeMs);
    this.entries.delete(key);
    this.entries.set(key, { ...entry, expiresAt });
    while (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
  }

  invalidateKey(keyId: string): void {
    for (const [key, entry] of this.entries) if (entry.keyId === keyId) this.entries.delete(key);
  }

  invalidateUser(userId: string): void {
    for (const [key, entry] of this.entries) if (entry.userId === userId) this.entries.delete(key);
  }

  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}
