import type { ProviderStatus } from "../sandbox/provider.ts";
import type { Context } from "./context.ts";

export interface Health {
  ok: boolean;
  version: string;
  runtime: string;
  provider: string;
  isolation: string;
  workspaces: string;
  warnings: string[];
  providers: (ProviderStatus & { default: boolean })[];
  database: boolean;
}

export async function health(ctx: Pick<Context, "health">): Promise<Health> {
  const database = await ctx.health.checkDatabase().catch(() => false);
  const { version, runtime, provider, isolation, workspaces, warnings } = ctx.health;
  const providers = ctx.health.providers.map((p) => ({ ...p, default: p.name === provider }));
  return { ok: database, version, runtime, provider, isolation, workspaces, warnings, providers, database };
}
