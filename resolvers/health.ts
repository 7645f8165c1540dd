// Health: what this server runs on and whether its database answers (GET /healthz and `health`).
import type { ProviderStatus } from "../sandbox/provider.ts";
import type { Context, HealthInfo } from "./context.ts";

export interface Health extends Omit<HealthInfo, "checkDatabase" | "providers"> {
  ok: boolean;
  providers: (ProviderStatus & { default: boolean })[];
  database: boolean;
}

export async function health(ctx: Pick<Context, "health">): Promise<Health> {
  const database = await ctx.health.checkDatabase().catch(() => false);
  const { checkDatabase: _, providers, ...info } = ctx.health;
  return {
    ...info,
    ok: database,
    providers: providers.map((p) => ({ ...p, default: p.name === info.provider })),
    database,
  };
}
