// Bearer credentials -> Viewer. Used for HTTP requests, graphql-ws connectionParams and the collab
// upgrade, so a revoked key, an expired token or a token from before "sign out everywhere" is refused
// the same way everywhere.
import { eq } from "drizzle-orm";
import type { Db } from "../../db/client.ts";
import { users } from "../../db/schema.ts";
import { findActiveApiKey, isApiKeySecret, touchApiKey } from "../../resolvers/api-keys.ts";
import type { Scope, Viewer } from "../../resolvers/context.ts";
import { AppError, unauthenticated } from "../../resolvers/errors.ts";
import { TokenError, type TokenService } from "./tokens.ts";

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
}

/**
 * The one database read a JWT costs. It is the unit a principal cache would keep, invalidated by
 * topics.tokensRevoked (payload { userId }) and by account deletion.
 */
export async function loadTokenPrincipal(db: Db, userId: string): Promise<TokenPrincipal | null> {
  const [user] = await db
    .select({ id: users.id, tokensValidAfter: users.tokensValidAfter })
    .from(users)
    .where(eq(users.id, userId))
    .limit(1);
  return user ? { id: user.id, tokensValidAfter: user.tokensValidAfter?.getTime() ?? null } : null;
}

/** Whether a token issued at `issuedAt` (ms) predates the user's last "sign out everywhere". */
export const signedOutSince = (principal: TokenPrincipal, issuedAt: number) =>
  principal.tokensValidAfter !== null && issuedAt < principal.tokensValidAfter;

export function createAuthenticator(deps: {
  db: Db;
  tokens: TokenService;
  /** Where a JWT's user is looked up (a cache may wrap loadTokenPrincipal). */
  principal?: (userId: string) => Promise<TokenPrincipal | null>;
}): Authenticator {
  const { db, tokens } = deps;
  const principalOf = deps.principal ?? ((userId: string) => loadTokenPrincipal(db, userId));

  async function fromCredential(credential: string): Promise<Viewer> {
    if (isApiKeySecret(credential)) {
      const found = await findActiveApiKey(db, credential);
      if (!found) throw unauthenticated("Unknown or revoked API key");
      await touchApiKey(db, found.key);
      return {
        userId: found.user.id,
        credential: { kind: "apiKey", keyId: found.key.id, scopes: found.key.scopes as Scope[] },
      };
    }
    let verified: Awaited<ReturnType<TokenService["verify"]>>;
    try {
      verified = await tokens.verify(credential);
    } catch (error) {
      if (error instanceof TokenError)
        throw new AppError("UNAUTHENTICATED", error.message, { reason: error.reason });
      throw error;
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
  };
}
