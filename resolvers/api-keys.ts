// API key secrets: "occ_" + 256 random bits. Only a SHA-256 of the secret is stored; a key this random
// needs no slow hash, and a fast one keeps per-request lookups cheap.
import { createHash, randomBytes } from "node:crypto";
import { and, eq, isNull } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { apiKeys, users } from "../db/schema.ts";

export const API_KEY_PREFIX = "occ_";

export function isApiKeySecret(token: string): boolean {
  return token.startsWith(API_KEY_PREFIX);
}

export function generateApiKeySecret(): { secret: string; prefix: string; secretHash: string } {
  const secret = `${API_KEY_PREFIX}${randomBytes(32).toString("base64url")}`;
  return { secret, prefix: secret.slice(0, API_KEY_PREFIX.length + 8), secretHash: hashSecret(secret) };
}

export function hashSecret(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}

/** The active (not revoked) key for a secret's hash, with its owner; undefined when unknown or revoked. */
export async function findActiveApiKey(db: Db, secretHash: string) {
  const [row] = await db
    .select({ key: apiKeys, user: users })
    .from(apiKeys)
    .innerJoin(users, eq(users.id, apiKeys.userId))
    .where(and(eq(apiKeys.secretHash, secretHash), isNull(apiKeys.revokedAt)))
    .limit(1);
  return row;
}

/**
 * Records when a key was last used. Callers batch these (api/auth/authenticate.ts writes at most one
 * per key every 30 s), so busy keys do not write on every request.
 */
export async function touchApiKey(db: Pick<Db, "update">, keyId: string, at: number): Promise<void> {
  await db
    .update(apiKeys)
    .set({ lastUsedAt: new Date(at) })
    .where(eq(apiKeys.id, keyId));
}
