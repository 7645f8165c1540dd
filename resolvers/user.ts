// Accounts: register, login, sign out everywhere, the viewer, API keys and the viewer's account events.
import { and, desc, eq, isNull } from "drizzle-orm";
import { topics } from "../bus/bus.ts";
import { newId } from "../db/ids.ts";
import { type ApiKeyRow, apiKeys, type UserRow, users } from "../db/schema.ts";
import { generateApiKeySecret } from "./api-keys.ts";
import { ALL_SCOPES, type Context, requireScope, requireViewer, type Scope } from "./context.ts";
import { AppError, badInput, conflict, notFound, rateLimited, unauthenticated } from "./errors.ts";

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const MIN_PASSWORD = 8;
const MAX_PASSWORD = 256;
const MAX_API_KEYS = 50;

export interface AuthResult {
  token: string;
  expiresAt: Date;
  user: UserRow;
}

export type AccountEvent =
  | { kind: "API_KEY_CREATED"; apiKeyId: string }
  | { kind: "API_KEY_REVOKED"; apiKeyId: string };

function normaliseEmail(email: string): string {
  const normalised = email.trim().toLowerCase();
  if (normalised.length > 254 || !EMAIL.test(normalised))
    throw badInput("Not a valid email address", "email");
  return normalised;
}

function checkPassword(password: string): void {
  if (password.length < MIN_PASSWORD) {
    throw badInput(`Password must be at least ${MIN_PASSWORD} characters`, "password");
  }
  if (password.length > MAX_PASSWORD) {
    throw badInput(`Password must be at most ${MAX_PASSWORD} characters`, "password");
  }
}

/** Login and register are rate limited per client address, and login also per account. */
async function limitAuthAttempts(ctx: Context, keys: string[]): Promise<void> {
  for (const key of keys) {
    const { ok, retryAfterMs } = await ctx.rateLimiter.consume(key, ctx.limits.authAttemptsPerMinute, 60_000);
    if (!ok) throw rateLimited(Math.ceil(retryAfterMs / 1000));
  }
}

async function issue(ctx: Context, user: UserRow): Promise<AuthResult> {
  const { token, expiresAt } = await ctx.tokens.issue(user.id);
  return { token, expiresAt: new Date(expiresAt), user };
}

export async function register(
  ctx: Context,
  input: { email: string; password: string; name?: string | null | undefined },
): Promise<AuthResult> {
  const email = normaliseEmail(input.email);
  checkPassword(input.password);
  const name = input.name?.trim() || null;
  if (name && name.length > 100) throw badInput("Name must be at most 100 characters", "name");
  await limitAuthAttempts(ctx, [`register:${ctx.clientAddress}`]);

  const [existing] = await ctx.db.select({ id: users.id }).from(users).where(eq(users.email, email)).limit(1);
  if (existing) throw conflict("An account with this email already exists");
  const passwordHash = await ctx.passwords.hash(input.password);
  try {
    const [user] = await ctx.db
      .insert(users)
      .values({ id: newId("usr"), email, name, passwordHash, createdAt: new Date() })
      .returning();
    return issue(ctx, user!);
  } catch (error) {
    // Two registrations racing for one email: the unique index decides.
    if (String((error as { cause?: unknown })?.cause ?? error).includes("UNIQUE")) {
      throw conflict("An account with this email already exists");
    }
    throw error;
  }
}

// A real argon2id hash of a random password, so a login for an unknown email costs the same time
// as a wrong password and does not reveal which emails have accounts.
let decoyHash: Promise<string> | undefined;

export async function login(ctx: Context, input: { email: string; password: string }): Promise<AuthResult> {
  const email = input.email.trim().toLowerCase();
  await limitAuthAttempts(ctx, [`login:${ctx.clientAddress}`, `login:${email}`]);
  const [user] = await ctx.db.select().from(users).where(eq(users.email, email)).limit(1);
  if (!user || input.password.length > MAX_PASSWORD) {
    decoyHash ??= ctx.passwords.hash(crypto.randomUUID());
    await ctx.passwords.verify(input.password.slice(0, MAX_PASSWORD), await decoyHash);
    throw unauthenticated("Wrong email or password");
  }
  if (!(await ctx.passwords.verify(input.password, user.passwordHash))) {
    throw unauthenticated("Wrong email or password");
  }
  return issue(ctx, user);
}

export async function me(ctx: Context): Promise<UserRow | null> {
  if (!ctx.viewer) return null;
  // Primed from authentication (api/context.ts): the hot `{ me { id } }` reads nothing more.
  return ctx.loaders.user.load(ctx.viewer.userId);
}

/** A user's API keys, newest first; only the user themself may list them. */
export async function listApiKeys(ctx: Context, userId: string): Promise<ApiKeyRow[]> {
  const viewer = requireViewer(ctx);
  if (viewer.userId !== userId) return [];
  return ctx.db.select().from(apiKeys).where(eq(apiKeys.userId, userId)).orderBy(desc(apiKeys.createdAt));
}

function parseScopes(scopes: readonly string[] | null | undefined): Scope[] {
  if (scopes === null || scopes === undefined) return [...ALL_SCOPES];
  if (scopes.length === 0) throw badInput("Give at least one scope", "scopes");
  const unknown = scopes.filter((s) => !(ALL_SCOPES as readonly string[]).includes(s));
  if (unknown.length > 0) {
    throw badInput(
      `Unknown scope ${unknown.map((s) => `"${s}"`).join(", ")}; use ${ALL_SCOPES.join(", ")}`,
      "scopes",
    );
  }
  return [...new Set(scopes as Scope[])];
}

export async function createApiKey(
  ctx: Context,
  input: { name: string; scopes?: readonly string[] | null | undefined },
): Promise<{ apiKey: ApiKeyRow; secret: string }> {
  const viewer = requireScope(ctx, "write");
  const name = input.name.trim();
  if (!name || name.length > 100) throw badInput("Name must be 1 to 100 characters", "name");
  const scopes = parseScopes(input.scopes);
  // A key can only hand out scopes it holds itself.
  if (viewer.credential.kind === "apiKey") {
    const held = viewer.credential.scopes;
    const extra = scopes.filter((s) => !held.includes(s));
    if (extra.length > 0) throw new AppError("FORBIDDEN", `This API key cannot grant ${extra.join(", ")}`);
  }
  const active = await ctx.db.$count(
    apiKeys,
    and(eq(apiKeys.userId, viewer.userId), isNull(apiKeys.revokedAt)),
  );
  if (active >= MAX_API_KEYS)
    throw conflict(`At most ${MAX_API_KEYS} active API keys per account; revoke some first`);

  const { secret, prefix, secretHash } = generateApiKeySecret();
  const [apiKey] = await ctx.db
    .insert(apiKeys)
    .values({
      id: newId("key"),
      userId: viewer.userId,
      name,
      prefix,
      secretHash,
      scopes,
      createdAt: new Date(),
    })
    .returning();
  await ctx.bus.publish<AccountEvent>(topics.user(viewer.userId), {
    kind: "API_KEY_CREATED",
    apiKeyId: apiKey!.id,
  });
  return { apiKey: apiKey!, secret };
}

export async function revokeApiKey(ctx: Context, id: string): Promise<ApiKeyRow> {
  const viewer = requireScope(ctx, "write");
  const [key] = await ctx.db
    .select()
    .from(apiKeys)
    .where(and(eq(apiKeys.id, id), eq(apiKeys.userId, viewer.userId)))
    .limit(1);
  // Someone else's key is reported exactly like a missing one.
  if (!key) throw notFound("API key");
  if (key.revokedAt) return key;
  const [revoked] = await ctx.db
    .update(apiKeys)
    .set({ revokedAt: new Date() })
    .where(eq(apiKeys.id, id))
    .returning();
  await ctx.bus.publish(topics.revokedCredentials, { keyId: id });
  await ctx.bus.publish<AccountEvent>(topics.user(viewer.userId), { kind: "API_KEY_REVOKED", apiKeyId: id });
  return revoked!;
}

export async function apiKeyById(ctx: Context, id: string): Promise<ApiKeyRow | null> {
  const viewer = requireViewer(ctx);
  const [key] = await ctx.db
    .select()
    .from(apiKeys)
    .where(and(eq(apiKeys.id, id), eq(apiKeys.userId, viewer.userId)))
    .limit(1);
  return key ?? null;
}

export interface SignOutResult {
  signedOutAt: Date;
  /** A fresh token for the caller, when it signed in with a token (so this client stays signed in). */
  token: string | null;
  expiresAt: Date | null;
}

/**
 * "Sign out everywhere": every access token (JWT) of the viewer issued until now stops working, and
 * sockets and subscriptions authenticated by one end on every instance. API keys are not touched
 * (revoke them one by one). A caller that used a token gets a fresh one, issued after the cut.
 */
export async function signOutEverywhere(ctx: Context): Promise<SignOutResult> {
  const viewer = requireScope(ctx, "write");
  const signedOutAt = new Date();
  await ctx.db.update(users).set({ tokensValidAfter: signedOutAt }).where(eq(users.id, viewer.userId));
  await ctx.bus.publish(topics.tokensRevoked, { userId: viewer.userId, before: signedOutAt.getTime() });
  if (viewer.credential.kind !== "token") return { signedOutAt, token: null, expiresAt: null };
  // Issued at or after signedOutAt (tokens carry their issue time in ms), so it survives the cut.
  const { token, expiresAt } = await ctx.tokens.issue(viewer.userId);
  return { signedOutAt, token, expiresAt: new Date(expiresAt) };
}

/** The viewer's own account events, live. */
export function accountEvents(
  ctx: Context,
  signal?: AbortSignal,
): AsyncIterableIterator<{ payload: AccountEvent }> {
  const viewer = requireScope(ctx, "read");
  return ctx.bus.subscribe<AccountEvent>(topics.user(viewer.userId), { signal });
}
