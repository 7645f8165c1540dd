// The typed per-request context every resolver receives, and the ports the domain needs from the
// outside (password hashing, token signing, rate limits, logging). api/ builds and implements them.
import type { Bus } from "../bus/bus.ts";
import type { Db } from "../db/client.ts";
import type { Role, UserRow } from "../db/schema.ts";
import type { ProviderStatus } from "../sandbox/provider.ts";
import type { SandboxProviders } from "../sandbox/registry.ts";
import type { BranchRuntime } from "./branch-runtime.ts";
import { forbidden, unauthenticated } from "./errors.ts";
import type { Loaders } from "./loaders.ts";
import type { Quotas } from "./quota.ts";
import type { RunQuotas } from "./run-quota.ts";
import type { Runner } from "./runner.ts";

export type Scope = "read" | "write";
export const ALL_SCOPES: readonly Scope[] = ["read", "write"];

export type Credential =
  /** A JWT; `issuedAt` (ms) is checked against the user's "sign out everywhere" moment. */
  | { kind: "token"; expiresAt: number; issuedAt: number }
  | { kind: "apiKey"; keyId: string; scopes: readonly Scope[] };

export interface Viewer {
  userId: string;
  credential: Credential;
  /** The account row as authentication found it (possibly cached), so a request need not read it again. */
  user?: UserRow;
}

export interface PasswordHasher {
  hash(password: string): Promise<string>;
  verify(password: string, hash: string): Promise<boolean>;
}

export interface TokenIssuer {
  issue(userId: string): Promise<{ token: string; expiresAt: number }>;
}

export interface RateLimiter {
  /** Counts one hit against `key`; `ok` is false when the window's limit is used up. */
  consume(key: string, limit: number, windowMs: number): Promise<{ ok: boolean; retryAfterMs: number }>;
  /**
   * Counts one hit against each key in one step (one round trip to a shared store); `ok` is false when
   * any of them is over its limit, and `retryAfterMs` is the longest wait among those. A shared store
   * also reports, in the same round trip, the latest event id of each `watch` bus topic (`latest`), so
   * the caller can tell whether this instance has applied them yet.
   */
  consumeAll(
    hits: { key: string; limit: number; windowMs: number }[],
    options?: { watch?: string[] },
  ): Promise<{ ok: boolean; retryAfterMs: number; latest?: Record<string, number> }>;
}

export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

export interface PresenceEntry {
  /** One per awareness client (room + client id) or per GraphQL announcer. */
  key: string;
  userId: string | null;
  name: string;
  color: string | null;
  branchId: string | null;
  file: string | null;
  cursor: unknown;
  since: string;
  updatedAt: string;
}

export type PresenceEvent = { kind: "JOIN" | "UPDATE" | "LEAVE"; entry: PresenceEntry };

export interface PresenceRegistry {
  upsert(sessionId: string, entry: PresenceEntry, ttlMs?: number): void;
  remove(sessionId: string, key: string): void;
  list(sessionId: string): PresenceEntry[];
}

export interface SessionChat {
  append(
    sessionId: string,
    message: {
      author: { kind: "user" | "agent"; id: string | null; name: string };
      text: string;
      at: string;
      runId?: string;
    },
  ): Promise<void>;
}

/** Seals small secrets at rest (per-user model keys). */
export interface SecretBox {
  seal(plaintext: string): string;
  open(sealed: string): string;
}

/** Signed, expiring tokens for another audience than API access (share links). */
export interface AudienceTokens {
  sign(audience: string, claims: Record<string, unknown>, expiresAt: number): Promise<string>;
  verify(audience: string, token: string): Promise<Record<string, unknown>>;
}

export interface HealthInfo {
  version: string;
  runtime: string;
  provider: string;
  isolation: string;
  workspaces: string;
  warnings: string[];
  /** The deployment profile (PROFILE): "standard" or "serverless" (api/profile.ts). */
  profile: "standard" | "serverless";
  /** Every provider this server offers (the fields above describe the default one). */
  providers: ProviderStatus[];
  checkDatabase(): Promise<boolean>;
  /** Where instances share state ("memory": nowhere, one instance), and whether it answers. */
  sharedStore: "memory" | "redis" | "upstash";
  checkSharedStore(): Promise<boolean>;
}

/** Long-lived services, built once in the composition root (api/main.ts). */
export interface Services {
  db: Db;
  bus: Bus;
  passwords: PasswordHasher;
  tokens: TokenIssuer;
  rateLimiter: RateLimiter;
  log: Logger;
  health: HealthInfo;
  limits: {
    authAttemptsPerMinute: number;
    maxRunTimeoutMs: number;
    requestsPerMinutePerUser: number;
    requestsPerMinutePerApiKey: number;
  };
  /** The sandbox providers this server offers; a session keeps the one it was created with. */
  sandboxes: SandboxProviders;
  branchRuntime: BranchRuntime;
  runner: Runner;
  /** Live agents of this instance (null: no provider here can keep one). */
  agents: import("../agent/live/pool.ts").AgentPool | null;
  /** Storage quotas, creation caps and the free-disk floor. */
  quota: Quotas;
  /** Runs per user at once and run-seconds per day, counted across instances. */
  runQuota: RunQuotas;
  shareLinks: AudienceTokens;
  publicUrl: string;
  /** Why agent runs cannot start here at all (null: they can, given a model). */
  /** Why agent runs cannot happen on a provider's sandboxes here (null: they can). */
  agentUnavailable(provider: string): string | null;
  /** The platform's model for agent runs (null: users must bring their own). */
  platformModel: import("../agent/gateway.ts").Upstream | null;
  /** Where user-supplied URLs (model endpoints, repositories) may lead. */
  outbound: import("../sandbox/outbound-policy.ts").OutboundPolicy;
  secrets: SecretBox;
  /** An API key's use on this instance that is not written to the database yet (writes are batched). */
  apiKeyLastUsed(keyId: string): Date | null;
  /** Who is in each session now (collaboration awareness and GraphQL announcements). */
  presence: PresenceRegistry;
  /** The sessions' shared chat (collaboration), where prompts and the agent's answers are recorded. */
  chat: SessionChat;
}

/**
 * Set on the context of a live subscription (graphql-ws or SSE): every session role a resolver checks
 * (requireRole) is also watched for the subscription's whole life, and the subscription ends when the
 * viewer loses it (see resolvers/access-watch.ts).
 */
export interface LiveAccess {
  need(sessionId: string, role: Role): void;
}

export interface Context extends Services {
  requestId: string;
  viewer: Viewer | null;
  clientAddress: string;
  loaders: Loaders;
  access?: LiveAccess;
}

/** The signed-in viewer, or UNAUTHENTICATED. */
export function requireViewer(ctx: Context): Viewer {
  if (!ctx.viewer) throw unauthenticated();
  return ctx.viewer;
}

/** The signed-in viewer whose credential carries `scope` (tokens carry every scope). */
export function requireScope(ctx: Context, scope: Scope): Viewer {
  const viewer = requireViewer(ctx);
  if (viewer.credential.kind === "apiKey" && !viewer.credential.scopes.includes(scope)) {
    throw forbidden(`This API key lacks the "${scope}" scope`);
  }
  return viewer;
}
