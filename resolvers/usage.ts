// Usage totals: wall time, sandbox CPU time, model requests, tokens and cost, summed over runs.
import { eq, sql } from "drizzle-orm";
import { runs } from "../db/schema.ts";
import type { Context } from "./context.ts";

export interface UsageTotals {
  runs: number;
  promptRuns: number;
  wallMs: number;
  cpuMs: number;
  modelRequests: number;
  inputTokens: number;
  outputTokens: number;
  costUsd: number;
}

async function totals(ctx: Context, where: ReturnType<typeof eq>): Promise<UsageTotals> {
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
  return Object.fromEntries(Object.entries(row!).map(([k, v]) => [k, Number(v)])) as unknown as UsageTotals;
}

export const sessionUsage = (ctx: Context, sessionId: string) => totals(ctx, eq(runs.sessionId, sessionId));

/** A user's own runs across every session (only the user themself may see it). */
export const userUsage = (ctx: Context, userId: string) => totals(ctx, eq(runs.userId, userId));
