import type { Context } from "./context.ts";

export interface Health {
  ok: boolean;
  version: string;
  runtime: string;
  provider: string;
  isolation: string;
  workspaces: string;
  warnings: string[];
  database: boolean;
}

export async function health(ctx: Pick<Context, "health">): Promise<Health> {
  const database = await ctx.health.checkDatabase().catch(() => false);
  const { version, runtime, provider, isolation, workspaces, warnings } = ctx.health;
  return { ok: database, version, runtime, provider, isolation, workspaces, warnings, database };
}
