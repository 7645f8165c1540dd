// Bearer credentials -> Viewer. Used for HTTP requests, graphql-ws connectionParams and (later) the
// collab upgrade, so a revoked key or an expired token is refused the same way everywhere.
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

export function createAuthenticator(deps: { db: Db; tokens: TokenService }): Authenticator {
  const { db, tokens } = deps;

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
    const [user] = await db
      .select({ id: users.id })
      .from(users)
      .where(eq(users.id, verified.userId))
      .limit(1);
    if (!user) throw unauthenticated("The account for this token no longer exists");
    return { userId: user.id, credential: { kind: "token", expiresAt: verified.expiresAt } };
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
