// Bearer credentials -> Viewer. Used for HTTP requests, graphql-ws connectionParams and the collab
// upgrade, so a revoked key, an expired token or a token from before "sign out everywhere" is refused
// the same way everywhere.
import { eq } from "drizzle-orm";
import { type Bus, topics } from "../../bus/bus.ts";
import type { Db } from "../../db/client.ts";
import { type UserRow, users } from "../../db/schema.ts";
import { findActiveApiKey, hashSecret, isApiKeySecret, touchApiKey } from "../../resolvers/api-keys.ts";
import type { Scope, Viewer } from "../../resolvers/context.ts";
import { AppError, unauthenticated } from "../../resolvers/errors.ts";
import { PrincipalCache } from "./principal-cache.ts";
import { TokenError, type TokenService, type VerifiedToken } from "./tokens.ts";

export interface Authenticator {
  /** null for no credential; throws UNAUTHENTICATED for a bad one. */
  fromAuthorizationHeader(header: string | null | undefined): Promise<Viewer | null>;
  /** A bare token or API key (graphql-ws connectionParams, ?token= on upgrades). */
  fromCredential(credential: string): Promise<Viewer>;
}

/** What a JWT's user must still be for the token to count: present, and not signed out since. */
export interface TokenPrincipal {
  id: string;
  /** JWTs issued before this (ms) are refused; null when the user never signed out everywhere. */
  tokensValidAfter: number | null;
  /** The account row, handed to the request so `me` needs no second read. */
  user: UserRow;
}

/**
 * The one database read a JWT costs; the authenticator caches it, invalidated by topics.tokensRevoked
 * (payload { userId }). Account rows change only through that event today: a future mutation that
 * edits a user (name, email, deletion) must publish it too, or wait out the cache's 60 s.
 */
export async function loadTokenPrincipal(db: Db, userId: string): Promise<TokenPrincipal | null> {
  const [user] = await db.select().from(users).where(eq(users.id, userId)).limit(1);
  return user ? { id: user.id, tokensValidAfter: user.tokensValidAfter?.getTime() ?? null, user } : null;
}

/** Whether a token issued at `issuedAt` (ms) predates the user's last "sign out everywhere". */
export const signedOutSince = (principal: TokenPrincipal, issuedAt: number) =>
  principal.tokensValidAfter !== null && issuedAt < principal.tokensValidAfter;

/** How often batched API-key `lastUsedAt` times are written. */
const LAST_USED_FLUSH_MS = 30_000;

export interface CachingAuthenticator extends Authenticator {
  /** When a key was last used on this instance, if that is not written yet. */
  lastUsedOf(keyId: string): Date | null;
  /** Writes pending `lastUsedAt` times and stops listening to the bus. */
  close(): Promise<void>;
}

/**
 * The hot path: a valid credential costs no database round trip and, for JWTs, no signature check,
 * once it has been seen. What a credential resolved to is cached (principal-cache.ts) and dropped the
 * moment the bus says it was revoked (revokedCredentials: an API key; tokensRevoked: a user's sign-out
 * everywhere), so a revoked credential is still refused on the very next request. A lookup that
 * started before an invalidation never writes its (possibly stale) result back (`generation`).
 */
export function createAuthenticator(deps: {
  db: Db;
  tokens: TokenService;
  /** Revocations arrive here; without a bus nothing is cached. */
  bus?: Bus;
  onError?: (message: string, error: unknown) => void;
}): CachingAuthenticator {
  const { db, tokens, bus } = deps;
  const caching = bus !== undefined;
  /** JWT string -> its verified claims (signature, issuer, audience and expiry checked once). */
  const verifiedTokens = new PrincipalCache<VerifiedToken>();
  /** User id -> what a JWT's user must still be (exists, not signed out since). */
  const users = new PrincipalCache<TokenPrincipal | null>();
  /** SHA-256 of an API key secret -> the active key's viewer. */
  const apiKeys = new PrincipalCache<{ keyId: string; userId: string; scopes: Scope[]; user: UserRow }>();
  let generation = 0;
  const invalidate = (fn: () => void) => {
    generation++;
    fn();
  };

  const watchers: AsyncIterableIterator<unknown>[] = [];
  if (bus) {
    const keys = bus.subscribe<{ keyId: string }>(topics.revokedCredentials);
    const signOuts = bus.subscribe<{ userId: string }>(topics.tokensRevoked);
    watchers.push(keys, signOuts);
    void (async () => {
      for await (const { payload } of keys) invalidate(() => apiKeys.invalidateKey(payload.keyId));
    })();
    void (async () => {
      for await (const { payload } of signOuts)
        invalidate(() => {
          users.invalidateUser(payload.userId);
          verifiedTokens.invalidateUser(payload.userId);
          apiKeys.invalidateUser(payload.userId);
        });
    })();
  }

  // lastUsedAt is advisory: it is kept in memory and written in one batch every LAST_USED_FLUSH_MS.
  const lastUsed = new Map<string, number>();
  const flushLastUsed = async () => {
    if (lastUsed.size === 0) return;
    const batch = [...lastUsed];
    lastUsed.clear();
    try {
      await db.transaction(async (tx) => {
        for (const [keyId, at] of batch) await touchApiKey(tx, keyId, at);
      });
    } catch (error) {
      deps.onError?.("could not record API key use", error);
    }
  };
  const flusher = setInterval(() => void flushLastUsed(), LAST_USED_FLUSH_MS);
  (flusher as { unref?: () => void }).unref?.();

  async function apiKeyViewer(credential: string): Promise<Viewer> {
    const hash = hashSecret(credential);
    let key = caching ? apiKeys.get(hash) : undefined;
    if (!key) {
      const started = generation;
      const found = await findActiveApiKey(db, hash);
      if (!found) throw unauthenticated("Unknown or revoked API key");
      key = {
        keyId: found.key.id,
        userId: found.user.id,
        scopes: found.key.scopes as Scope[],
        user: found.user,
      };
      if (caching && started === generation)
        apiKeys.set(hash, { value: key, userId: key.userId, keyId: key.keyId });
    }
    lastUsed.set(key.keyId, Date.now());
    return {
      userId: key.userId,
      credential: { kind: "apiKey", keyId: key.keyId, scopes: key.scopes },
      user: key.user,
    };
  }

  async function verifiedToken(credential: string): Promise<VerifiedToken> {
    const cached = caching ? verifiedTokens.get(credential) : undefined;
    if (cached) return cached;
    try {
      const verified = await tokens.verify(credential);
      if (caching)
        verifiedTokens.set(credential, {
          value: verified,
          userId: verified.userId,
          keyId: null,
          expiresAt: verified.expiresAt,
        });
      return verified;
    } catch (error) {
      if (error instanceof TokenError)
        throw new AppError("UNAUTHENTICATED", error.message, { reason: error.reason });
      throw error;
    }
  }

  async function principalOf(userId: string): Promise<TokenPrincipal | null> {
    const cached = caching ? users.get(userId) : undefined;
    if (cached !== undefined) return cached;
    const started = generation;
    const principal = await loadTokenPrincipal(db, userId);
    if (caching && started === generation) users.set(userId, { value: principal, userId, keyId: null });
    return principal;
  }

  async function fromCredential(credential: string): Promise<Viewer> {
    if (isApiKeySecret(credential)) return apiKeyViewer(credential);
    const verified = await verifiedToken(credential);
    // Expiry is re-checked on every use: a cached verification must not outlive its token.
    if (verified.expiresAt <= Date.now()) {
      throw new AppError("UNAUTHENTICATED", "Token expired: sign in again", { reason: "expired" });
    }
    const principal = await principalOf(verified.userId);
    if (!principal) throw unauthenticated("The account for this token no longer exists");
    if (signedOutSince(principal, verified.issuedAt)) {
      throw new AppError("UNAUTHENTICATED", "This token was signed out: sign in again", {
        reason: "revoked",
      });
    }
    return {
      userId: principal.id,
      credential: { kind: "token", expiresAt: verified.expiresAt, issuedAt: verified.issuedAt },
      user: principal.user,
    };
  }

  return {
    fromCredential,
    async fromAuthorizationHeader(header) {
      if (header === null || header === undefined || header.trim() === "") return null;
      const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
      if (!match) throw unauthenticated('The Authorization header must be "Bearer <token or API key>"');
      return fromCredential(match[1]!);
    },
    lastUsedOf(keyId) {
      const at = lastUsed.get(keyId);
      return at === undefined ? null : new Date(at);
    },
    async close() {
      clearInterval(flusher);
      for (const watcher of watchers) await watcher.return?.();
      await flushLastUsed();
    },
  };
}
