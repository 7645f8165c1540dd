// Usage totals: wall time, sandbox CPU time, model requests, tokens and cost, summed over runs; and
// storage: the bytes of snapshot content kept (what storage quotas count), with the limits that apply.
import DataLoader from "dataloader";
import { eq, inArray, sql } from "drizzle-orm";
import { type RunRow, runs, snapshots } from "../db/schema.ts";
import type { Context } from "./context.ts";
import type { QuotaLimits } from "./quota.ts";

/** Whose storage a Usage describes: a session's, or a user's (the sessions they own). */
export type StorageOf = { kind: "session"; id: string } | { kind: "user"; id: string };

export interface UsageTotals {
  runs: number;
  promptRuns: number;
  wallMs: number;
  cpuMs: number;
  modelRequests: number;
  inputTokens: number;
  outputTokens: number;
  costUsd: number;
  storageOf: StorageOf;
}

async function totals(ctx: Context, where: ReturnType<typeof eq>): Promise<Omit<UsageTotals, "storageOf">> {
  const [row] = await ctx.db
    .select({
      runs: sql<number>`count(*)`,
      promptRuns: sql<number>`coalesce(sum(case when ${runs.kind} = 'PROMPT' then 1 else 0 end), 0)`,
      wallMs: sql<number>`coalesce(sum(${runs.durationMs}), 0)`,
      cpuMs: sql<number>`coalesce(sum(${runs.cpuMs}), 0)`,
      modelRequests: sql<number>`coalesce(sum(${runs.modelRequests}), 0)`,
      inputTokens: sql<number>`coalesce(sum(${runs.inputTokens}), 0)`,
      outputTokens: sql<number>`coalesce(sum(${runs.outputTokens}), 0)`,
      costUsd: sql<number>`coalesce(sum(${runs.costUsd}), 0)`,
    })
    .from(runs)
    .where(where);
  return Object.fromEntries(Object.entries(row!).map(([k, v]) => [k, Number(v)])) as Omit<
    UsageTotals,
    "storageOf"
  >;
}

export const sessionUsage = async (ctx: Context, sessionId: string): Promise<UsageTotals> => ({
  ...(await totals(ctx, eq(runs.sessionId, sessionId))),
  storageOf: { kind: "session", id: sessionId },
});

/** A user's own runs across every session (only the user themself may see it). */
export const userUsage = async (ctx: Context, userId: string): Promise<UsageTotals> => ({
  ...(await totals(ctx, eq(runs.userId, userId))),
  storageOf: { kind: "user", id: userId },
});

// One loader per request (keyed by its loaders object): a list of sessions sums its storage in one query.
const storageLoaders = new WeakMap<object, DataLoader<string, number>>();

/** Bytes of snapshot content the session keeps. */
export function sessionStorageBytes(ctx: Context, sessionId: string): Promise<number> {
  let loader = storageLoaders.get(ctx.loaders);
  if (!loader) {
    loader = new DataLoader(async (ids) => {
      const rows = await ctx.db
        .select({ id: snapshots.sessionId, used: sql<number>`coalesce(sum(${snapshots.addedBytes}), 0)` })
        .from(snapshots)
        .where(inArray(snapshots.sessionId, [...ids]))
        .groupBy(snapshots.sessionId);
      const used = new Map(rows.map((r) => [r.id, Number(r.used)]));
      return ids.map((id) => used.get(id) ?? 0);
    });
    storageLoaders.set(ctx.loaders, loader);
  }
  return loader.load(sessionId);
}

export function storageBytes(ctx: Context, of: StorageOf): Promise<number> {
  return of.kind === "session" ? sessionStorageBytes(ctx, of.id) : ctx.quota.userBytes(of.id);
}

export function storageLimitBytes(ctx: Context, of: StorageOf): number {
  return of.kind === "session" ? ctx.quota.limits.sessionBytes : ctx.quota.limits.userBytes;
}

/** The limits that apply to the viewer's work. */
export function quotaLimits(ctx: Context): QuotaLimits {
  return ctx.quota.limits;
}

/** A run stopped by a storage limit (its write cap or a quota) carries the error code a request would. */
export function runErrorCode(run: RunRow): string | null {
  return run.killedBy === "disk" || run.killedBy === "quota" ? "QUOTA_EXCEEDED" : null;
}
